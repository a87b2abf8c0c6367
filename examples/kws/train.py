"""Train the keyword-spotting models on the synthesised data set and export them to ONNX.

Models (input: raw MFCC [batch, 49, 10], batch first; output: 12 logits):
    kws_lstm64      LSTM, hidden 64                -> last time step -> Linear(64, 12)
    kws_gru64       GRU, hidden 64                 -> last time step -> Linear(64, 12)
    kws_lstm128x2   2-layer LSTM, hidden 128        -> last time step -> Linear(128, 12)
    kws_gru154      GRU, hidden 154                -> last time step -> Linear(154, 12)
    kws_lstm118     LSTM, hidden 118               -> last time step -> Linear(118, 12)

Each model starts with a fixed per-coefficient affine normalisation x * scale + shift (constants
computed once from the training set: the ONNX graph has a Mul and an Add of constants before the
recurrent layer), so the chip is fed the raw MFCCs. Exported with torch.onnx.export(dynamo=False,
opset 17), input "mfcc" [1, 49, 10], output "logits" [1, 12].

Needs PyTorch (not a dependency of rnnaccel: ``pip install -e .[train]`` or any torch 2.x venv):

    python examples/kws/make_dataset.py --out /tmp/kws_data --train-size 24000
    python examples/kws/train.py --data /tmp/kws_data            # all five models
    python examples/kws/train.py --data /tmp/kws_data --models lstm64 --epochs 10

Model selection uses the validation split (training voice variants); the test split (held-out
variants) is only evaluated at the end. Writes examples/kws/<model>.onnx and train_results.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
FRAMES, MFCC, CLASSES = 49, 10, 12
MODELS = {"lstm64": ("LSTM", 64, 1), "gru64": ("GRU", 64, 1), "lstm128x2": ("LSTM", 128, 2),
          "gru154": ("GRU", 154, 1), "lstm118": ("LSTM", 118, 1)}


class KwsRnn(nn.Module):
    def __init__(self, cell: str, hidden: int, layers: int, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("scale", torch.from_numpy((1.0 / std).astype(np.float32)))
        self.register_buffer("shift", torch.from_numpy((-mean / std).astype(np.float32)))
        self.rnn = getattr(nn, cell)(MFCC, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(x * self.scale + self.shift)
        return self.head(y[:, -1, :])


def load(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    d = np.load(path)
    return torch.from_numpy(d["x"][:, 0]), torch.from_numpy(d["y"])


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, np.ndarray]:
    model.eval()
    pred = torch.cat([model(x[i:i + 1024]).argmax(1) for i in range(0, len(x), 1024)])
    per_class = np.array([(pred[y == c] == c).float().mean().item() for c in range(CLASSES)])
    return (pred == y).float().mean().item(), per_class


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Light feature-space augmentation: a random level offset on c0 and one short time mask."""
    b = x.shape[0]
    x = x.clone()
    x[:, :, 0] += (torch.rand(b, 1, generator=gen) - 0.5) * 10.0
    start = torch.randint(0, FRAMES - 6, (b,), generator=gen)
    width = torch.randint(0, 6, (b,), generator=gen)
    t = torch.arange(FRAMES)[None]
    mask = (t >= start[:, None]) & (t < (start + width)[:, None])
    return torch.where(mask[:, :, None], x.mean(1, keepdim=True), x)  # masked frames -> utterance mean


def train_one(name: str, data: dict, args, mean, std) -> dict:
    cell, hidden, layers = MODELS[name]
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = KwsRnn(cell, hidden, layers, mean, std)
    xtr, ytr = data["train"]
    steps_per_epoch = (len(xtr) + args.batch - 1) // args.batch
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch,
                                                pct_start=0.15)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    best, best_state, t0 = -1.0, None, time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        total = 0.0
        for i in range(0, len(xtr), args.batch):
            idx = perm[i:i + args.batch]
            xb = augment(xtr[idx], gen) if args.augment else xtr[idx]
            loss = loss_fn(model(xb), ytr[idx])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        val, _ = accuracy(model, *data["val"])
        if val >= best:
            best, best_state = val, {k: v.clone() for k, v in model.state_dict().items()}
        print(f"{name} epoch {epoch + 1}/{args.epochs}: loss {total / len(xtr):.4f}  val {val:.4f}  "
              f"({time.time() - t0:.0f} s)", flush=True)
    train_s = time.time() - t0
    model.load_state_dict(best_state)
    model.eval()
    test, per_class = accuracy(model, *data["test"])
    val, _ = accuracy(model, *data["val"])
    train_acc, _ = accuracy(model, *data["train"])
    path = HERE / f"kws_{name}.onnx"
    torch.onnx.export(model, (data["test"][0][:1],), str(path), input_names=["mfcc"], output_names=["logits"],
                      opset_version=17, dynamo=False)
    params = sum(p.numel() for p in model.parameters())
    print(f"{name}: train {train_acc:.4f}  val {val:.4f}  test {test:.4f}  ({train_s:.0f} s) -> {path.name}",
          flush=True)
    return {"cell": cell, "hidden": hidden, "layers": layers, "parameters": params, "epochs": args.epochs,
            "train_seconds": round(train_s, 1), "train_acc": round(train_acc, 4), "val_acc": round(val, 4),
            "test_acc": round(test, 4), "test_acc_per_class": [round(float(a), 4) for a in per_class],
            "onnx": path.name}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/tmp/kws_data"), help="make_dataset.py output directory")
    ap.add_argument("--test", type=Path, default=None, help="test split (default: DATA/test.npz)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-augment", dest="augment", action="store_false")
    ap.add_argument("--results", type=Path, default=HERE / "train_results.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    data = {"train": load(args.data / "train.npz"), "val": load(args.data / "val.npz"),
            "test": load(args.test or args.data / "test.npz")}
    x = data["train"][0].numpy()
    mean = x.mean(axis=(0, 1)).astype(np.float64)
    std = x.std(axis=(0, 1)).astype(np.float64)
    # Round the normalisation constants so they are easy to read in the ONNX graph.
    mean, std = np.round(mean, 3), np.round(std, 3)
    print(f"train {len(data['train'][0])}  val {len(data['val'][0])}  test {len(data['test'][0])}", flush=True)
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    for name in args.models.split(","):
        results[name] = train_one(name, data, args, mean, std)
        args.results.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
