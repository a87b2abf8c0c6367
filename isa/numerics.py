"""The chip's fixed-point arithmetic, defined bit-exactly in this one place.

The simulator's instruction semantics and the compiler's layer-level reference both call these
functions, so the rounding rule, the saturation and the activation tables cannot drift apart.
docs/numerics.md explains the formats and the error bounds.

All functions take and return int64 numpy arrays (or anything numpy broadcasts), so that a
leading batch axis costs nothing. The simulator's hot paths compute the same values in narrower
or other exact forms: multiply, add and subtract of two int16 arrays return int32, and
requantize_with / requantize_add_with (a Scaling prepared once per instruction) return float64
holding the integers, which the store into int16 memory converts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ACT_MIN, ACT_MAX = -(1 << 15), (1 << 15) - 1
ACC_MIN, ACC_MAX = -(1 << 31), (1 << 31) - 1

GATE_FRAC = 12  # sigmoid/tanh inputs and LSTM cell state: Q3.12, range [-8, 8)
UNIT_FRAC = 15  # sigmoid/tanh outputs and LSTM hidden state: Q0.15, range [-1, 1)
LOG_FRAC = 11  # logarithms (VLOG) and LogSoftmax outputs: Q4.11, range [-16, 16)

MULT_BITS = 15  # requantisation multipliers are normalised into [2**14, 2**15)
MAX_SHIFT = 63

TABLE_SEGMENTS = 256


try:  # the ufunc behind np.clip: the same values, without np.clip's per-call checks of the bounds
    from numpy._core.umath import clip as _clip
except ImportError:  # numpy 1.x
    from numpy.core.umath import clip as _clip


def saturate(v: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Clip to [lo, hi]: in one pass, as the simulator saturates thousands of times per inference."""
    return _clip(v, lo, hi)


def sat_act(v: np.ndarray) -> np.ndarray:
    return saturate(v, ACT_MIN, ACT_MAX)


def sat_acc(v: np.ndarray) -> np.ndarray:
    return saturate(v, ACC_MIN, ACC_MAX)


def round_shift(v: np.ndarray, shift: np.ndarray | int) -> np.ndarray:
    """Arithmetic right shift rounding half up: (v + 2**(shift-1)) >> shift; shift 0 is exact.
    An int32 `v` stays int32 (its caller made sure v + 2**(shift-1) fits), anything else is int64."""
    v = np.asarray(v)
    if v.dtype != np.int32:
        v = v.astype(np.int64, copy=False)
    if isinstance(shift, (int, np.integer)):  # one shift for all: no per-element rounding term
        return np.right_shift(v + (1 << (int(shift) - 1) if shift > 0 else 0), int(shift))
    shift = np.asarray(shift, dtype=np.int64)
    half = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0)
    return np.right_shift(v + half, shift)


