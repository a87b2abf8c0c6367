"""Streaming benchmark: the trained keyword spotters compiled --streaming, one frame per run.

Prints, per model, the cycles and latency of one frame against the whole-sequence program's,
and streams the whole test split frame by frame (all utterances as parallel streams): the time
it takes and whether the logits after the last frame equal the whole-sequence program's. Then,
measured in the same run (the machine is shared, so figures from separate runs do not compare),
the simulator's cost per stream-frame against its cost per sample-step of the whole-sequence
batch run, and their ratio.

    .venv/bin/python bench/streaming.py [--streams N] [--repeat R] [MODEL ...]

Default: the three KWS models, the 1200 test utterances as streams. `--streams N` repeats the
test split to N streams; `--repeat R` times each run R times and keeps the best.

A second table streams the models that carry their own state or ship their recurrence unrolled
(tests/data): per model, one frame's cycles and latency, MAC utilisation, the state kept between
runs (bytes, on chip and carried by the host), and the wall time per simulated stream-frame over
STATE_STREAMS parallel streams of STATE_FRAMES random frames.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from compiler.pipeline import compile_model  # noqa: E402
from runtime_sim import Simulator, simulator_for  # noqa: E402

from cell_models import tf_lstm  # noqa: E402
from state_models import vad_model  # noqa: E402

KWS = ROOT / "examples" / "kws"
DATA = ROOT / "tests" / "data"
MODELS = ["kws_lstm64", "kws_gru64", "kws_lstm128x2"]
STATE_STREAMS, STATE_FRAMES = 256, 40
# name -> (the model, its --state pairs beyond those streaming finds)
STATE_MODELS = {
    "(a) LSTM (x, h, c)": (lambda: onnx.load(DATA / "state" / "lstm-hc-script.onnx"), {}),
    "(b) 2xLSTM packed": (lambda: onnx.load(DATA / "state" / "lstm-packed-dynamo.onnx"), {}),
    "(c) GRU (x, h)": (lambda: onnx.load(DATA / "state" / "gru-h-script.onnx"), {}),
    "(d) LSTMCell x49": (lambda: onnx.load(DATA / "cells" / "kws-lstm-loop-dynamo.onnx"), {}),
    "(d) GRUCell x49": (lambda: onnx.load(DATA / "cells" / "kws-gru-loop-script.onnx"), {}),
    "(e) TF cell packed": (lambda: tf_lstm(packing="stacked"), {}),
    "(f) LSTM dynamo": (lambda: onnx.load(DATA / "exported" / "lstm-kws-dynamo.onnx"), {}),
    "VAD conv+LSTM": (lambda: vad_model(host_window=False), {"cache": "cache_out"}),
}


def best(run, repeat: int):
    """(run's result, its shortest wall time, its shortest CPU time) over `repeat` runs: the
    least disturbed by the machine's other load. CPU time is not stretched by other processes
    (with one BLAS thread it is the wall time of an idle machine)."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return result, min(walls), min(cpus)


def whole_logits(whole: Simulator, x: np.ndarray) -> np.ndarray:
    return whole.run({"mfcc": x}, batch=True).raw_outputs["logits"]


def stream_all(sim: Simulator, x: np.ndarray):
    """Every utterance of x as a parallel stream, frame by frame; the last frame's result."""
    stream = sim.stream(samples=len(x))
    for t in range(x.shape[2]):
        result = stream.step({"mfcc": x[:, :, t:t + 1]})
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=MODELS)
    parser.add_argument("--streams", type=int, default=None, help="streams (default: the test split)")
    parser.add_argument("--repeat", type=int, default=1, help="time each run this many times, keep the best")
    args = parser.parse_args(argv)
    test, calib = np.load(KWS / "test.npz"), dict(np.load(KWS / "calib.npz"))
    x, y = test["x"], test["y"]
    if args.streams:
        index = np.arange(args.streams) % len(x)
        x, y = x[index], y[index]
    samples, steps = len(x), x.shape[2]
    print(f"{'model':<15} {'frame cycles':>12} {'frame us':>9} {'MAC util':>9} {'state':>6} {'whole cycles':>13} "
          f"{'stream s':>9} {'top-1':>7} {'= whole':>8} {'us/frame':>9} {'us/step':>8} {'ratio':>6} "
          f"{'cpu/frame':>9} {'cpu/step':>8} {'ratio':>6}")
    for name in args.models:
        whole = Simulator(compile_model(KWS / f"{name}.onnx", calibration=calib).program)
        sim = Simulator(compile_model(KWS / f"{name}.onnx", calibration=calib, streaming=True).program)
        stats, state = sim.stats, sum(s.size for s in sim.program.state)  # both scheduled before timing
        whole_cycles = whole.stats["cycles"]
        expected, whole_seconds, whole_cpu = best(partial(whole_logits, whole, x), args.repeat)
        result, seconds, cpu = best(partial(stream_all, sim, x), args.repeat)
        top1 = np.mean(result.outputs["logits"].reshape(len(x), -1).argmax(-1) == y)
        same = "yes" if np.array_equal(result.raw_outputs["logits"], expected) else "NO"
        per_frame, per_step, cpu_frame, cpu_step = (1e6 * s / (samples * steps)
                                                    for s in (seconds, whole_seconds, cpu, whole_cpu))
        print(f"{name:<15} {stats['cycles']:>12} {stats['latency_us']:>9.2f} {stats['mac_utilization']:>9.1%} "
              f"{state:>6} {whole_cycles:>13} {seconds:>9.2f} {top1:>7.2%} {same:>8} "
              f"{per_frame:>9.1f} {per_step:>8.1f} {per_frame / per_step:>6.2f} "
              f"{cpu_frame:>9.1f} {cpu_step:>8.1f} {cpu_frame / cpu_step:>6.2f}")
    print(f"({samples} parallel streams of {steps} frames each; state in activation-memory elements; "
          "us/frame: wall time per stream-frame, us/step: per sample-step of the whole-sequence batch run; "
          "cpu/frame, cpu/step: the same in CPU time)")


