"""Cluster-aware fine-tuning (weight sharing + optional magnitude pruning) of the trained KWS models.

The compiler can store each weight matrix as 2-bit indices into a 4-entry codebook; clustering a float
model after training costs several accuracy points, so this script fine-tunes the model with the
clustering in the loop, through the library helper compiler/finetune.py (docs/finetune.md):

1. loads the committed float model examples/kws/kws_<model>.onnx into train.py's KwsRnn and checks that
   PyTorch and ONNX Runtime agree on the test split;
2. ties it (compiler.finetune.tie): every weight matrix (weight_ih_l0, weight_hh_l0, head.weight; biases
   stay float) is one codebook group with 2**bits shared values, trained straight-through, with --sparsity
   S a magnitude mask ramping to S over the first --ramp of the steps; for the final --freeze-epochs the
   assignment is frozen and the shared values themselves train;
3. keeps the epoch with the best validation accuracy of the tied model (after the pruning ramp), exports
   it like train.py and checks the ONNX file: <= 2**bits distinct nonzero values per matrix, the
   requested fraction of exact zeros, test top-1 with ONNX Runtime, the compression ratio the compiler
   gives it. Results go to train_results.json.

    python examples/kws/finetune.py --data /tmp/kws_data --model lstm64 --bits 2 --threads 1
    python examples/kws/finetune.py --data /tmp/kws_data --model gru64 --bits 2 --sparsity 0.6 --threads 1

Output: examples/kws/kws_<model>_c<bits>[s<percent>].onnx, e.g. kws_gru64_c2s60.onnx.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn

from compiler.finetune import Tied, tie
from compiler.pipeline import compile_model

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from train import MODELS, KwsRnn, accuracy, augment, load  # noqa: E402

# PyTorch gate block k is ONNX gate block ORDER[k]: LSTM ONNX i,o,f,c -> torch i,f,g,o; GRU z,r,h -> r,z,n.
GATE_ORDER = {"LSTM": [0, 2, 3, 1], "GRU": [1, 0, 2]}
SINGLE_LAYER = [name for name, (_, _, layers) in MODELS.items() if layers == 1]


def onnx_weights(path: Path) -> dict[str, np.ndarray]:
    """The normalisation constants and the W, R, B, head matrices of an exported KWS model (ONNX layout)."""
    graph = onnx.load(str(path)).graph
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    out = {}
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type in ("Mul", "Add"):
            out["scale" if node.op_type == "Mul" else "shift"] = init[node.input[1]]
        elif node.op_type in GATE_ORDER:
            assert attrs.get("direction", b"forward") == b"forward", "unidirectional RNN expected"
            assert node.op_type == "LSTM" or attrs.get("linear_before_reset") == 1, "PyTorch GRU semantics expected"
            out["cell"] = node.op_type
            out["W"], out["R"], out["B"] = (init[n][0] for n in node.input[1:4])
        elif node.op_type == "Gemm":
            w = init[node.input[1]]
            out["head"], out["head_bias"] = (w if attrs.get("transB", 0) else w.T), init[node.input[2]]
    return out


def load_float_model(name: str, path: Path) -> KwsRnn:
    """KwsRnn with the weights of the committed ONNX model (gate blocks reordered to PyTorch's layout)."""
    cell, hidden, layers = MODELS[name]
    assert layers == 1, "only single-layer models are supported"
    w = onnx_weights(path)
    assert w["cell"] == cell
    model = KwsRnn(cell, hidden, layers, np.zeros(w["scale"].shape), np.ones(w["scale"].shape))

    def gates(a: np.ndarray) -> torch.Tensor:
        blocks = np.split(a, len(GATE_ORDER[cell]))
        return torch.from_numpy(np.concatenate([blocks[k] for k in GATE_ORDER[cell]]).copy())

    wb, rb = np.split(w["B"], 2)
    state = {"scale": w["scale"], "shift": w["shift"], "rnn.weight_ih_l0": w["W"], "rnn.weight_hh_l0": w["R"],
             "rnn.bias_ih_l0": wb, "rnn.bias_hh_l0": rb, "head.weight": w["head"], "head.bias": w["head_bias"]}
    state = {k: gates(v) if k.startswith("rnn.") else torch.from_numpy(v.copy()) for k, v in state.items()}
    model.load_state_dict(state)
    return model


def ort_predict(path: Path, x: torch.Tensor, threads: int) -> np.ndarray:
    """Top-1 of ONNX Runtime, one utterance per run (the exported input shape is fixed to batch 1)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    xs = x.numpy()
    return np.array([sess.run(None, {"mfcc": xs[i:i + 1]})[0].argmax() for i in range(len(xs))])


def agree_with_ort(model: KwsRnn, path: Path, test: tuple[torch.Tensor, torch.Tensor], threads: int) -> float:
    """Test top-1 of `path` in ONNX Runtime, asserting that `model` (PyTorch) predicts the same classes."""
    x, y = test
    pred = ort_predict(path, x, threads)
    model.eval()
    with torch.no_grad():
        torch_pred = model(x).argmax(1).numpy()
    acc, agree = float((pred == y.numpy()).mean()), float((pred == torch_pred).mean())
    print(f"{path.name}: test top-1 ONNX Runtime {acc:.4f}  PyTorch {(torch_pred == y.numpy()).mean():.4f}  "
          f"top-1 agreement {agree:.4f}", flush=True)
    assert agree >= 0.999, f"PyTorch and ONNX Runtime disagree on {path.name}"
    return acc


def lr_factor(step: int, frozen_from: int, steps: int, centroid_lr: float) -> float:
    """Cosine to zero over the straight-through phase, so that the assignment settles before it is frozen,
    then a second, smaller cosine for the centroid phase."""
    if step < frozen_from:
        return 0.5 * (1 + math.cos(math.pi * step / frozen_from))
    return centroid_lr * 0.5 * (1 + math.cos(math.pi * (step - frozen_from) / max(steps - frozen_from, 1)))


def finetune(tied: Tied, teacher: KwsRnn, data: dict, args: argparse.Namespace) -> tuple[nn.Module, int, float]:
    """STE + pruning ramp, then centroid training; returns the best stripped model, its epoch and the seconds."""
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    xtr, ytr = data["train"]
    steps = args.epochs * ((len(xtr) + args.batch - 1) // args.batch)
    ramp = int(args.ramp * steps)
    frozen_from = steps * (args.epochs - args.freeze_epochs) // args.epochs
    assert not args.sparsity or ramp + args.prune_every < frozen_from, "the pruning ramp must end before the freeze"
    params = list(tied.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: lr_factor(t, frozen_from, steps, args.centroid_lr))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    best, best_model, best_epoch, step, t0 = -1.0, None, 0, 0, time.time()
    for epoch in range(args.epochs):
        if epoch == args.epochs - args.freeze_epochs:
            tied.freeze()
        tied.train()
        perm = torch.randperm(len(xtr), generator=gen)
        total = 0.0
        for i in range(0, len(xtr), args.batch):
            tied.update(step, ramp, args.prune_every, args.refit)
            idx = perm[i:i + args.batch]
            xb = augment(xtr[idx], gen)
            logits = tied(xb)
            loss = loss_fn(logits, ytr[idx])
            if args.distill:
                with torch.no_grad():
                    soft = (teacher(xb) / args.temp).softmax(1)
                kd = nn.functional.kl_div((logits / args.temp).log_softmax(1), soft, reduction="batchmean")
                loss = (1 - args.distill) * loss + args.distill * args.temp ** 2 * kd
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            total += loss.item() * len(idx)
        val, _ = accuracy(tied, *data["val"])
        if val >= best and tied.sparsity == args.sparsity:  # only fully pruned epochs count
            best, best_model, best_epoch = val, tied.strip(), epoch + 1
        phase = "centroids" if tied.frozen else "ste"
        print(f"epoch {epoch + 1}/{args.epochs} [{phase}]: loss {total / len(xtr):.4f}  tied val {val:.4f}  "
              f"sparsity {tied.pruned_fraction():.3f}  ({time.time() - t0:.0f} s)", flush=True)
    return best_model, best_epoch, time.time() - t0


def check_onnx(path: Path, bits: int, sparsity: float) -> dict[str, tuple[int, float]]:
    """Distinct nonzero values and zero fraction of W, R and the head weight, read back from the file."""
    w = onnx_weights(path)
    found = {}
    for name in ("W", "R", "head"):
        a = w[name]
        distinct, zeros = len(np.unique(a[a != 0])), float((a == 0).mean())
        print(f"  {name} {list(a.shape)}: {distinct} distinct nonzero values, {zeros:.4f} zeros", flush=True)
        assert distinct <= 2 ** bits and zeros >= sparsity - 0.005, f"{name} is not tied/pruned as requested"
        found[name] = (distinct, round(zeros, 4))
    return found


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/tmp/kws_data"), help="make_dataset.py output directory")
    ap.add_argument("--model", choices=SINGLE_LAYER, default="lstm64")
    ap.add_argument("--bits", type=int, default=2, help="codebook index bits: 2**bits shared values per matrix")
    ap.add_argument("--sparsity", type=float, default=0.0, help="fraction of exact zeros per matrix")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--freeze-epochs", type=int, default=6, help="final epochs that train only the centroids")
    ap.add_argument("--refit", type=int, default=0, help="k-means refit interval (steps)")
    ap.add_argument("--prune-every", type=int, default=200, help="mask update interval (steps)")
    ap.add_argument("--ramp", type=float, default=0.4, help="fraction of the steps the pruning ramp takes")
    ap.add_argument("--centroid-lr", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--distill", type=float, default=0.0)
    ap.add_argument("--temp", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="default: examples/kws/kws_<model>_c<bits>[s<pct>].onnx")
    ap.add_argument("--results", type=Path, default=HERE / "train_results.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    key = f"{args.model}_c{args.bits}" + (f"s{round(100 * args.sparsity)}" if args.sparsity > 0 else "")
    out = args.out or HERE / f"kws_{key}.onnx"
    data = {s: load(args.data / f"{s}.npz") for s in ("train", "val", "test")}
    source = HERE / f"kws_{args.model}.onnx"

    model = load_float_model(args.model, source)
    agree_with_ort(model, source, data["test"], args.threads)
    teacher = copy.deepcopy(model).eval()
    tied = tie(model, args.bits, args.sparsity)
    val0, test0 = accuracy(tied, *data["val"])[0], accuracy(tied, *data["test"])[0]
    print(f"post-training clustering ({2 ** args.bits} values, no pruning): val {val0:.4f}  test {test0:.4f}",
          flush=True)
    model, epoch, seconds = finetune(tied, teacher, data, args)
    torch.onnx.export(model, (data["test"][0][:1],), str(out), input_names=["mfcc"], output_names=["logits"],
                      opset_version=17, dynamo=False)
    print(f"best epoch {epoch} -> {out.name}", flush=True)
    found = check_onnx(out, args.bits, args.sparsity)
    test_ort = agree_with_ort(model, out, data["test"], args.threads)
    ratio = compile_model(out, compression=tied.compression()).report["total"]["compression_ratio"]
    _, per_class = accuracy(model, *data["test"])
    val, train_acc = accuracy(model, *data["val"])[0], accuracy(model, *data["train"])[0]
    print(f"{key}: train {train_acc:.4f}  val {val:.4f}  test {test_ort:.4f} (ONNX Runtime)  {ratio:.2f}x at "
          f"{tied.compression()}  ({seconds:.0f} s)", flush=True)
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    results[key] = {
        "start": source.name, "bits": args.bits, "sparsity": args.sparsity, "epochs": args.epochs,
        "freeze_epochs": args.freeze_epochs, "best_epoch": epoch, "lr": args.lr, "train_seconds": round(seconds, 1),
        "post_training_clustering_test_acc": round(test0, 4), "train_acc": round(train_acc, 4),
        "val_acc": round(val, 4), "test_acc": round(test_ort, 4),
        "test_acc_per_class": [round(float(a), 4) for a in per_class], "onnx": out.name,
        "distinct_nonzero": {k: v[0] for k, v in found.items()}, "zero_fraction": {k: v[1] for k, v in found.items()},
        "compression_ratio": ratio}
    args.results.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
