"""rnnaccel-sweep: the grid on a two-worker Dask cluster against the points run one by one, resuming
from the cache, a point that does not fit as a failed row, the CLI's table and fronts, its errors."""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import itertools
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from compiler.sweep.cache import Cache
from compiler.sweep.cli import _progress, main
from compiler.sweep.data import read_data, scorings
from compiler.sweep.grid import Axes, bytes_digest, grid, inputs_digest, point_key, toolchain_digest
from compiler.sweep.pareto import Front, fronts
from compiler.sweep.point import measure
from compiler.sweep.run import Work, run_sweep

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from bench_models import CLASSES, INPUTS, recurrent_classifier  # noqa: E402

distributed = pytest.importorskip("distributed")

STEPS, HIDDEN = 6, 8
SMALL_WMEM = 256  # the LSTM's weights alone are 4 * 8 * (10 + 8) bytes: no point fits in it
AXES = Axes(macs=(16, 32), weight_mem=(SMALL_WMEM, 524288), compress=("none", "4"))


class Stop(Exception):
    """Stands for Ctrl-C in the middle of a sweep."""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The classifier and its files, random calibration and labelled test data."""
    tmp = tmp_path_factory.mktemp("sweep")
    model = recurrent_classifier("LSTM", HIDDEN, steps=STEPS)
    onnx.save(model, str(tmp / "lstm.onnx"))
    rng = np.random.default_rng(0)
    calibration = {"mfcc": rng.standard_normal((16, 1, STEPS, INPUTS)).astype(np.float32)}
    data = {"x": rng.standard_normal((12, 1, STEPS, INPUTS)).astype(np.float32),
            "y": rng.integers(0, CLASSES, 12)}
    np.savez(tmp / "calib.npz", **calibration)
    np.savez(tmp / "test.npz", **data)
    return tmp, model, calibration, data


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as c, \
            distributed.Client(c) as cl:
        yield cl


def _sweep(setup, client, cache: Cache, progress=None, toolchain: str | None = None, axes: Axes = AXES):
    _, model, calibration, data = setup
    points = grid(["lstm"], axes)
    keys = [point_key(p, bytes_digest(model.SerializeToString()), inputs_digest(calibration, data, "y", None),
                      toolchain or toolchain_digest()) for p in points]
    work = Work({"lstm": model}, calibration, data, scorings(data, "y", None, {}))
    return points, run_sweep(lambda: contextlib.nullcontext(client), points, keys, work, cache, progress)


def test_the_cluster_gives_the_table_of_the_points_run_one_by_one(setup, client, tmp_path):
    _, model, calibration, data = setup
    seen = []
    points, outcome = _sweep(setup, client, Cache(tmp_path / "cache"), lambda *counts: seen.append(counts))
    scoring = scorings(data, "y", None, {})("lstm")
    assert len(points) == 8 and outcome.computed == 8
    assert seen[0] == (0, 8, 0) and seen[-1] == (8, 8, 4) and [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)
    assert outcome.measures == [measure(p, model, calibration, data, scoring) for p in points]


def test_a_point_that_does_not_fit_is_a_failed_row(setup, client, tmp_path):
    points, outcome = _sweep(setup, client, Cache(tmp_path / "cache"))
    for point, m in zip(points, outcome.measures):
        fits = point.target.weight_mem_bytes != SMALL_WMEM
        assert (m["status"] == "ok") == fits, m
        assert fits or ("weight memory" in m["error"] and "cycles" not in m)


def test_with_partition_the_host_takes_what_does_not_fit(setup, client, tmp_path):
    axes = Axes(weight_mem=(SMALL_WMEM,), chip_only=False)
    points, outcome = _sweep(setup, client, Cache(tmp_path / "cache"), axes=axes)
    assert [m["status"] for m in outcome.measures] == ["ok"]
    assert outcome.measures[0]["chip_mac_fraction"] < 1


def test_an_interrupted_sweep_resumes_with_only_the_missing_points(setup, client, tmp_path):
    cache, stop_after = Cache(tmp_path / "cache"), 3

    def interrupt(done, total, failed):
        if done >= stop_after:
            raise Stop

    with pytest.raises(Stop):
        _sweep(setup, client, cache, interrupt)
    assert len(list(cache.folder.iterdir())) == stop_after
    _, resumed = _sweep(setup, client, cache)
    assert (resumed.computed, resumed.cached) == (8 - stop_after, stop_after)
    _, again = _sweep(setup, client, cache)
    assert (again.computed, again.cached) == (0, 8) and again.measures == resumed.measures
    next(cache.folder.iterdir()).write_text("{not json")
    _, repaired = _sweep(setup, client, cache)
    assert (repaired.computed, repaired.measures) == (1, resumed.measures)
    _, rebuilt = _sweep(setup, client, cache, toolchain="another version of the compiler")
    assert rebuilt.computed == 8


def test_a_front_holds_exactly_the_points_no_other_beats():
    rng = np.random.default_rng(1)
    rows = [{"status": "ok", "latency_us": float(rng.integers(1, 9)), "energy_uj": float(rng.integers(1, 9)),
             "stored_bytes": float(rng.integers(1, 9)), "accuracy": float(rng.integers(1, 9))} for _ in range(40)]
    rows.append({"status": "failed", "latency_us": 0.0, "energy_uj": 0.0, "stored_bytes": 0.0, "accuracy": 9.0})
    for front in fronts("accuracy"):
        sign = -1 if front.higher else 1

        def beats(a, b, f=front, s=sign):
            return a[f.x] <= b[f.x] and s * a[f.y] <= s * b[f.y] and (a[f.x], a[f.y]) != (b[f.x], b[f.y])

        ok = [r for r in rows if r["status"] == "ok"]
        undominated = {(r[front.x], r[front.y]) for r in ok if not any(beats(o, r) for o in ok)}
        on = front.of(rows)
        assert {(r[front.x], r[front.y]) for r in on} == undominated and len(on) == len(undominated)
        assert [r[front.x] for r in on] == sorted(r[front.x] for r in on)
    assert isinstance(fronts("agreement")[1], Front) and fronts("agreement")[1].y == "agreement"


def _cli(setup, tmp_path, client, *extra, data="test.npz"):
    tmp = setup[0]
    return main([str(tmp / "lstm.onnx"), "--macs", "16,32", "--weight-mem", f"{SMALL_WMEM},524288",
                 "--compress", "none,4", "--calibration", str(tmp / "calib.npz"), "--data", str(tmp / data),
                 "-o", str(tmp_path / "r.csv"), "--scheduler", client.scheduler.address, *extra])


def _table(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_the_cli_writes_the_table_prints_the_fronts_and_plots_them(setup, client, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    with pytest.raises(SystemExit) as exc:
        _cli(setup, tmp_path, client, "--plot", str(tmp_path / "p.png"))
    out, err = capsys.readouterr()
    assert exc.value.code == 0, err
    table = _table(tmp_path / "r.csv")
    assert [r["status"] for r in table] == ["failed", "failed", "ok", "ok"] * 2
    assert {"cycles", "energy_uj", "accuracy", "latency_us", "stored_bytes", "error"} <= set(table[0])
    for front in fronts("accuracy"):
        assert f"Pareto front {front.title}" in out
        for row in front.of([{**r, front.x: float(r[front.x] or 0), front.y: float(r[front.y] or 0)}
                             for r in table]):
            assert (f"lstm {row['macs']} MACs weight memory {row['weight_mem_bytes']} B compress {row['compress']}"
                    in out)
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "8 points (8 computed, 0 from the cache), 4 failed" in err
    assert (tmp_path / "r.csv.cache").is_dir()


def test_by_default_a_local_cluster_of_worker_processes_runs_the_points(setup, tmp_path, capsys):
    tmp = setup[0]
    with pytest.raises(SystemExit) as exc:
        main([str(tmp / "lstm.onnx"), "--macs", "16,32", "--calibration", str(tmp / "calib.npz"), "--data",
              str(tmp / "test.npz"), "-o", str(tmp_path / "r.csv"), "--workers", "2"])
    assert exc.value.code == 0, capsys.readouterr().err
    assert [(r["macs"], r["status"]) for r in _table(tmp_path / "r.csv")] == [("16", "ok"), ("32", "ok")]


def test_data_without_labels_is_scored_by_agreement_with_the_float_model(setup, client, tmp_path, capsys):
    np.savez(setup[0] / "unlabelled.npz", x=np.load(setup[0] / "test.npz")["x"])
    with pytest.raises(SystemExit) as exc:
        _cli(setup, tmp_path, client, "-q", data="unlabelled.npz")
    assert exc.value.code == 0, capsys.readouterr().err
    table = _table(tmp_path / "r.csv")
    assert "accuracy" not in table[0] and all(0 <= float(r["agreement"]) <= 1 for r in table if r["status"] == "ok")
    assert "Pareto front stored size-agreement" in capsys.readouterr().out


def test_progress_is_one_line_on_a_terminal_and_nothing_with_q(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    draw = _progress(argparse.Namespace(quiet=False))
    draw(3, 8, 1)
    draw(8, 8, 2)
    lines = ["rnnaccel-sweep: 3/8 points done, 1 failed", "rnnaccel-sweep: 8/8 points done, 2 failed"]
    assert sys.stderr.getvalue() == "".join(f"\r{line}" for line in lines) + "\n"
    assert _progress(argparse.Namespace(quiet=True)) is None


def test_a_cache_that_cannot_be_made_is_one_line(setup, client, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exc:
        _cli(setup, tmp_path, client, "--cache", str(tmp_path / "file" / "cache"))
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("rnnaccel-sweep: error: cannot create the cache directory"), err
    assert not (tmp_path / "r.csv").exists()


def _fails(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("rnnaccel-sweep: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--macs", "16,,32", "expected a comma-separated list"),
    ("--macs", "16,x", "'x' is not a positive integer"),
    ("--macs", "16,16", "a value is given twice"),
    ("--macs", "12", "macs=12 is invalid"),
    ("--compress", "none,5", "'5' is not one of none, 4, 3, 2, auto"),
    ("--compress", "auto:1.5", "'auto:1.5' is not one of none, 4, 3, 2, auto, or auto:S"),
    ("--compress", "4:0.9", "'4:0.9' is not one of"),
    ("--compress", "auto,auto:0.99", "a value is given twice"),  # the default budget, written out
    ("--compress", "auto:0.95,auto:0.950", "a value is given twice"),
    ("--weight-bits", "8,12", "weight_bits=12 is invalid"),
    ("--target", "nosuch", "neither a known target"),
    ("--data", "missing.npz", "cannot read data"),
    ("--data", "lstm.onnx", "not a valid .npz file"),
    ("--scheduler", "tcp://127.0.0.1:1", "cannot reach the Dask scheduler"),
    ("--timeout", "0", "expected a positive number of seconds"),
])
def test_bad_options_and_data_are_one_line_and_no_table(setup, tmp_path, capsys, option, value, message):
    tmp = setup[0]
    args = {"--calibration": str(tmp / "calib.npz"), "--data": str(tmp / "test.npz"), "--timeout": "0.5"}
    args[option] = str(tmp / value) if option == "--data" else value
    argv = [str(tmp / "lstm.onnx"), "-o", str(tmp_path / "r.csv"), *itertools.chain(*args.items())]
    assert message in _fails(argv, capsys)
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.parametrize(("arrays", "message"), [
    ({"x": np.zeros((12, 1, STEPS, INPUTS)), "y": np.zeros(11, np.int64)}, "the same length"),
    ({"x": np.zeros((0, 1, STEPS, INPUTS)), "y": np.zeros(0, np.int64)}, "has no samples"),
    ({"x": np.zeros((12, 1, STEPS, INPUTS)), "y": np.zeros(12)}, "must be 12 integers"),
])
def test_data_that_cannot_be_scored_is_one_line(setup, tmp_path, capsys, arrays, message):
    tmp = setup[0]
    np.savez(tmp_path / "bad.npz", **arrays)
    assert message in _fails([str(tmp / "lstm.onnx"), "--calibration", str(tmp / "calib.npz"), "--data",
                              str(tmp_path / "bad.npz"), "-o", str(tmp_path / "r.csv")], capsys)


def test_samples_are_spread_over_the_data(setup):
    full = read_data(str(setup[0] / "test.npz"), None)
    part = read_data(str(setup[0] / "test.npz"), 4)
    assert read_data(str(setup[0] / "test.npz"), 100)["y"].tolist() == full["y"].tolist()
    np.testing.assert_array_equal(part["x"], full["x"][[0, 3, 6, 9]])
    np.testing.assert_array_equal(part["y"], full["y"][[0, 3, 6, 9]])


def test_refused_before_any_work(setup, tmp_path, capsys, monkeypatch):
    tmp = setup[0]
    base = ["--calibration", str(tmp / "calib.npz"), "--data", str(tmp / "test.npz")]
    other = tmp_path / "other"
    other.mkdir()
    (other / "lstm.onnx").write_bytes((tmp / "lstm.onnx").read_bytes())
    assert "two models are named alike" in _fails([str(tmp / "lstm.onnx"), str(other / "lstm.onnx"), *base,
                                                   "-o", str(tmp_path / "r.csv")], capsys)
    assert "refusing to overwrite" in _fails([str(tmp / "lstm.onnx"), *base, "-o", str(tmp / "test.npz")], capsys)
    monkeypatch.setitem(sys.modules, "distributed", None)
    assert "pip install 'rnnaccel[sweep]'" in _fails([str(tmp / "lstm.onnx"), *base, "-o", str(tmp_path / "r.csv")],
                                                     capsys)


def test_without_labels_or_onnxruntime_the_sweep_says_what_it_needs(setup, tmp_path, capsys, monkeypatch):
    tmp = setup[0]
    np.savez(tmp_path / "unlabelled.npz", x=np.load(tmp / "test.npz")["x"])
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    err = _fails([str(tmp / "lstm.onnx"), "--calibration", str(tmp / "calib.npz"), "--data",
                  str(tmp_path / "unlabelled.npz"), "-o", str(tmp_path / "r.csv")], capsys)
    assert "no labels 'y'" in err and "onnxruntime" in err


@pytest.mark.parametrize("share", ["0.5", "1"])
def test_an_auto_point_with_a_budget_compiles_as_min_agreement_does(setup, share):
    """`auto:S` is --compress auto --min-agreement S: the point stores what that compile stores."""
    from compiler.passes.budget import Budget
    from compiler.pipeline import compile_model

    _, model, calibration, data = setup
    (point,) = grid(["lstm"], Axes(compress=(f"auto:{share}",)))
    row = measure(point, model, calibration, data, scorings(data, "y", None, {})("lstm"))
    compiled = compile_model(model, point.target, calibration, compression=Budget(float(share)))
    assert row["status"] == "ok" and row["stored_bytes"] == compiled.report["total"]["stored_bytes"]
