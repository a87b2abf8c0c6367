"""rnnaccel-sim --batch (many inferences, batch totals, progress) and --dump-vectors ($readmemh images)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from compiler.passes.compress import Compression
from compiler.pipeline import compile_model
from compiler.reference import run_reference
from isa import container, numerics
from runtime_sim import Simulator
from runtime_sim.batch import batch_totals, progress_bar
from runtime_sim.cli import main
from runtime_sim.vectors import vectors
from tests.sim_helpers import HIDDEN, samples, tiny_rnn

KWS = Path(__file__).resolve().parents[1] / "examples" / "kws"


def exit_status(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code


def readmemh(path: Path) -> tuple[int, list[int], list[str]]:
    """A tiny $readmemh reader: (start address, words as unsigned ints, comment lines)."""
    base, words, comments = 0, [], []
    for line in path.read_text().splitlines():
        if line.startswith("//"):
            comments.append(line)
        elif line.startswith("@"):
            assert not words, "one @address per file, before the words"
            base = int(line[1:], 16)
        elif line.strip():
            words.append(int(line, 16))
    return base, words, comments


def signed(words: list[int], bits: int) -> np.ndarray:
    w = np.array(words, np.int64)
    return np.where(w >= 1 << (bits - 1), w - (1 << bits), w)


@pytest.fixture
def tiny(tmp_path):
    prog = tmp_path / "tiny.rnna"
    container.save(tiny_rnn(), str(prog))
    return tmp_path, str(prog)


def test_batch_keeps_the_leading_axis_and_is_bit_exact_per_sample(tiny):
    tmp, prog = tiny
    xs = samples(5)
    np.savez(tmp / "in.npz", x=xs)
    out, stats = tmp / "out.npz", tmp / "stats.json"
    assert exit_status([prog, "--inputs", str(tmp / "in.npz"), "--batch", "--outputs", str(out),
                        "--stats", str(stats)]) == 0
    sim = Simulator(tiny_rnn())
    with np.load(out) as npz:
        assert npz["h"].shape == (5, HIDDEN)
        for i, x in enumerate(xs):
            np.testing.assert_array_equal(npz["h"][i], sim.run({"x": x}).outputs["h"])
    st = json.loads(stats.read_text())
    batch = st["batch"]
    assert batch["samples"] == 5 and batch["cycles"] == 5 * st["cycles"] and batch["mac_ops"] == 5 * st["mac_ops"]
    assert batch["chip_seconds"] == pytest.approx(5 * st["cycles"] / (st["clock_mhz"] * 1e6))
    assert batch["wall_seconds"] > 0
    assert batch["simulated_macs_per_second"] == pytest.approx(batch["mac_ops"] / batch["wall_seconds"])


def test_batch_summary_and_no_progress_bar_when_stderr_is_not_a_terminal(tiny, capsys):
    tmp, prog = tiny
    np.savez(tmp / "in.npz", x=samples(3))
    assert exit_status([prog, "--inputs", str(tmp / "in.npz"), "--batch"]) == 0
    captured = capsys.readouterr()
    assert "batch:           3 samples" in captured.out and "simulated MACs/s" in captured.out
    assert captured.err == ""


def test_batch_without_a_samples_axis_is_one_line_exit_2(tiny, capsys):
    tmp, prog = tiny
    np.savez(tmp / "in.npz", x=samples(1)[0])
    assert exit_status([prog, "--inputs", str(tmp / "in.npz"), "--batch", "--outputs", str(tmp / "o.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnaccel-sim: error: input 'x' has shape (4, 10), expected (N, 4, 10)")
    assert err.count("\n") == 1 and not (tmp / "o.npz").exists()


def test_progress_reaches_the_total_and_draws_only_on_a_terminal():
    seen = []
    Simulator(tiny_rnn()).run({"x": samples(3)}, batch=True, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (3, 3)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    draw = progress_bar(tty, width=10)
    draw(1, 2)
    draw(2, 2)
    assert tty.getvalue() == "\r[#####.....] 1/2 samples\r[##########] 2/2 samples\n"
    assert progress_bar(io.StringIO()) is None


def test_batch_totals_of_zero_wall_time_do_not_divide_by_zero():
    totals = batch_totals({"cycles": 10, "mac_ops": 4, "clock_mhz": 200, "energy_uj": 0.5}, 3, 0.0)
    assert totals["simulated_macs_per_second"] == 0.0 and totals["cycles"] == 30 and totals["energy_uj"] == 1.5


@pytest.fixture(scope="module")
def gru(tmp_path_factory):
    """The trained KWS GRU, compiled, with one test utterance as IN.npz."""
    tmp = tmp_path_factory.mktemp("gru")
    compiled = compile_model(str(KWS / "kws_gru64.onnx"), calibration=dict(np.load(KWS / "calib.npz")))
    container.save(compiled.program, str(tmp / "gru.rnna"))
    x = np.load(KWS / "test.npz")["x"][7]
    np.savez(tmp / "in.npz", mfcc=x)
    return tmp, compiled, x


def test_dump_vectors_parse_back_to_the_simulators_integers(gru):
    tmp, compiled, x = gru
    out = tmp / "vectors"
    assert exit_status([str(tmp / "gru.rnna"), "--inputs", str(tmp / "in.npz"), "--dump-vectors", str(out),
                        "--stats", str(tmp / "s.json")]) == 0
    files = {f["file"]: f for f in json.loads((out / "manifest.json").read_text())["files"]}
    assert sorted(files) == sorted(p.name for p in out.iterdir() if p.name != "manifest.json")
    for name, entry in files.items():
        base, words, comments = readmemh(out / name)
        assert (base, len(words)) == (entry["base"], entry["count"]) and comments[0] == f"// {entry['what']}"
        assert max(words) < 1 << entry["bits"]
    program, prog_in = compiled.program, compiled.program.inputs[0]

    def values(name: str) -> np.ndarray:
        return signed(readmemh(out / name)[1], files[name]["bits"])

    np.testing.assert_array_equal(values("input_mfcc.hex"), numerics.quantize(x, prog_in.scale).ravel())
    raw = Simulator(program).run({"mfcc": x}).raw_outputs["logits"]
    np.testing.assert_array_equal(values("output_logits.hex"), raw.ravel())
    ref = run_reference(compiled.graph, {"mfcc": x[None]})
    layers = {f["what"].split("'")[1]: n for n, f in files.items() if f["kind"] == "layer"}
    np.testing.assert_array_equal(values(layers["/Add"]), ref["/Add_output_0"].ravel())
    np.testing.assert_array_equal(values(layers["/rnn/GRU"]), ref["/rnn/GRU_output_1"].ravel())
    np.testing.assert_array_equal(values(layers["/head/Gemm"]), raw.ravel())
    for region in program.regions:
        assert bytes(readmemh(out / f"wmem_{region.name}.hex")[1]) == region.data
    for i, (name, table) in enumerate(program.tables.items()):
        np.testing.assert_array_equal(values(f"table_{name}.hex"), table)
        assert files[f"table_{name}.hex"]["memory"] == f"table{i}"


def test_dump_vectors_refuses_batch_and_a_non_empty_directory(gru, capsys):
    tmp, _, _ = gru
    prog, inputs = str(tmp / "gru.rnna"), str(tmp / "in.npz")
    assert exit_status([prog, "--inputs", inputs, "--batch", "--dump-vectors", str(tmp / "v1")]) == 2
    assert "does not combine with --batch" in capsys.readouterr().err and not (tmp / "v1").exists()
    (tmp / "full").mkdir()
    (tmp / "full" / "keep.txt").write_text("mine")
    assert exit_status([prog, "--inputs", inputs, "--dump-vectors", str(tmp / "full")]) == 2
    assert "is not an empty directory" in capsys.readouterr().err
    assert [p.name for p in (tmp / "full").iterdir()] == ["keep.txt"]


def test_a_failed_run_leaves_no_vector_directory_or_temporary(gru, capsys):
    tmp, _, _ = gru
    np.savez(tmp / "bad.npz", mfcc=np.zeros((2, 3), np.float32))
    before = sorted(p.name for p in tmp.iterdir())
    assert exit_status([str(tmp / "gru.rnna"), "--inputs", str(tmp / "bad.npz"), "--dump-vectors",
                        str(tmp / "v2")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert sorted(p.name for p in tmp.iterdir()) == before


def test_an_unwritable_output_removes_the_vector_directory(gru, capsys):
    tmp, _, _ = gru
    assert exit_status([str(tmp / "gru.rnna"), "--inputs", str(tmp / "in.npz"), "--dump-vectors",
                        str(tmp / "v3"), "--stats", str(tmp / "missing" / "s.json")]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert not (tmp / "v3").exists() and not [p for p in tmp.iterdir() if p.name.startswith(".v3")]


def test_codebook_memory_is_dumped_after_cbload(tmp_path):
    compiled = compile_model(str(KWS / "kws_gru64.onnx"), calibration=dict(np.load(KWS / "calib.npz")),
                             compression=Compression(4, "tile"))
    sim = Simulator(compiled.program)
    images = [i for i in vectors(sim, {"mfcc": np.load(KWS / "test.npz")["x"][0]}) if i.memory == "cbm"]
    assert images
    m = sim.machine(1)
    sim.execute(m)
    for image in images:
        np.testing.assert_array_equal(image.values, m.cbm[image.base:image.base + len(image.values)])
