"""Container version 2: a partitioned program's bytes, listing and assembly round trip exactly;
every inconsistency is named in one line."""

from __future__ import annotations

import dataclasses
import json
import struct

import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from compiler.pipeline import compile_model
from isa import container, partcontainer, programfile
from isa.assembler import assemble
from isa.cli import as_main, objdump_main
from isa.container import PARTITIONED_VERSION, Program, seal
from isa.errors import RnnaccelError
from isa.listing import disassemble
from isa.partitioned import ISLAND_DOMAIN, ISLAND_OP, HostNode, HostPart, PartitionedProgram
from isa.target import Target

from models import fc_model


def _chip(inputs: int, outputs: int, names: tuple[str, str], seed: int) -> Program:
    """A compiled fully connected layer whose input and output carry the host graph's tensor names."""
    prog = compile_model(fc_model(1, inputs, outputs, seed=seed), Target(macs=8)).program
    (x,), (y,) = prog.inputs, prog.outputs
    return dataclasses.replace(prog, inputs=(dataclasses.replace(x, name=names[0]),),
                               outputs=(dataclasses.replace(y, name=names[1]),))


_NODES = (HostNode("soft", "Softsign", "", ("x",), ("s",)),
          HostNode("island0", ISLAND_OP, ISLAND_DOMAIN, ("s",), ("a",), island=0),
          HostNode("mid", "Softsign", "", ("a",), ("b",), macs=0),
          HostNode("island1", ISLAND_OP, ISLAND_DOMAIN, ("b",), ("y",), island=1))


def _host_model() -> bytes:
    """The host graph as the compiler writes it: host nodes and one call node per island."""
    nodes = [helper.make_node(n.op, list(n.inputs), list(n.outputs), name=n.name, domain=n.domain,
                              **({"index": n.island} if n.island >= 0 else {})) for n in _NODES]
    graph = helper.make_graph(nodes, "host", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ISLAND_DOMAIN, 1)])
    return model.SerializeToString()


@pytest.fixture(scope="module")
def prog() -> PartitionedProgram:
    islands = (_chip(4, 4, ("s", "a"), 0), _chip(4, 3, ("b", "y"), 1))
    return PartitionedProgram("two-islands", islands, HostPart(
        model=_host_model(), nodes=_NODES, inputs=("x",), outputs=("y",), boundary_bytes=60, chip_mac_fraction=1.0))


@pytest.fixture(scope="module")
def blob(prog) -> bytes:
    return programfile.to_bytes(prog)


def _sections(blob: bytes) -> list[tuple[bytes, bytes]]:
    _, _, count = struct.unpack_from("<4sHH", blob)
    entries = [struct.unpack_from("<4sII", blob, 8 + 12 * i) for i in range(count)]
    return [(tag, blob[offset:offset + length]) for tag, offset, length in entries]


def _edited(blob: bytes, tag: bytes, payload: bytes | None) -> bytes:
    """`blob` with one section's payload replaced (None: removed), resealed behind a valid CRC."""
    sections = [(t, payload if t == tag else p) for t, p in _sections(blob) if t != tag or payload is not None]
    return seal(PARTITIONED_VERSION, sections)


def _with_part(blob: bytes, edit) -> bytes:
    part = json.loads(dict(_sections(blob))[b"PART"])
    edit(part)
    return _edited(blob, b"PART", json.dumps(part).encode())


def _refused(blob: bytes, message: str) -> None:
    with pytest.raises(RnnaccelError) as info:
        programfile.from_bytes(blob)
    assert str(info.value) == message


# --- round trips -----------------------------------------------------------------------------

def test_bytes_round_trip(prog, blob) -> None:
    assert struct.unpack_from("<H", blob, 4) == (PARTITIONED_VERSION,)
    again = programfile.from_bytes(blob)
    assert again == prog and again.host.model == prog.host.model
    assert programfile.to_bytes(again) == blob


