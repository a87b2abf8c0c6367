"""Cluster-aware fine-tuning (weight sharing + optional magnitude pruning) of the trained KWS models.

The compiler can store each weight matrix as 2-bit indices into a 4-entry codebook; clustering a float
model after training costs several accuracy points, so this script fine-tunes the model with the
clustering in the loop (Deep Compression, Han et al. 2016):

1. loads the committed float model examples/kws/kws_<model>.onnx into train.py's KwsRnn and checks that
   PyTorch and ONNX Runtime agree on the test split;
2. every weight matrix (weight_ih_l0, weight_hh_l0, head.weight; biases stay float) is one codebook group
   with 2**bits centroids. Straight-through phase: the forward pass uses each float "shadow" weight
   replaced by its nearest centroid (0 if pruned), the gradient goes to the shadow weight, and the
   centroids are refitted by 1-D k-means every --refit steps. With --sparsity S, a per-matrix magnitude
   mask ramps from 0 to S over the first 40 % of the steps (cubic schedule, Zhu & Gupta 2017) and then
   stays fixed. Final --freeze-epochs: the assignment is frozen and the centroids themselves are trained
   (a centroid's gradient is the sum of its members' gradients);
3. keeps the epoch with the best validation accuracy of the tied model (after the pruning ramp), exports
   it like train.py and checks the ONNX file: <= 2**bits distinct nonzero values per matrix, the
   requested fraction of exact zeros, test top-1 with ONNX Runtime. Results go to train_results.json.

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
from torch.func import functional_call

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from train import MODELS, KwsRnn, accuracy, augment, load  # noqa: E402

# PyTorch gate block k is ONNX gate block ORDER[k]: LSTM ONNX i,o,f,c -> torch i,f,g,o; GRU z,r,h -> r,z,n.
GATE_ORDER = {"LSTM": [0, 2, 3, 1], "GRU": [1, 0, 2]}
MATRICES = ("rnn.weight_ih_l0", "rnn.weight_hh_l0", "head.weight")


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


class Codebook:
    """Weight sharing state of one matrix: shadow weight, centroids, pruning mask, frozen assignment."""

    def __init__(self, weight: nn.Parameter, bits: int, joint: bool) -> None:
        self.w, self.k, self.joint = weight, 2 ** bits, joint
        self.mask = torch.ones_like(weight, dtype=torch.bool)
        self.centroids = nn.Parameter(torch.zeros(self.k))
        self.quantize = True
        self.fixed = torch.zeros_like(weight, dtype=torch.bool)  # weights whose assignment is frozen
        self.index = torch.zeros_like(weight, dtype=torch.long)  # their centroid
        self.refit()

    def nearest(self) -> torch.Tensor:
        return (self.w.detach()[..., None] - self.centroids.detach()).abs().argmin(-1)

    def refit(self, iters: int = 30) -> None:
        """1-D k-means (Lloyd, quantile init) on the unpruned weights: the optimal codebook for them."""
        v = self.w.detach()[self.mask]
        c = torch.quantile(v, (torch.arange(self.k) + 0.5) / self.k)
        for _ in range(iters):
            a = (v[:, None] - c).abs().argmin(1)
            c = torch.stack([v[a == j].mean() if (a == j).any() else c[j] for j in range(self.k)])
        self.centroids.data.copy_(c)

    def prune(self, sparsity: float) -> None:
        """Magnitude mask with exactly round(sparsity * size) zeros (pruned shadows get no gradient)."""
        order = torch.sort(self.w.detach().abs().flatten(), stable=True).indices
        mask = torch.ones(self.w.numel(), dtype=torch.bool)
        mask[order[:round(sparsity * self.w.numel())]] = False
        self.mask = mask.view_as(self.w)

    def fix(self, fraction: float) -> None:
        """Freeze the assignment of `fraction` of the unpruned weights, those closest to their centroid first:
        weights near a decision boundary are the ones that oscillate under the straight-through estimator."""
        idx = torch.where(self.fixed, self.index, self.nearest())
        dist = (self.w.detach() - self.centroids.detach()[idx]).abs()
        dist = torch.where(self.fixed, -1.0, torch.where(self.mask, dist, math.inf)).flatten()
        chosen = torch.zeros(dist.numel(), dtype=torch.bool)
        chosen[torch.sort(dist, stable=True).indices[:round(fraction * int(self.mask.sum()))]] = True
        self.fixed |= chosen.view_as(self.fixed) & self.mask
        self.index = torch.where(self.fixed, idx, 0)

    @property
    def frozen(self) -> bool:
        return bool(self.fixed[self.mask].all())

    def tied(self) -> torch.Tensor:
        """The weight as the chip sees it: straight-through gradient to the free shadow weights, and to the
        centroids once every assignment is frozen (a centroid's gradient is the sum of its members')."""
        if not self.quantize:
            return torch.where(self.mask, self.w, 0.0)
        c = self.centroids if self.frozen or self.joint else self.centroids.detach()
        idx = torch.where(self.fixed, self.index, self.nearest())
        ste = torch.where(self.fixed, 0.0, self.w - self.w.detach())  # exactly 0, gradient to w
        return torch.where(self.mask, c[idx] + ste, 0.0)


class Tied(nn.Module):
    """Runs the float model with every weight matrix replaced by its tied version."""

    def __init__(self, model: KwsRnn, books: dict[str, Codebook]) -> None:
        super().__init__()
        self.model, self.books = model, books

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, {n: b.tied() for n, b in self.books.items()}, (x,))

    def state(self) -> dict[str, torch.Tensor]:
        """The float model's state with the tied matrices: what gets exported."""
        state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return state | {n: b.tied().detach().clone() for n, b in self.books.items()}


