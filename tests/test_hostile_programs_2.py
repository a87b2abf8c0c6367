"""Hostile input files, listings, targets and programs, part 2: refused with one line, quickly.

Each case is built here: a FIFO, a symlink to a device, a sparse 10 GB file, numbers of 5 000
digits (Python refuses int() of strings over 4 300 digits), nesting that exhausts the recursion
limit, a repeated memory region, and programs too large for the instruction memory.
"""

from __future__ import annotations

import os

import pytest

from isa.errors import RnnaccelError
from isa.fileio import read_input

HUGE = 10 * 2**30  # a sparse file of this size costs no disk space


def _sparse(path, size: int = HUGE) -> None:
    with open(path, "wb") as fh:
        fh.truncate(size)


# --- isa.fileio.read_input ----------------------------------------------------------------------

def test_read_input_reads_a_regular_file_and_follows_symlinks(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    assert read_input(tmp_path / "link", "data", 3) == b"abc"


@pytest.mark.parametrize("make, problem", [
    (os.mkfifo, "it is a FIFO, not a regular file"),
    (lambda p: p.symlink_to("/dev/zero"), "it is a character device, not a regular file"),
    (lambda p: p.mkdir(), "it is a directory, not a regular file"),
    (_sparse, f"it is {HUGE} bytes, larger than the limit of 100 bytes"),
    (lambda p: None, "No such file or directory"),
])
def test_read_input_refuses_before_reading(tmp_path, make, problem):
    path = tmp_path / "in"
    make(path)
    with pytest.raises(RnnaccelError) as info:
        read_input(path, "data", 100)
    assert str(info.value) == f"cannot read data {path}: {problem}"