def test_sections_hold_the_host_graph_and_each_island_as_a_chip_program(prog, blob) -> None:
    sections = dict(_sections(blob))
    assert list(sections) == [b"PART", b"HOST", b"I000", b"I001"]
    assert onnx.load_from_string(sections[b"HOST"]).graph.node[1].op_type == ISLAND_OP
    assert [sections[t] for t in (b"I000", b"I001")] == [container.to_bytes(p) for p in prog.islands]


def test_a_chip_program_keeps_version_1_bytes(prog) -> None:
    chip = prog.islands[0]
    assert programfile.to_bytes(chip) == container.to_bytes(chip)
    assert programfile.from_bytes(container.to_bytes(chip)) == chip


def test_save_and_load(tmp_path, prog, blob) -> None:
    programfile.save(prog, str(tmp_path / "p.rnna"))
    assert (tmp_path / "p.rnna").read_bytes() == blob
    assert programfile.load(str(tmp_path / "p.rnna")) == prog


def test_listing_shows_the_host_part_then_each_island(prog) -> None:
    text = disassemble(prog)
    assert ('.partitioned model="two-islands" inputs=["x"] outputs=["y"] boundary_bytes=60 '
            'chip_mac_fraction=1.0\n') in text
    assert '.hostnode name="soft" op="Softsign" domain="" inputs=["x"] outputs=["s"] macs=0\n' in text
    assert ('.hostnode name="island1" op="Island" domain="rnnaccel" inputs=["b"] outputs=["y"] macs=0 island=1\n'
            in text)
    assert f".hostmodel size={len(prog.host.model)}\n000000: " in text
    assert ('\n.island 1 ; called by host node "island1" (rnnaccel.Island) with inputs ["b"], outputs ["y"]\n'
            + disassemble(prog.islands[1])) in text


def test_assembly_round_trip(prog, blob) -> None:
    assert programfile.to_bytes(assemble(disassemble(prog))) == blob


def test_objdump_then_as_gives_identical_bytes(tmp_path, blob) -> None:
    (tmp_path / "p.rnna").write_bytes(blob)
    for main, argv in ((objdump_main, ["p.rnna", "-o", "p.s"]), (as_main, ["p.s", "-o", "q.rnna"])):
        with pytest.raises(SystemExit) as info:
            main([str(tmp_path / a) if "." in a else a for a in argv])
        assert info.value.code == 0
    assert (tmp_path / "q.rnna").read_bytes() == blob


# --- corruption --------------------------------------------------------------------------------

def test_flipped_byte(blob) -> None:
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x10
    _refused(bytes(flipped), "corrupted program: checksum mismatch (file truncated or modified)")


@given(st.data())
@settings(max_examples=100, deadline=None)
def test_any_truncation_is_an_error(blob, data) -> None:
    with pytest.raises(RnnaccelError, match="checksum|bad magic"):
        programfile.from_bytes(blob[:data.draw(st.integers(0, len(blob) - 1))])


def test_part_is_not_json(blob) -> None:
    with pytest.raises(RnnaccelError, match="^corrupted program: PART section is not valid JSON"):
        programfile.from_bytes(_edited(blob, b"PART", b"{nodes"))


def test_part_node_of_the_wrong_type(blob) -> None:
    _refused(_with_part(blob, lambda p: p["nodes"][2].update(macs="many")),
             "corrupted program: PART node 2: macs must be an integer")


def test_part_without_a_key(blob) -> None:
    _refused(_with_part(blob, lambda p: p.pop("outputs")),
             "corrupted program: PART is not an object with the keys format, model, islands, inputs, outputs, "
             "boundary_bytes, chip_mac_fraction, nodes")


def test_island_index_out_of_range(blob) -> None:
    _refused(_with_part(blob, lambda p: p["nodes"][3].update(island=7)),
             "corrupted program: host node 'island1' calls island 7, but the program has 2 island(s)")


def test_island_not_called(blob) -> None:
    def drop_call(part: dict) -> None:
        part["nodes"][3].update(op="Softsign", domain="", island=-1)
    _refused(_with_part(blob, drop_call), "corrupted program: island 1 is never called by a host node")


def test_island_called_twice(blob) -> None:
    _refused(_with_part(blob, lambda p: p["nodes"][3].update(island=0)),
             "corrupted program: island 0 is called twice, by host nodes 'island0' and 'island1'")