def state_table() -> None:
    """The models that carry their own state or ship their recurrence unrolled, streamed."""
    print(f"\n{'model':<20} {'frame cycles':>12} {'frame us':>9} {'MAC util':>9} {'chip state B':>12} "
          f"{'host state B':>12} {'us/frame':>9}")
    rng = np.random.default_rng(0)
    for name, (make, states) in STATE_MODELS.items():
        compiled = compile_model(make(), streaming=True, states=states)
        sim = simulator_for(compiled.program)
        frames = [{p.name: rng.standard_normal((STATE_STREAMS, *p.shape)).astype(np.float32) for p in sim.inputs}
                  for _ in range(STATE_FRAMES)]
        stream = sim.stream(samples=STATE_STREAMS)
        start = time.perf_counter()
        for frame in frames:
            stream.step(frame)
        seconds = time.perf_counter() - start
        stats = sim.stats
        chip, host = _state_bytes(sim)
        print(f"{name:<20} {stats['cycles']:>12} {stats['latency_us']:>9.2f} {stats['mac_utilization']:>9.1%} "
              f"{chip:>12} {host:>12} {1e6 * seconds / (STATE_STREAMS * STATE_FRAMES):>9.1f}")
    print(f"({STATE_STREAMS} parallel streams of {STATE_FRAMES} random frames; state bytes: int16 on chip, "
          "float32 carried by the host; us/frame: wall time per simulated stream-frame)")


def _state_bytes(sim) -> tuple[int, int]:
    """(bytes of state kept on chip, bytes the host carries) between runs, of a loaded program."""
    if not hasattr(sim, "host"):
        return 2 * sum(s.size for s in sim.program.state), 0
    chip = 2 * sum(s.size for island in sim.islands for s in island.program.state)
    return chip, 4 * sum(int(np.prod(p.shape)) for p in sim.host.state())


if __name__ == "__main__":
    main()
    state_table()