def requantize(acc: np.ndarray, mult: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Accumulator to activation: saturate to acc_bits, scale by mult * 2**-shift, round, saturate."""
    return Scaling.of(mult, shift).rounded(acc, saturate_act=True).astype(np.int64)


@dataclass(frozen=True)
class Scaling:
    """A requantisation's (mult, shift) per element, and what the float form needs of them.

    The simulator requantises every accumulator of every sample, and the integer form's six
    passes, each into a new array, cost twice the float64 form's. That form is exact for |mult|
    <= 2**22 and shifts 0..MAX_SHIFT: sat_acc(acc) * scale is (below 2**53 significant, the
    power of two exact), adding 1/2 too (one bit more), and floor(v + 1/2) is (acc * mult +
    2**(shift-1)) >> shift, the rounding half up; `scale` is None where it is not. Beyond
    ACC_MIN..ACC_MAX, int64 to float64 rounds, but monotonically, so a saturating value still
    saturates: `acc_saturated` says whether ACC_MIN and ACC_MAX themselves round to saturated
    activations for every element (or the scale is 0), `acc_saturated_add` whether they still
    do with any int16 addend, and then saturating the accumulator first changes nothing and is
    skipped. Computed once per instruction by the simulator, per call by the reference."""

    mult: np.ndarray
    shift: np.ndarray
    scale: np.ndarray | None
    acc_saturated: bool = False
    acc_saturated_add: bool = False

    @classmethod
    def of(cls, mult: np.ndarray | int, shift: np.ndarray | int) -> Scaling:
        mult, shift = np.asarray(mult, np.int64), np.asarray(shift, np.int64)
        if mult.size and (np.abs(mult).max() > 1 << 22 or shift.min() < 0 or shift.max() > MAX_SHIFT):
            return cls(mult, shift, None)
        scale = np.ldexp(mult.astype(np.float64), -shift)
        return cls(mult, shift, scale, _saturates(scale, 0), _saturates(scale, ACT_MAX - ACT_MIN))

    def rounded(self, acc: np.ndarray, saturate_act: bool, int16_addend: bool = False) -> np.ndarray:
        """round_shift(sat_acc(acc) * mult, shift), as float64 when exact; with `saturate_act`,
        saturated to the activation range too. The accumulator's saturation is skipped where the
        result (plus an addend, if `int16_addend`, before it saturates) comes out the same."""
        if self.scale is None:
            v = round_shift(sat_acc(acc) * self.mult, self.shift)
            return sat_act(v) if saturate_act else v
        skip = self.acc_saturated_add if int16_addend else saturate_act and self.acc_saturated
        v = acc if skip else sat_acc(acc)
        many = getattr(v, "size", 1) >= EINSUM_FROM
        v = _scaled_per_element(v, self.scale) if many else np.asarray(np.multiply(v, self.scale))
        if saturate_act:  # floor(v + 1/2) of v saturated to [ACT_MIN - 1/2, ACT_MAX] is in range
            _clip(v, ACT_MIN - 0.5, ACT_MAX, out=v)
        v += 0.5
        return np.floor(v, out=v)


EINSUM_FROM = 8192  # elements from which einsum's faster loop repays its dearer call (some 3 us)


def _scaled_per_element(acc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """acc * scale as float64 for a batch's many elements, scale one factor per element of acc's
    last axis: through einsum, whose loop for that runs a third faster than multiply's broadcast.
    The values are multiply's: each output is one product, added to zero (-0.0 comes out +0.0,
    which the rounding's + 1/2 makes the same)."""
    if scale.ndim == 1 and acc.shape[-1] == len(scale):
        return np.einsum("...i,i->...i", acc, scale)
    return np.multiply(acc, scale)


def _saturates(scale: np.ndarray, margin: int) -> bool:
    """Whether floor(ACC_MAX * scale + 1/2) >= ACT_MAX + margin and floor(ACC_MIN * scale + 1/2)
    <= ACT_MIN - margin (ends swapped for a negative scale) for every nonzero scale."""
    ends = np.multiply.outer(scale, (ACC_MIN, ACC_MAX))  # exact: 31 bits by at most 23
    low, high = ends.min(axis=-1), ends.max(axis=-1)
    return bool(np.all((scale == 0) | ((high >= ACT_MAX + margin - 0.5) & (low < ACT_MIN - margin + 0.5))))


def requantize_with(acc: np.ndarray, scaling: Scaling) -> np.ndarray:
    """requantize with (mult, shift) prepared once, for the simulator's instructions: the values
    as float64 in the float form, which the store into int16 memory converts (a pass saved)."""
    return scaling.rounded(acc, saturate_act=True)


def multiply(a: np.ndarray, b: np.ndarray, shift: int) -> np.ndarray:
    """Element-wise product of two activations, rescaled by 2**-shift."""
    wide = _exact_type(a, b, (1 << 30) + (1 << (shift - 1) if shift > 0 else 0))
    product = np.multiply(a, b, dtype=wide)
    if shift > 0:
        product += 1 << (shift - 1)
        product >>= shift
    return _saturated(product)


def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _saturated(np.add(a, b, dtype=_exact_type(a, b, 1 << 16)))


def subtract(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _saturated(np.subtract(a, b, dtype=_exact_type(a, b, 1 << 16)))


def _saturated(fresh: np.ndarray) -> np.ndarray:
    """sat_act of an array no one else holds, in place: one allocation fewer per instruction."""
    return _clip(fresh, ACT_MIN, ACT_MAX, out=fresh) if isinstance(fresh, np.ndarray) else sat_act(fresh)


def _exact_type(a: np.ndarray, b: np.ndarray, bound: int) -> type:
    """int32 when both operands are int16 (the simulator's activation memory) and every result
    of theirs lies within +-`bound` < 2**31, else int64. Half the bytes per pass: the simulator
    multiplies and adds every activation of every sample, and the values are the same."""
    narrow = getattr(a, "dtype", None) == np.int16 and getattr(b, "dtype", None) == np.int16
    return np.int32 if narrow and bound < 1 << 31 else np.int64


def clamp(a: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return np.minimum(np.maximum(np.asarray(a, np.int64), lo), hi)


def relu(a: np.ndarray) -> np.ndarray:
    return np.maximum(np.asarray(a, np.int64), 0)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """Express a positive real multiplier as mult * 2**-shift with mult in [2**14, 2**15).

    Returns (0, 0) for zero. A multiplier too large for a non-negative shift is clamped to the
    largest representable value, and one too small for MAX_SHIFT becomes zero: both only happen
    with degenerate scales, and the compiler reports them.
    """
    if real <= 0.0:
        return 0, 0
    mantissa, exponent = np.frexp(real)  # real = mantissa * 2**exponent, mantissa in [0.5, 1)
    shift = MULT_BITS - int(exponent)
    mult = round(float(mantissa) * (1 << MULT_BITS))
    if mult == 1 << MULT_BITS:
        mult, shift = mult // 2, shift - 1
    if shift < 0:
        return (1 << MULT_BITS) - 1, 0
    if shift > MAX_SHIFT:
        return 0, 0
    return mult, shift


IDENTITY = quantize_multiplier(1.0)  # the (mult, shift) that leaves a value unchanged


def _sigmoid(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """1 / (1 + exp(-x)), computed in `out` when one is given: the same operations, so the same
    values, without a new array for each (a recurrent layer's float run reuses its buffers)."""
    with np.errstate(over="ignore"):  # exp overflows to inf for x < -709, and 1 / inf = 0 is right
        e = np.exp(np.negative(x, out=out), out=out)
        return np.divide(1.0, np.add(1.0, e, out=out), out=out)


def _hardsigmoid(x: np.ndarray, alpha: float = 0.2, beta: float = 0.5) -> np.ndarray:
    return np.clip(alpha * x + beta, 0.0, 1.0)


def _exp(x: np.ndarray) -> np.ndarray:
    """exp(x), but 0 at the saturation point -8: there a softmax's x - max stands for anything below -8,
    and counting each such term as exp(-8) = 3.4e-4 of the largest would bias a long row's sum by
    that much per term; as 0 it errs by at most 3.4e-4 per term, and only for terms near -8."""
    return np.where(x > ACT_MIN / (1 << GATE_FRAC), np.exp(x), 0.0)


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _phi(x: np.ndarray) -> np.ndarray:
    """The standard normal CDF 0.5 (1 + erf(x / sqrt 2)): GELU is x times it, and it stays in [0, 1]
    where GELU itself does not, so the table keeps Q0.15 and the product goes to VMUL."""
    return 0.5 * (1.0 + _erf(np.asarray(x, np.float64) / math.sqrt(2.0)))


def _phi_tanh(x: np.ndarray) -> np.ndarray:
    """GELU's tanh approximation of the normal CDF (ONNX Gelu with approximate="tanh")."""
    x = np.asarray(x, np.float64)
    return 0.5 * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _scaled(func):
    """f on data at its own scale: the table reads a code u (in Q3.12 units) as x = u · a and writes
    f(x) / b, so that Q0.15 out means y at scale b / 2**15. `a` and `b` are the table's parameters
    (in its name), fixed by the data's scale and the output's calibrated range."""
    def table_function(u: np.ndarray, a: float = 1.0, b: float = 1.0) -> np.ndarray:
        with np.errstate(over="ignore"):
            return func(np.asarray(u, np.float64) * a) / b
    return table_function


def _quad_mantissa(x: np.ndarray) -> np.ndarray:
    """VPOW's mantissa m in [1, 4): the 16-bit input code read as m = (code + 32768) / 2**14, whose
    lowest quarter (m < 1, never indexed) holds f(1)."""
    return np.maximum((np.asarray(x, np.float64) + 8.0) / 4.0, 1.0)


def _power_mantissa(x: np.ndarray, p: float) -> np.ndarray:
    """m**p / (2 · 4**max(p, 0)): at most 1/2 on [1, 4) (so Q0.15 holds it without saturating)."""
    return _quad_mantissa(x) ** p / (2.0 * 4.0 ** max(p, 0.0))


def _ln_mantissa(x: np.ndarray) -> np.ndarray:
    """ln(m) / 2 on [1, 4): below ln 2 < 1, the halving matching the even exponent 2h VPOW takes out."""
    return np.log(_quad_mantissa(x)) / 2.0


def _log_mantissa(x: np.ndarray) -> np.ndarray:
    """ln(1 + f) for the fraction f = (x + 8) / 16 in [0, 1) that spans the whole 16-bit input grid."""
    return np.log1p((x + 8.0) / 16.0)


# The functions the vector unit computes by table: Q3.12 input, Q0.15 output (all are bounded by 1
# on the input range; exp is meant for inputs <= 0, as in softmax). "erf" is Erf; "phi" and "phitanh"
# are the factors GELU multiplies its input by, exact and tanh-approximated; "scaled_*" are unbounded
# functions of data at any scale, their outputs scaled into Q0.15 by their parameters. "lnmant" is VLOG's: it reads the
# 16-bit input code as the fraction of a normalised mantissa, so all 256 segments cover ln on [1, 2). "powmant(p)" and
# "lnquad" are VPOW's: they read the code as a mantissa in [1, 4) (192 segments cover it).
TABLE_FUNCTIONS = {"sigmoid": _sigmoid, "tanh": np.tanh, "hardsigmoid": _hardsigmoid, "exp": _exp,
                   "erf": _erf, "phi": _phi, "phitanh": _phi_tanh, "lnmant": _log_mantissa,
                   "scaled_exp": _scaled(np.exp), "powmant": _power_mantissa, "lnquad": _ln_mantissa}
WRITES_INTO = frozenset({"sigmoid", "tanh"})  # the table functions that take out= and compute in it
LOG_TABLE = "lnmant"
LN2_Q15 = round(float(np.log(2.0)) * (1 << UNIT_FRAC))  # 22713


def table_name(func: str, *params: float) -> str:
    """The canonical name of a table: 'tanh', 'hardsigmoid(0.2,0.5)'."""
    assert func in TABLE_FUNCTIONS, f"no table function {func}"
    return f"{func}({','.join(repr(float(p)) for p in params)})" if params else func


def parse_table_name(name: str) -> tuple[str, tuple[float, ...]]:
    """Inverse of table_name; ValueError for a name that is not one."""
    func, _, rest = name.partition("(")
    if func not in TABLE_FUNCTIONS or (rest and not rest.endswith(")")):
        raise ValueError(f"unknown table '{name}' (functions: {', '.join(TABLE_FUNCTIONS)})")
    params = tuple(float(p) for p in rest[:-1].split(",")) if rest else ()
    return func, params


def activation_table(name: str) -> np.ndarray:
    """The TABLE_SEGMENTS + 1 knots of a named table (see table_name): Q3.12 in, Q0.15 out."""
    func, params = parse_table_name(name)
    x = (np.arange(TABLE_SEGMENTS + 1, dtype=np.float64) * 65536 / TABLE_SEGMENTS - 32768) / (1 << GATE_FRAC)
    with np.errstate(over="ignore"):
        y = TABLE_FUNCTIONS[func](x, *params)
    return np.clip(np.round(y * (1 << UNIT_FRAC)), ACT_MIN, ACT_MAX).astype(np.int64)


def table_lookup(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation between the table's knots, bit-exact.

    The 16-bit input is split into a segment index (top 8 bits) and a fraction (low 8 bits):
    y = T[i] + round((T[i+1] - T[i]) * frac / 256).
    """
    u = np.asarray(x, dtype=np.int64) + 32768
    step = 65536 // TABLE_SEGMENTS
    i, frac = u // step, u % step
    lo, hi = table[i], table[i + 1]
    return sat_act(lo + round_shift((hi - lo) * frac, step.bit_length() - 1))


def quantize(x: np.ndarray, scale: float) -> np.ndarray:
    """Float to activation: round half up to the nearest multiple of `scale`, then saturate."""
    return sat_act(np.floor(np.asarray(x, dtype=np.float64) / scale + 0.5)).astype(np.int64)


def dequantize(q: np.ndarray, scale: float) -> np.ndarray:
    return (np.asarray(q, dtype=np.float64) * scale).astype(np.float32)


def requantize_add(acc: np.ndarray, mult: np.ndarray, shift: np.ndarray, addend: np.ndarray) -> np.ndarray:
    """Requantise an accumulator and add an activation, saturating once at the end."""
    total = np.add(Scaling.of(mult, shift).rounded(acc, saturate_act=False).astype(np.int64), addend, dtype=np.int64)
    return _saturated(total)


def requantize_add_with(acc: np.ndarray, scaling: Scaling, addend: np.ndarray) -> np.ndarray:
    """requantize_add with (mult, shift) prepared once and an int16 addend, for the simulator's
    instructions: added in float64 when the requantised value is (exact, |sum| < 2**47), the
    values returned as float64 for the store into int16 memory to convert."""
    int16 = np.asarray(addend).dtype == np.int16
    scaled = scaling.rounded(acc, saturate_act=False, int16_addend=int16)
    if scaled.dtype == np.int64 or not int16:
        scaled = scaled.astype(np.int64, copy=False)
    scaled += addend
    return _saturated(scaled)


def reduce_max(a: np.ndarray) -> np.ndarray:
    """The largest element along the last axis (kept as a length-1 axis)."""
    return np.max(np.asarray(a, np.int64), axis=-1, keepdims=True)


def reduce_sum(a: np.ndarray) -> np.ndarray:
    """The exact sum along the last axis (kept): at most 65535 int16 terms, so it fits acc_bits."""
    return np.sum(np.asarray(a, np.int64), axis=-1, keepdims=True)


def divide(a: np.ndarray, total: np.ndarray) -> np.ndarray:
    """a / total in Q0.15, rounded half up and saturated: sat16(floor(a * 2**15 / total + 1/2)).

    `total` is an accumulator (saturated to acc_bits on read); below 1 it counts as 1, so the
    division is always defined. Exact integer arithmetic: floor((a * 2**16 + total) / (2 total)).
    """
    d = np.maximum(sat_acc(np.asarray(total, np.int64)), 1)
    return sat_act(np.floor_divide(np.left_shift(np.asarray(a, np.int64), UNIT_FRAC + 1) + d, 2 * d))


def root_sum_squares(a: np.ndarray, add: int) -> np.ndarray:
    """round(sqrt(sum(a**2) + add)) along the last axis (kept), half up, in exact integer arithmetic:
    the float root is corrected to r = floor(sqrt(v)), and sqrt(v) >= r + 1/2 exactly when
    v > r * (r + 1). At most 65535 int16 squares plus `add` < 2**30 stay below 2**47, so the root
    (below 2**24) fits an accumulator entry."""
    v = np.sum(np.square(np.asarray(a, np.int64)), axis=-1, keepdims=True) + add
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    r = r - (r * r > v) + ((r + 1) * (r + 1) <= v)
    return r + (v - r * r > r)


def log_sum(table: np.ndarray, total: np.ndarray) -> np.ndarray:
    """ln(total / 2**15) in Q4.11: the log of a sum of Q0.15 values, by normalising and one table.

    total = 2**k * (1 + f) with f in [0, 1); the top 16 bits of f (truncated) index the "lnmant"
    table as the code f * 65536 - 32768, and ln(total / 2**15) = (k - 15) ln 2 + ln(1 + f),
    summed at 2**-15 with ln 2 = LN2_Q15 / 2**15, then rounded half up to Q4.11. A total below 1
    counts as 1 (the result is then -15 ln 2).
    """
    t = np.maximum(sat_acc(np.asarray(total, np.int64)), 1)
    k = np.frexp(t.astype(np.float64))[1].astype(np.int64) - 1  # exact: t < 2**53
    mantissa = np.where(k <= 16, np.left_shift(t, np.maximum(16 - k, 0)), np.right_shift(t, np.maximum(k - 16, 0)))
    ln_q15 = (k - UNIT_FRAC) * LN2_Q15 + table_lookup(table, mantissa - (1 << 16) - (1 << 15))
    return sat_act(round_shift(ln_q15, UNIT_FRAC - LOG_FRAC))


def _left_or_right(v: np.ndarray, net: np.ndarray) -> np.ndarray:
    """v · 2**-net, rounded half up for net >= 0; for net < 0 a left shift of v saturated to acc_bits
    (by at most 31 bits: anything but 0 saturates well before)."""
    left = np.left_shift(sat_acc(v), np.minimum(np.maximum(-net, 0), 31))
    return np.where(net >= 0, round_shift(v, np.maximum(net, 0)), left)


TOP_OCTAVES = 7  # VPOW's largest exponent h: a positive code is below 2**15 = 2 · 4**7


def mantissa_power(table: np.ndarray, x: np.ndarray, power: int, mult: int, shift: int, off: int) -> np.ndarray:
    """VPOW: u**(power/2) (power != 0) or ln u (power == 0) of each code u, at the output's scale.

    u = m · 4**h with m in [1, 4) (h = floor(log2 u) // 2, so the exponent halves exactly); the
    table (powmant(power/2) or lnquad) interpolates on m, read as the code m · 2**14 - 32768, and
    the exponent is applied exactly:

        power != 0:  y = sat16(round((T(m) + off) · mult · 2**(power·(h - TOP_OCTAVES) - shift)))
        power == 0:  y = sat16(round((T(m) + h · LN2_Q15 + off) · mult · 2**-shift))

    The exponent counts from the top of the code range (h = TOP_OCTAVES there), so that mult ·
    2**-shift stays near 1 for negative powers as for positive ones. A result left-shifted
    saturates to acc_bits first. Codes u <= 0: an integer power (power even)
    reads |u|, and an odd one negates its result, y(-u) = -y(u); for the log and a half-integer
    power every code below 1 counts as 1. The code 1 then stands for 0 too (the smallest positive
    code: ln and a negative power give their largest magnitude), except that a positive power of
    0 (and, half-integer, of any u < 0) is 0.
    """
    u = np.asarray(x, np.int64)
    integer, odd = power != 0 and power % 2 == 0, power % 4 == 2
    a = np.maximum(np.abs(u) if integer else u, 1)
    h = (np.frexp(a.astype(np.float64))[1].astype(np.int64) - 1) // 2
    t = table_lookup(table, np.left_shift(a, 14 - 2 * h) - (1 << 15))
    acc = t + off + (h * LN2_Q15 if power == 0 else 0)
    y = sat_act(_left_or_right(acc * np.int64(mult), shift - power * (h - TOP_OCTAVES)))
    if odd:
        y = np.where(u < 0, sat_act(-y), y)
    zero = (u == 0) if integer else (u < 1)
    return np.where(zero & (power > 0), 0, y)