def test_call_node_inputs_differ_from_the_island(blob) -> None:
    _refused(_with_part(blob, lambda p: p["nodes"][1].update(inputs=["x"])),
             "corrupted program: host node 'island0' passes inputs 'x' to island 0, whose inputs are 's'")


def test_host_output_produced_by_no_node(blob) -> None:
    _refused(_with_part(blob, lambda p: p.update(outputs=["z"])),
             "corrupted program: program output 'z' is produced by no host node")


def test_host_operator_named_as_a_call(blob) -> None:
    _refused(_with_part(blob, lambda p: p["nodes"][0].update(op="Island", domain="rnnaccel")),
             "corrupted program: host node 'soft' (rnnaccel.Island): only an rnnaccel.Island node calls an island, "
             "and it must name one")


def test_missing_host_section(blob) -> None:
    _refused(_edited(blob, b"HOST", None), "corrupted program: missing section(s) HOST")


def test_missing_island_section(blob) -> None:
    _refused(_edited(blob, b"I001", None), "corrupted program: missing section(s) I001")


def test_island_section_beyond_the_count(blob) -> None:
    _refused(_with_part(blob, lambda p: p.update(islands=1)),
             "corrupted program: section I001 is an island PART does not list (it lists 1)")


def test_island_section_corrupted(blob) -> None:
    island = bytearray(dict(_sections(blob))[b"I001"])
    island[20] ^= 1
    _refused(_edited(blob, b"I001", bytes(island)),
             "corrupted program: island 1 (section I001): checksum mismatch (file truncated or modified)")


def test_a_chip_program_reader_names_a_partitioned_program(blob) -> None:
    with pytest.raises(RnnaccelError, match=r"^expected a chip program \(container version 1\), found a "
                                            r"partitioned program \(container version 2\)$"):
        container.from_bytes(blob)


def test_an_inconsistent_program_is_not_written(prog) -> None:
    host = dataclasses.replace(prog.host, nodes=prog.host.nodes[:2])
    with pytest.raises(RnnaccelError, match="island 1 is never called"):
        partcontainer.to_bytes(dataclasses.replace(prog, host=host))


def test_objdump_error_is_one_line_exit_2(tmp_path, capsys, blob) -> None:
    (tmp_path / "p.rnna").write_bytes(_with_part(blob, lambda p: p["nodes"][3].update(island=0)))
    with pytest.raises(SystemExit) as info:
        objdump_main([str(tmp_path / "p.rnna")])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("rnnaccel-objdump: error: corrupted program: island 0 is called twice, by host nodes "
                            "'island0' and 'island1'\n")


# --- assembler -------------------------------------------------------------------------------

def _assembly_error(text: str) -> str:
    with pytest.raises(RnnaccelError) as info:
        assemble(text, source="p.s")
    return str(info.value)


def test_assembler_checks_island_numbers(prog) -> None:
    text = disassemble(prog).replace("\n.island 1 ", "\n.island 2 ")
    line = text[:text.index(".island 2")].count("\n") + 1
    assert _assembly_error(text) == (f"p.s:{line}:9: .island 2: expected island 1 (islands are numbered from 0, "
                                     "in order)")


def test_assembler_checks_the_host_part_against_the_islands(prog) -> None:
    text = disassemble(prog).replace('outputs=["y"] macs=0 island=1', 'outputs=["y"] macs=0 island=0')
    line = text[:text.index(".partitioned")].count("\n") + 1
    assert _assembly_error(text) == f"p.s:{line}:1: island 0 is called twice, by host nodes 'island0' and 'island1'"


def test_assembler_wants_names_in_a_names_list(prog) -> None:
    text = disassemble(prog).replace('inputs=["x"] outputs=["y"] boundary', 'inputs=[1] outputs=["y"] boundary')
    line = text[:text.index(".partitioned")].count("\n") + 1
    assert _assembly_error(text) == (f"p.s:{line}:34: .partitioned: inputs must be a list of quoted strings "
                                     'like ["x","y"]')
