"""The program container: exact round trip, and every kind of corruption named, never crashed on."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isa.container import MAGIC, Program, from_bytes, load, save, to_bytes
from isa.errors import RnnaccelError

from isa_strategies import programs, sample_program

_HEADER = struct.Struct("<4sHH")
_ENTRY = struct.Struct("<4sII")


@given(programs())
@settings(max_examples=50, deadline=None)
def test_round_trip(prog: Program) -> None:
    blob = to_bytes(prog)
    again = from_bytes(blob)
    assert again == prog
    assert to_bytes(again) == blob


def test_save_and_load(tmp_path, program_blob) -> None:
    prog = from_bytes(program_blob)
    save(prog, tmp_path / "p.rnna")
    assert to_bytes(load(str(tmp_path / "p.rnna"))) == program_blob


def test_load_missing_file(tmp_path) -> None:
    with pytest.raises(RnnaccelError, match="cannot read program"):
        load(str(tmp_path / "absent.rnna"))


@pytest.fixture(scope="module")
def program_blob() -> bytes:
    return to_bytes(sample_program())


def _reseal(body: bytes) -> bytes:
    """A body with a valid CRC, so the checks behind the checksum are reached."""
    return body + struct.pack("<I", zlib.crc32(body))


def _entries(blob: bytes) -> list[tuple[bytes, int, int]]:
    _, _, count = _HEADER.unpack_from(blob)
    return [_ENTRY.unpack_from(blob, _HEADER.size + i * _ENTRY.size) for i in range(count)]


def _with_entries(blob: bytes, entries: list[tuple[bytes, int, int]]) -> bytes:
    """The same payloads behind a new section table (offsets shifted to match), resealed."""
    magic, version, _ = _HEADER.unpack_from(blob)
    old_end = _HEADER.size + _ENTRY.size * len(_entries(blob))
    shift = _ENTRY.size * len(entries) + _HEADER.size - old_end
    head = _HEADER.pack(magic, version, len(entries)) + b"".join(
        _ENTRY.pack(t, o + shift, n) for t, o, n in entries)
    return _reseal(head + blob[old_end:-4])


@given(st.data())
@settings(max_examples=200, deadline=None)
def test_any_truncation_is_an_error(program_blob, data) -> None:
    cut = data.draw(st.integers(0, len(program_blob) - 1))
    with pytest.raises(RnnaccelError, match="checksum|bad magic"):
        from_bytes(program_blob[:cut])


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_any_bit_flip_is_an_error(program_blob, data) -> None:
    bit = data.draw(st.integers(0, len(program_blob) * 8 - 1))
    flipped = bytearray(program_blob)
    flipped[bit // 8] ^= 1 << bit % 8
    with pytest.raises(RnnaccelError, match="checksum|bad magic"):
        from_bytes(bytes(flipped))


def test_bad_magic(program_blob) -> None:
    with pytest.raises(RnnaccelError, match="bad magic"):
        from_bytes(b"ELF\x7f" + program_blob[4:])


def test_wrong_version_with_valid_crc(program_blob) -> None:
    body = MAGIC + struct.pack("<H", 99) + program_blob[6:-4]
    with pytest.raises(RnnaccelError, match="unsupported program version 99"):
        from_bytes(_reseal(body))


def test_section_out_of_bounds(program_blob) -> None:
    entries = _entries(program_blob)
    tag, offset, length = entries[1]
    entries[1] = (tag, offset, length + 10**6)
    with pytest.raises(RnnaccelError, match=f"section {tag.decode()} .* out of bounds"):
        from_bytes(_with_entries(program_blob, entries))


def test_overlapping_sections(program_blob) -> None:
    entries = _entries(program_blob)
    tag, _, length = entries[1]
    entries[1] = (tag, entries[0][1], length)
    with pytest.raises(RnnaccelError, match="overlaps another"):
        from_bytes(_with_entries(program_blob, entries))


@pytest.mark.parametrize("tag", [b"CODE", b"TABL"])
def test_missing_section(program_blob, tag) -> None:
    entries = [e for e in _entries(program_blob) if e[0] != tag]
    with pytest.raises(RnnaccelError, match=f"missing section.*{tag.decode()}"):
        from_bytes(_with_entries(program_blob, entries))


def test_repeated_section(program_blob) -> None:
    entries = _entries(program_blob)
    with pytest.raises(RnnaccelError, match="unknown or repeated section"):
        from_bytes(_with_entries(program_blob, [*entries, entries[0]]))


def test_region_without_its_section(program_blob) -> None:
    entries = [e for e in _entries(program_blob) if e[0] not in (b"WGHT", b"BIAS")]
    with pytest.raises(RnnaccelError, match="region .* does not match section"):
        from_bytes(_with_entries(program_blob, entries))


def test_malformed_meta(program_blob) -> None:
    entries = _entries(program_blob)
    meta = next(e for e in entries if e[0] == b"META")
    body = bytearray(program_blob[:-4])
    body[meta[1]:meta[1] + meta[2]] = b"[" + b" " * (meta[2] - 1)
    with pytest.raises(RnnaccelError, match="META section is not valid JSON"):
        from_bytes(_reseal(bytes(body)))
