"""Counter-based complex Gaussian generator (Philox4x32-10 + Box-Muller) in Numba.

Why not ``np.random``: a sequential generator makes the noise of element ``i`` depend on how many numbers
were drawn before it, so results would change with the thread count or the batch split. Here the noise
of element ``i`` is a pure function of ``(key, i)``: kernels can ``prange`` over elements and stay
bit-identical for any thread count or batch split. The Philox4x32-10 block cipher (Salmon et al., SC'11,
"Parallel random numbers: as easy as 1, 2, 3") turns the 128-bit counter ``(i, stream)`` and a 64-bit
``key`` into four independent 32-bit words; keys ``k`` and ``k + 1`` give independent streams.

Everything below is float32/uint32 arithmetic with selects instead of branches and no libm calls, so LLVM
vectorises the kernels' loops (``math.log``/``math.sin`` would be scalar calls without Intel SVML).

Numba's cache does not notice edits to this file from the kernels that inline it: after changing it,
delete ``sdjscc_phy/kernels/__pycache__/*.nb*``.
"""

import numpy as np
from numba import njit, prange

#: ``stream`` (third counter word) of the per-element draw: additive noise, then fast fading.
STREAM_ELEMENT = np.uint64(0)
#: ``stream`` of the per-row draw of block fading.
STREAM_ROW = np.uint64(1)

_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_PHILOX_M0 = np.uint64(0xD2511F53)
_PHILOX_M1 = np.uint64(0xCD9E8D57)
_PHILOX_W0 = np.uint64(0x9E3779B9)
_PHILOX_W1 = np.uint64(0xBB67AE85)
_ROUNDS = 10

#: Options of every parallel kernel. ``error_model="numpy"``: no ZeroDivisionError branch, which would stop
#: LLVM from vectorising the loops. No ``fastmath``: even FMA contraction alone is applied differently in a
#: vectorised loop body and its scalar remainder, so an element's value would depend on where a batch or
#: thread split falls (measured: 1 ulp differences), breaking bit-reproducibility.
KERNEL_OPTIONS = dict(parallel=True, error_model="numpy", cache=True)

_TWO_POW_M32 = np.float32(2.0**-32)
_TWO_POW_M26 = np.float32(2.0**-26)
_TWO_POW_M30 = np.float32(2.0**-30)
_HALF = np.float32(0.5)
_ONE = np.float32(1.0)
_TWO = np.float32(2.0)
_SQRT2 = np.float32(np.sqrt(2.0))
_LN2 = np.float32(np.log(2.0))
_HALF_PI = np.float32(np.pi / 2)