def lr_factor(step: int, frozen_from: int, steps: int, centroid_lr: float) -> float:
    """Cosine to zero over the straight-through phase, so that the assignment settles before it is frozen,
    then a second, smaller cosine for the centroid phase."""
    if step < frozen_from:
        return 0.5 * (1 + math.cos(math.pi * step / frozen_from))
    return centroid_lr * 0.5 * (1 + math.cos(math.pi * (step - frozen_from) / max(steps - frozen_from, 1)))


def finetune(tied: Tied, teacher: KwsRnn, data: dict, args: argparse.Namespace) -> tuple[dict, int, float]:
    """STE + pruning ramp, then centroid training; returns the best tied state, its epoch and the seconds."""
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    books = list(tied.books.values())
    xtr, ytr = data["train"]
    steps = args.epochs * ((len(xtr) + args.batch - 1) // args.batch)
    ramp, fix_from = int(args.ramp * steps), int(args.fix_from * steps)
    frozen_from = steps * (args.epochs - args.freeze_epochs) // args.epochs
    assert not args.sparsity or ramp + args.prune_every < frozen_from, "the pruning ramp must end before the freeze"
    params = [*tied.model.parameters(), *(b.centroids for b in books)]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: lr_factor(t, frozen_from, steps, args.centroid_lr))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    best, best_state, best_epoch, step, level, t0 = -1.0, {}, 0, 0, 0.0, time.time()
    for epoch in range(args.epochs):
        if epoch == args.epochs - args.freeze_epochs:
            for b in books:
                b.fix(1.0)
        tied.train()
        perm = torch.randperm(len(xtr), generator=gen)
        total = 0.0
        for i in range(0, len(xtr), args.batch):
            if level < args.sparsity and step % args.prune_every == 0:  # the first update after the ramp sets S
                level = args.sparsity * (1 - (1 - min(step / ramp, 1.0)) ** 3)
                for b in books:
                    b.prune(level)
                    b.quantize = not args.float_prune or level == args.sparsity
                    b.refit()
            elif args.refit and not books[0].frozen and step % args.refit == 0:
                for b in books:
                    b.refit()
            elif level == args.sparsity and step % args.prune_every == 0 and step > fix_from:
                for b in books:
                    b.fix(1 - (1 - min((step - fix_from) / (frozen_from - fix_from), 1.0)) ** 3)
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
        sparsity = sum(int((~b.mask).sum()) for b in books) / sum(b.mask.numel() for b in books)
        if val >= best and level == args.sparsity and books[0].quantize:  # only fully pruned epochs count
            best, best_state, best_epoch = val, tied.state(), epoch + 1
        fixed = sum(int(b.fixed.sum()) for b in books) / sum(int(b.mask.sum()) for b in books)
        phase = "centroids" if books[0].frozen else f"ste, {fixed:.3f} fixed"
        print(f"epoch {epoch + 1}/{args.epochs} [{phase}]: loss {total / len(xtr):.4f}  tied val {val:.4f}  "
              f"sparsity {sparsity:.3f}  ({time.time() - t0:.0f} s)", flush=True)
    return best_state, best_epoch, time.time() - t0


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
    ap.add_argument("--model", choices=["lstm64", "gru64"], default="lstm64")
    ap.add_argument("--bits", type=int, default=2, help="codebook index bits: 2**bits shared values per matrix")
    ap.add_argument("--sparsity", type=float, default=0.0, help="fraction of exact zeros per matrix")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--freeze-epochs", type=int, default=6, help="final epochs that train only the centroids")
    ap.add_argument("--refit", type=int, default=0, help="k-means refit interval (steps)")
    ap.add_argument("--prune-every", type=int, default=200, help="mask update interval (steps)")
    ap.add_argument("--joint", action="store_true")
    ap.add_argument("--ramp", type=float, default=0.4)
    ap.add_argument("--float-prune", action="store_true")
    ap.add_argument("--fix-from", type=float, default=1.0)
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
    tied = Tied(model, {n: Codebook(model.get_parameter(n), args.bits, args.joint) for n in MATRICES})
    val0, test0 = accuracy(tied, *data["val"])[0], accuracy(tied, *data["test"])[0]
    print(f"post-training clustering ({2 ** args.bits} values, no pruning): val {val0:.4f}  test {test0:.4f}",
          flush=True)
    state, epoch, seconds = finetune(tied, teacher, data, args)
    model.load_state_dict(state)
    model.eval()
    torch.onnx.export(model, (data["test"][0][:1],), str(out), input_names=["mfcc"], output_names=["logits"],
                      opset_version=17, dynamo=False)
    print(f"best epoch {epoch} -> {out.name}", flush=True)
    found = check_onnx(out, args.bits, args.sparsity)
    test_ort = agree_with_ort(model, out, data["test"], args.threads)
    _, per_class = accuracy(model, *data["test"])
    val, train_acc = accuracy(model, *data["val"])[0], accuracy(model, *data["train"])[0]
    print(f"{key}: train {train_acc:.4f}  val {val:.4f}  test {test_ort:.4f} (ONNX Runtime)"
          f"  ({seconds:.0f} s)", flush=True)
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    results[key] = {
        "start": source.name, "bits": args.bits, "sparsity": args.sparsity, "epochs": args.epochs,
        "freeze_epochs": args.freeze_epochs, "best_epoch": epoch, "lr": args.lr, "train_seconds": round(seconds, 1),
        "post_training_clustering_test_acc": round(test0, 4), "train_acc": round(train_acc, 4),
        "val_acc": round(val, 4), "test_acc": round(test_ort, 4),
        "test_acc_per_class": [round(float(a), 4) for a in per_class], "onnx": out.name,
        "distinct_nonzero": {k: v[0] for k, v in found.items()}, "zero_fraction": {k: v[1] for k, v in found.items()}}
    args.results.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
