"""The energy model, written once: which events an instruction causes, and what they cost.

An executed instruction's events follow from its table row and operands alone (its MACs, the
lengths of what it reads and writes, its vector elements), never from data, so the compiler's
report and the simulator's cycle model count the same events from the same instructions; the
simulator alone knows the exact cycles, which leakage is charged for. Each event's energy is a
parameter of the target (integer femtojoules, Target's `*_fj` fields); a memory's energy per
access grows with the square root of its size, the trend of published SRAM measurements.
docs/energy.md gives the defaults, their sources and the arithmetic, and calls them what they
are: estimates.

A MAC lane operation is counted per weight streamed through a lane (the table's `macs`: rows x
cols, zero weights the compiler placed included); a lane left idle in a cycle is clock-gated and
costs only leakage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from isa.bounds import vector_elements
from isa.encoding import Instruction
from isa.table import CONSTANTS, evaluate
from isa.target import Target

FJ_PER_UJ = 1e9


@dataclass(frozen=True)
class Event:
    """One kind of event: its key in `energy_events`, the part of the chip its energy is
    charged to (a key of `energy_breakdown_uj`), and its energy in fJ on a target."""

    name: str
    part: str
    energy_fj: Callable[[Target], float]


def _scaled(per_access: int, size_bytes: int, target: Target) -> float:
    """An SRAM access's energy at `size_bytes`: the reference size's, times sqrt(size / reference)."""
    return per_access * math.sqrt(size_bytes / target.mem_ref_bytes)


def _mac(t: Target) -> float:
    return t.mac_w16_fj if t.weight_bits == 16 else t.mac_w8_fj


EVENTS: tuple[Event, ...] = (
    Event("mac_ops", "mac", _mac),
    Event("wmem_read_bytes", "weight_memory", lambda t: _scaled(t.wmem_read_fj, t.weight_mem_bytes, t)),
    Event("decompressed_weights", "decompression", lambda t: t.decompress_fj),
    Event("codebook_writes", "decompression", lambda t: t.decompress_fj),
    Event("amem_reads", "activation_memory", lambda t: _scaled(t.amem_read_fj, t.act_mem_bytes, t)),
    Event("amem_writes", "activation_memory", lambda t: _scaled(t.amem_write_fj, t.act_mem_bytes, t)),
    Event("acc_accesses", "accumulator_memory",
          lambda t: _scaled(t.acc_access_fj, t.acc_entries * CONSTANTS["acc_bytes"], t)),
    Event("vector_elements", "vector_unit", lambda t: t.vec_op_fj),
    Event("table_lookups", "vector_unit", lambda t: t.table_lookup_fj),
    Event("dma_bytes", "dma", lambda t: t.dma_fj),
    Event("cycles", "leakage", lambda t: t.leak_fj),
)
PARTS = tuple(dict.fromkeys(e.part for e in EVENTS))
DMA_BYTES = {"host": CONSTANTS["act_bytes"], "amem": CONSTANTS["act_bytes"]}  # what a DMA transfer writes


def per_event_fj(target: Target) -> dict[str, float]:
    """Each event's energy on `target`, in fJ."""
    return {e.name: e.energy_fj(target) for e in EVENTS}


def instruction_events(instr: Instruction, target_env: Mapping[str, int], reads: list, writes: list) -> dict[str, int]:
    """The events one execution of `instr` causes; (reads, writes) is its footprint. Leakage
    (`cycles`) belongs to the whole run, not to an instruction."""
    macs = evaluate(instr.op.macs, instr.env(target_env))
    elements = vector_elements(instr) if instr.op.unit == "VEC" else 0
    looks_up = any(f.name == "table" for f in instr.op.fields)
    return {
        "mac_ops": macs,
        "wmem_read_bytes": _length(reads, "wmem"),
        "decompressed_weights": macs if _length(reads, "cbm") else 0,
        "codebook_writes": _length(writes, "cbm"),
        "amem_reads": _length(reads, "amem"),
        "amem_writes": _length(writes, "amem"),
        "acc_accesses": _length(reads, "acc") + _length(writes, "acc"),
        "vector_elements": elements,
        "table_lookups": elements if looks_up else 0,
        "dma_bytes": sum(n * DMA_BYTES[m] for m, _, n in writes) if instr.op.unit == "DMA" else 0,
    }


def _length(ranges: list, memory: str) -> int:
    return sum(n for m, _, n in ranges if m == memory)


def add_events(total: dict, events: Mapping, times: int = 1) -> None:
    """total += times x events, key by key."""
    for name, count in events.items():
        total[name] = total.get(name, 0) + times * count


def no_events() -> dict[str, int]:
    return dict.fromkeys((e.name for e in EVENTS), 0)


def breakdown_uj(events: Mapping[str, int], target: Target) -> dict[str, float]:
    """Energy by part of the chip, in µJ: each event's count times its energy on `target`."""
    energies, out = per_event_fj(target), dict.fromkeys(PARTS, 0.0)
    for e in EVENTS:
        out[e.part] += events.get(e.name, 0) * energies[e.name] / FJ_PER_UJ
    return out


def tops_per_w(mac_ops: int, energy_uj: float) -> float:
    """Useful operations (2 per useful MAC) per joule, in tera-operations per second per watt."""
    return 2 * mac_ops / (energy_uj * 1e-6) / 1e12 if energy_uj > 0 else 0.0


def energy_figures(events: Mapping[str, int], target: Target, mac_ops: int) -> dict:
    """What STATS.json and REPORT.json say of energy: per inference, by part, the counts, TOPS/W."""
    parts = breakdown_uj(events, target)
    return _energy_keys(math.fsum(parts.values()), parts, dict(events), mac_ops)


def _energy_keys(total: float, parts: dict[str, float], events: dict[str, int], mac_ops: int) -> dict:
    return {"energy_uj": total, "energy_breakdown_uj": parts, "energy_events": events,
            "tops_per_w": tops_per_w(mac_ops, total)}


def combined(figures: Iterable[Mapping]) -> dict:
    """The energy figures of programs that run one after the other (a partitioned model's
    islands): counts and energies summed, TOPS/W over the sums; `figures` also carry `mac_ops`."""
    figures = list(figures)
    parts, events = dict.fromkeys(PARTS, 0.0), no_events()
    for f in figures:
        add_events(events, f["energy_events"])
        add_events(parts, f["energy_breakdown_uj"])
    return _energy_keys(math.fsum(parts.values()), parts, events, sum(f["mac_ops"] for f in figures))


def back_to_back_hz(latency_us: float) -> float:
    """The highest inference rate: one inference after another."""
    return 1e6 / latency_us if latency_us > 0 else 0.0


def power_mw(energy_uj: float, leakage_uj: float, latency_us: float, rate_hz: float) -> float:
    """Average power at `rate_hz` inferences per second: each inference's dynamic energy, plus
    leakage all the time, because the memories keep the weights between inferences (at the
    back-to-back rate this is energy per inference / latency)."""
    leakage_w = leakage_uj / latency_us if latency_us > 0 else 0.0
    return ((energy_uj - leakage_uj) * 1e-6 * rate_hz + leakage_w) * 1e3