@njit(inline="always", error_model="numpy", cache=True)
def philox4x32(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 block: four 32-bit counter words and two key words -> four 32-bit words.

    All arguments and results are ``uint64`` holding 32-bit values (Numba widens ``uint32`` math anyway,
    and a 64-bit product gives ``mulhi`` and ``mullo`` of the 32-bit multiply in one step).
    """
    for _ in range(_ROUNDS):
        p0 = _PHILOX_M0 * c0
        p1 = _PHILOX_M1 * c2
        c0, c1, c2, c3 = (p1 >> _SHIFT32) ^ c1 ^ k0, p1 & _MASK32, (p0 >> _SHIFT32) ^ c3 ^ k1, p0 & _MASK32
        k0 = (k0 + _PHILOX_W0) & _MASK32
        k1 = (k1 + _PHILOX_W1) & _MASK32
    return c0, c1, c2, c3


@njit(inline="always", error_model="numpy", cache=True)
def _neg_log_unit(w):
    """``-ln(u)`` for the uniform ``u = (w + 1/2) / 2^32`` in (0, 1); float32, relative error < 3e-7.

    The float32 of ``u`` keeps full relative precision near 0, so the Gaussian tail is exact out to
    6.7 sigma per real part (P ~ 1e-10) instead of being cut at 5.9 sigma by a 24-bit uniform.
    """
    u = np.float32(w) * _TWO_POW_M32 + _HALF * _TWO_POW_M32
    bits = np.float32(u).view(np.uint32)
    exponent = np.float32(np.int32(bits >> np.uint32(23)) - np.int32(127))
    mantissa = np.uint32(bits & np.uint32(0x007FFFFF) | np.uint32(0x3F800000)).view(np.float32)  # in [1, 2)
    if mantissa > _SQRT2:  # centre the mantissa on 1 so the atanh series below converges fast
        mantissa *= _HALF
        exponent += _ONE
    # ln(m) = 2 atanh(s), s = (m - 1)/(m + 1), |s| <= 0.172: the s^11 term is below 1e-9.
    s = (mantissa - _ONE) / (mantissa + _ONE)
    s2 = s * s
    series = np.float32(1 / 9)
    for coeff in (np.float32(1 / 7), np.float32(1 / 5), np.float32(1 / 3), _ONE):
        series = series * s2 + coeff
    # u rounds to 1.0 with probability 2^-25; keep the result > 0 so that a Rayleigh gain is never 0
    # and equalising by it never divides by zero.
    return max(-(exponent * _LN2 + _TWO * s * series), _TWO_POW_M26)


@njit(inline="always", error_model="numpy", cache=True)
def _unit_circle(w):
    """``(cos t, sin t)`` for the uniform angle ``t = 2 pi (w + 1/2) / 2^32 - pi/4``; float32, error < 2e-7.

    The two top bits of ``w`` pick the quadrant, so the Taylor polynomials only see |phi| <= pi/4.
    """
    quadrant = w >> np.uint64(30)
    phi = ((np.float32(w & np.uint64(0x3FFFFFFF)) + _HALF) * _TWO_POW_M30 - _HALF) * _HALF_PI
    p2 = phi * phi
    sin_phi = phi * (_ONE + p2 * (np.float32(-1 / 6) + p2 * (np.float32(1 / 120) + p2 * (
        np.float32(-1 / 5040) + p2 * np.float32(1 / 362880)))))
    cos_phi = _ONE + p2 * (np.float32(-1 / 2) + p2 * (np.float32(1 / 24) + p2 * (
        np.float32(-1 / 720) + p2 * np.float32(1 / 40320))))
    # Rotate by quadrant * pi/2: (c, s) -> (-s, c) per step; selects, not branches, to stay vectorised.
    swap = (quadrant & np.uint64(1)) != 0
    cos_t = -sin_phi if swap else cos_phi
    sin_t = cos_phi if swap else sin_phi
    if quadrant >= np.uint64(2):
        cos_t, sin_t = -cos_t, -sin_t
    return cos_t, sin_t


@njit(inline="always", error_model="numpy", cache=True)
def complex_normal_pair(k0, k1, index, stream):
    """Two independent CN(0, 1) samples (E|z|^2 = 1, variance 1/2 per real part) at counter ``index``.

    ``k0``/``k1`` are the low/high 32 bits of the key (``uint64``), ``index`` the element index (``uint64``),
    ``stream`` the third counter word (see ``STREAM_*``). Returns ``(re0, im0, re1, im1)`` in float32.
    """
    w0, w1, w2, w3 = philox4x32(index & _MASK32, index >> _SHIFT32, stream, np.uint64(0), k0, k1)
    # Box-Muller with radius sqrt(-ln u) instead of sqrt(-2 ln u): variance 1/2 per real dimension.
    r0 = np.sqrt(_neg_log_unit(w0))
    c0, s0 = _unit_circle(w1)
    r1 = np.sqrt(_neg_log_unit(w2))
    c1, s1 = _unit_circle(w3)
    return r0 * c0, r0 * s0, r1 * c1, r1 * s1


def split_key(key: int) -> tuple[np.uint64, np.uint64]:
    """The low and high 32-bit words of a 64-bit ``key`` (any Python int; taken modulo 2^64)."""
    key = int(key) & 0xFFFFFFFFFFFFFFFF
    return np.uint64(key & 0xFFFFFFFF), np.uint64(key >> 32)


@njit(**KERNEL_OPTIONS)
def _fill_complex_normal(out, k0, k1, first_index, stream):
    for i in prange(out.size):
        re, im, _, _ = complex_normal_pair(k0, k1, first_index + np.uint64(i), stream)
        out[i] = complex(re, im)


def complex_normal(num_samples: int, key: int, first_index: int = 0, stream: int = 0) -> np.ndarray:
    """``num_samples`` CN(0, 1) samples, complex64: sample ``j`` is element ``first_index + j`` of stream
    ``(key, stream)``, i.e. exactly the unit noise the channel kernels add to that element."""
    out = np.empty(num_samples, dtype=np.complex64)
    _fill_complex_normal(out, *split_key(key), np.uint64(first_index), np.uint64(stream))
    return out
