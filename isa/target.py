"""The target description: one data object that the compiler targets and the simulator models.

It lives in `isa` because both sides need it and `isa` is the only package both may import.
A target is selected by name, loaded from a JSON file, and overridden field by field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from isa.errors import RnnaccelError, shortened
from isa.fileio import loads_json, read_input

MAX_TARGET_BYTES = 64 << 10  # a description is a few hundred bytes; a larger file is refused unread


@dataclass(frozen=True)
class Target:
    """Parameters of one RNNAccel configuration (SPEC section 2)."""

    macs: int = 32
    weight_bits: int = 8
    act_bits: int = 16
    acc_bits: int = 32
    vec_lanes: int = 8
    mac_latency: int = 4
    vec_latency: int = 4
    dma_bytes_per_cycle: int = 8
    dma_latency: int = 20
    weight_mem_bytes: int = 524288
    act_mem_bytes: int = 65536
    acc_entries: int = 4096
    codebook_entries: int = 4096
    clock_mhz: int = 200
    # energy per event in femtojoules (isa/energy.py; defaults and sources in docs/energy.md)
    mac_w8_fj: int = 444
    mac_w16_fj: int = 800
    mem_ref_bytes: int = 32768
    wmem_read_fj: int = 2222
    amem_read_fj: int = 4444
    amem_write_fj: int = 4444
    acc_access_fj: int = 8889
    decompress_fj: int = 49
    vec_op_fj: int = 800
    table_lookup_fj: int = 1111
    dma_fj: int = 11111
    leak_fj: int = 2500

    def __post_init__(self) -> None:
        for name, ok, rule in _RULES:
            if not ok(getattr(self, name)):
                raise RnnaccelError(f"target: {name}={getattr(self, name)!r} is invalid ({rule})")

    @property
    def weight_bytes(self) -> int:
        return self.weight_bits // 8

    @property
    def act_elems(self) -> int:
        """Activation memory size in elements (activations are `act_bits` wide)."""
        return self.act_mem_bytes // (self.act_bits // 8)

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    def env(self) -> dict[str, int]:
        """The names an expression of the instruction table may use (weight_bytes is derived)."""
        return {**self.to_dict(), "weight_bytes": self.weight_bytes}

    def replace(self, **overrides: int) -> Target:
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise RnnaccelError(f"target: unknown parameter(s) {_names(unknown)}")
        return dataclasses.replace(self, **overrides)

    @classmethod
    def from_dict(cls, data: dict) -> Target:
        if not isinstance(data, dict):
            raise RnnaccelError("target: description must be a JSON object")
        bad = [k for k, v in data.items() if not isinstance(v, int) or isinstance(v, bool)]
        if bad:
            raise RnnaccelError(f"target: parameter(s) {_names(bad)} must be integers")
        return cls().replace(**data)


def _names(keys) -> str:
    """Keys for a one-line message: a key from a hostile file may hold newlines or be no name at all."""
    return ", ".join(k if str(k).isidentifier() else repr(k) for k in sorted(keys, key=str))


MAX_FJ = 10**9  # a microjoule per event: far above any real one, so a typo is caught
ENERGY_FIELDS = ("mac_w8_fj", "mac_w16_fj", "wmem_read_fj", "amem_read_fj", "amem_write_fj", "acc_access_fj",
                 "decompress_fj", "vec_op_fj", "table_lookup_fj", "dma_fj", "leak_fj")


def _power_of_two(v: int) -> bool:
    return v > 0 and v & (v - 1) == 0


_RULES = (
    ("macs", lambda v: _power_of_two(v) and 8 <= v <= 256, "a power of two from 8 to 256"),
    ("weight_bits", lambda v: v in (8, 16), "8 or 16"),
    ("act_bits", lambda v: v == 16, "only 16-bit activations are supported"),
    ("acc_bits", lambda v: v == 32, "only 32-bit accumulators are supported"),
    ("vec_lanes", lambda v: _power_of_two(v) and v <= 256, "a power of two up to 256"),
    ("mac_latency", lambda v: 0 <= v <= 64, "0 to 64"),
    ("vec_latency", lambda v: 0 <= v <= 64, "0 to 64"),
    ("dma_bytes_per_cycle", lambda v: _power_of_two(v) and v <= 1024, "a power of two up to 1024"),
    ("dma_latency", lambda v: 0 <= v <= 10000, "0 to 10000"),
    ("weight_mem_bytes", lambda v: 0 < v <= 1 << 24, "1 byte to 16 MiB"),
    ("act_mem_bytes", lambda v: 0 < v <= 1 << 21 and v % 2 == 0, "an even size up to 2 MiB"),
    ("acc_entries", lambda v: 0 < v <= 1 << 16, "1 to 65536"),
    ("codebook_entries", lambda v: 0 < v <= 1 << 12, "1 to 4096"),
    ("clock_mhz", lambda v: 0 < v <= 10000, "1 to 10000"),
    ("mem_ref_bytes", lambda v: 0 < v <= 1 << 24, "1 byte to 16 MiB"),
    *((name, lambda v: 0 <= v <= MAX_FJ, f"0 to {MAX_FJ} fJ") for name in ENERGY_FIELDS),
)

TARGETS: dict[str, Target] = {
    "rnnaccel": Target(),
    "rnnaccel-16": Target(macs=16),
    "rnnaccel-64": Target(macs=64),
    "rnnaccel-128": Target(macs=128, weight_mem_bytes=1 << 21, act_mem_bytes=1 << 18),
}


def load_target(spec: str | None = None, **overrides: int | None) -> Target:
    """A target from a name in TARGETS or a JSON file, with command-line overrides applied."""
    base = TARGETS["rnnaccel"] if spec is None else _named_or_file(spec)
    given = {k: v for k, v in overrides.items() if v is not None}
    return base.replace(**given) if given else base


def _named_or_file(spec: str) -> Target:
    if spec in TARGETS:
        return TARGETS[spec]
    if not Path(spec).exists():
        names = ", ".join(TARGETS)
        raise RnnaccelError(f"target: '{spec}' is neither a known target ({names}) nor a file")
    raw = read_input(spec, "target description", MAX_TARGET_BYTES)
    try:
        data = loads_json(raw)
    except ValueError as exc:
        raise RnnaccelError(f"target: {spec} is not valid JSON ({shortened(exc, 80)})") from None
    return Target.from_dict(data)
