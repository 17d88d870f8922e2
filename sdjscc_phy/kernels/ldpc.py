"""Numba kernels for LDPC encoding and belief-propagation decoding.

Sign convention
---------------
At the boundary (``llr`` argument of :func:`decode_batch`) LLRs are ``ln(P(b=1)/P(b=0))``, Sionna's
convention. Internally the decoder negates them once on load and works with the textbook
``ln(P(b=0)/P(b=1))``, so that the check-node rules carry no degree-dependent sign; a bit is
decided 1 when its internal posterior is <= 0 (i.e. external LLR >= 0, Sionna's tie rule).

Data layout
-----------
The parity-check matrix is a CSR edge list (``row_ptr``, ``cols``): edge ``e`` of check ``r``
lies in ``row_ptr[r] <= e < row_ptr[r+1]`` and touches variable ``cols[e]``. Codewords are decoded
``lanes`` at a time, lane-minor (``c2v[e * lanes + w]``), so every per-edge operation is a
contiguous SIMD operation across codewords. exp/log are float32 polynomials (Cephes) built from
bit casts, because libm calls would stop LLVM from vectorising the lane loops. A lane whose
codeword finishes (parity satisfied, or ``num_iter`` reached) is refilled with the next codeword
at once, so early termination is per codeword and saves work.
"""

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

ALGORITHM_BOXPLUS = 0
ALGORITHM_BOXPLUS_PHI = 1
ALGORITHM_MINSUM = 2

# No 'reassoc': it would let LLVM merge the split ln2 = _LN2_HI + _LN2_LO of the exp/log range
# reduction and lose the precision the split buys.
_FASTMATH = {"nsz", "arcp", "contract", "afn"}
# error_model="numpy" drops the ZeroDivisionError branch on every '/', which blocks vectorisation.
_JIT = dict(cache=True, fastmath=_FASTMATH, error_model="numpy")

_F = np.float32
_ZERO, _ONE, _TWO, _HALF = _F(0.0), _F(1.0), _F(2.0), _F(0.5)
_LOG2E = _F(1.44269504088896341)
_LN2_HI, _LN2_LO = _F(0.693359375), _F(-2.12194440e-4)
_SQRT_HALF = _F(0.707106781186547524)
# Cephes expf / logf minimax polynomial coefficients.
_E0, _E1, _E2, _E3, _E4, _E5 = (_F(1.9875691500e-4), _F(1.3981999507e-3), _F(8.3334519073e-3),
                                _F(4.1665795894e-2), _F(1.6666665459e-1), _F(5.0000001201e-1))
_G0, _G1, _G2, _G3, _G4, _G5, _G6, _G7, _G8 = (
    _F(7.0376836292e-2), _F(-1.1514610310e-1), _F(1.1676998740e-1), _F(-1.2420140846e-1),
    _F(1.4249322787e-1), _F(-1.6668057665e-1), _F(2.0000714765e-1), _F(-2.4999993993e-1),
    _F(3.3333331174e-1))
_THIRD, _QUARTER, _FIFTH = _F(1.0 / 3.0), _F(0.25), _F(0.2)
_SERIES_MAX = _F(0.0625)  # below this 1 - exp(-a) and log1p use their Taylor series
_LOG1P_SERIES_MAX = _F(1.0 / 64.0)
# Sionna's clamps: phi's argument lies in [8.5e-8, 16.635532] (phi(8.5e-8) in float32), and the
# tanh-product magnitude is at most 1 - 1e-7, so both boxplus forms saturate alike.
PHI_MIN, PHI_MAX = _F(8.5e-8), _F(16.635532)
_TANH_MIN, _TANH_MAX = _F(1e-12), _F(1.0 - 1e-7)
_BIG = _F(3.0e38)
_U = np.uint64  # index type of the lane loops: unsigned, see the note above _gather_v2c


@intrinsic
def _float_bits(typingctx, x):
    """Bit pattern of a float32 as int32 (a register move, unlike a memory round trip)."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


@intrinsic
def _bits_float(typingctx, x):
    """float32 whose bit pattern is the low 32 bits of integer ``x``."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = args[0]
        if x.bitwidth > 32:
            value = builder.trunc(value, ir.IntType(32))
        elif x.bitwidth < 32:
            value = builder.sext(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return types.float32(x), codegen


@njit(inline="always", **_JIT)
def _exp(x):
    """exp(x) for float32 x in [-87, 0], relative error ~1e-7."""
    n = np.floor(x * _LOG2E + _HALF)
    r = x - n * _LN2_HI - n * _LN2_LO
    p = (((((_E0 * r + _E1) * r + _E2) * r + _E3) * r + _E4) * r + _E5) * (r * r) + r + _ONE
    return p * _bits_float((np.int32(n) + 127) << 23)


@njit(inline="always", **_JIT)
def _log(y):
    """Natural log of a positive normal float32, relative error ~1e-7."""
    bits = _float_bits(y)
    e = _F((bits >> 23) - 126)
    m = _bits_float((bits & 0x007FFFFF) | 0x3F000000)  # mantissa in [0.5, 1)
    low = m < _SQRT_HALF
    e = e - _ONE if low else e
    x = (m + m - _ONE) if low else (m - _ONE)
    z = x * x
    p = ((((((((_G0 * x + _G1) * x + _G2) * x + _G3) * x + _G4) * x + _G5) * x + _G6) * x + _G7)
         * x + _G8) * x * z
    return x + (p + e * _LN2_LO - _HALF * z) + e * _LN2_HI


@njit(inline="always", **_JIT)
def _log1p(t):
    """log(1 + t) for t >= 0, accurate also for tiny t."""
    series = t * (_ONE - t * (_HALF - t * _THIRD))
    return series if t < _LOG1P_SERIES_MAX else _log(_ONE + t)


@njit(inline="always", **_JIT)
def _one_minus_exp_neg(a, exp_neg_a):
    """1 - exp(-a) for a >= 0, given exp(-a), without cancellation for small a."""
    series = a * (_ONE - a * _HALF * (_ONE - a * _THIRD * (_ONE - a * _QUARTER
                                                             * (_ONE - a * _FIFTH))))
    return series if a < _SERIES_MAX else _ONE - exp_neg_a


@njit(inline="always", **_JIT)
def _phi(a):
    """phi(a) = -ln tanh(a/2) = ln(1 + 2 e^-a / (1 - e^-a)) for a in [PHI_MIN, PHI_MAX]."""
    e = _exp(-a)
    return _log1p(_TWO * e / _one_minus_exp_neg(a, e))


@njit(inline="always", **_JIT)
def _tanh_half(a):
    """tanh(a/2) = (1 - e^-a) / (1 + e^-a) for a in [0, 87]."""
    e = _exp(-a)
    return _one_minus_exp_neg(a, e) / (_ONE + e)


@njit(inline="always", **_JIT)
def _two_atanh(m):
    """2 atanh(m) = ln((1 + m) / (1 - m)) for m in [0, 1)."""
    return _log1p(_TWO * m / (_ONE - m))


@njit(inline="always", **_JIT)
def _clip(x, limit):
    return min(max(x, -limit), limit)


@njit(inline="always", **_JIT)
def _sign(x):
    """+1 for x >= 0 (Sionna maps sign(0) to +1), else -1."""
    return -_ONE if x < _ZERO else _ONE


# A check-node update runs as small passes over the row's edges, each an inner loop over the
# lanes in use (w < width; arrays have stride ``lanes``). Indices are unsigned (numba skips its
# negative-index wraparound, which would make the addresses non-affine) and the trip count is a
# runtime value (a constant one gets fully unrolled, and the unrolled code is not vectorised).
# Each pass touches few arrays so that LLVM's runtime alias checks stay under its limit.
# ``buf[j * lanes + w]`` holds the row's j-th edge.

@njit(inline="always", **_JIT)
def _gather_v2c(e0, e1, cols, post, c2v, buf, lanes, width, llr_max):
    """buf <- variable-to-check messages q = post - c2v, clipped to +-llr_max."""
    for e in range(e0, e1):
        cb, eb, jb = _U(cols[e]) * lanes, _U(e) * lanes, _U(e - e0) * lanes
        for w in range(width):
            buf[jb + w] = _clip(post[cb + w] - c2v[eb + w], llr_max)


@njit(inline="always", **_JIT)
def _scatter_c2v(e0, e1, cols, post, keep, c2v, buf, lanes, width):
    """c2v <- buf; post += buf - keep * old c2v (keep = 1: layered, 0: flooding)."""
    for e in range(e0, e1):
        cb, eb, jb = _U(cols[e]) * lanes, _U(e) * lanes, _U(e - e0) * lanes
        for w in range(width):
            new = buf[jb + w]
            post[cb + w] += new - keep * c2v[eb + w]
            c2v[eb + w] = new


@njit(inline="always", **_JIT)
def _row_boxplus(degree, buf, prod, sgn, lanes, width, llr_max):
    """buf: q -> 2 atanh(prod_{j!=i} tanh(q_j / 2)) (Sionna's ``boxplus``, same clamps)."""
    for j in range(degree):
        jb = _U(j) * lanes
        for w in range(width):
            q = buf[jb + w]
            t = max(_tanh_half(abs(q)), _TANH_MIN)
            buf[jb + w] = -t if q < _ZERO else t
    for w in range(width):
        prod[w] = _ONE
        sgn[w] = _ONE
    for j in range(degree):
        jb = _U(j) * lanes
        for w in range(width):
            t = buf[jb + w]
            prod[w] *= abs(t)
            sgn[w] *= _sign(t)
    for j in range(degree):
        jb = _U(j) * lanes
        for w in range(width):
            t = buf[jb + w]
            m = min(prod[w] / abs(t), _TANH_MAX)
            buf[jb + w] = _clip(sgn[w] * _sign(t) * _two_atanh(m), llr_max)


@njit(inline="always", **_JIT)
def _row_phi(degree, buf, total, sgn, lanes, width, llr_max):
    """buf: q -> sign * phi(sum_{j!=i} phi(|q_j|)) (Sionna's ``boxplus-phi``, same clamps)."""
    for j in range(degree):
        jb = _U(j) * lanes
        for w in range(width):
            q = buf[jb + w]
            p = _phi(min(max(abs(q), PHI_MIN), PHI_MAX))
            buf[jb + w] = -p if q < _ZERO else p
    for w in range(width):
        total[w] = _ZERO
        sgn[w] = _ONE
    for j in range(degree):
        jb = _U(j) * lanes
        for w in range(width):
            p = buf[jb + w]
            total[w] += abs(p)
            sgn[w] *= _sign(p)
    for j in range(degree):
        jb = _U(j) * lanes
        for w in range(width):
            p = buf[jb + w]
            magnitude = _phi(min(max(total[w] - abs(p), PHI_MIN), PHI_MAX))
            buf[jb + w] = _clip(sgn[w] * _sign(p) * magnitude, llr_max)


@njit(inline="always", **_JIT)
def _row_minsum(degree, buf, min1, min2, num_min1, sgn, lanes, width, llr_max, scale,
                offset):
    """buf: q -> sign * max(scale * min_{j!=i} |q_j| - offset, 0).

    scale = 1, offset = 0: Sionna's ``minsum``; offset = 0.5: its ``offset-minsum``; scale < 1:
    normalised min-sum. An edge sees min2 only if it holds the unique minimum (ties -> min1).
    """
    for w in range(width):
        min1[w] = _BIG
        sgn[w] = _ONE
    for j in range(degree):
        jb = _U(j) * lanes
        for w in range(width):
            q = buf[jb + w]
            min1[w] = min(min1[w], abs(q))
            sgn[w] *= _sign(q)
    for w in range(width):
        min2[w] = _BIG
        num_min1[w] = _ZERO
    for j in range(degree):
        jb = _U(j) * lanes
        for w in range(width):
            a = abs(buf[jb + w])
            is_min = a == min1[w]
            num_min1[w] += _ONE if is_min else _ZERO
            min2[w] = min(min2[w], _BIG if is_min else a)
    for j in range(degree):
        jb = _U(j) * lanes
        for w in range(width):
            q = buf[jb + w]
            a = abs(q)
            m = min2[w] if (a == min1[w] and num_min1[w] == _ONE) else min1[w]
            m = max(scale * m - offset, _ZERO)
            buf[jb + w] = _clip(sgn[w] * _sign(q) * m, llr_max)


@njit(inline="always", **_JIT)
def _unsatisfied_lanes(post, row_ptr, cols, lanes, width, parity, failed):
    """failed[w] <- 1 if some parity check of lane w < width's hard decisions fails (enter with
    failed = 0); stops once all lanes have failed."""
    for r in range(row_ptr.size - 1):
        for w in range(width):
            parity[w] = 0
        for e in range(row_ptr[r], row_ptr[r + 1]):
            cb = _U(cols[e]) * lanes
            for w in range(width):
                parity[w] ^= np.int32(post[cb + w] <= _ZERO)
        all_failed = 1
        for w in range(width):
            failed[w] |= parity[w]
            all_failed &= failed[w]
        if all_failed:
            return


@njit(inline="always", **_JIT)
def _lane_satisfied(post, row_ptr, cols, lanes, w):
    """True if lane w's hard decisions satisfy every parity check."""
    for r in range(row_ptr.size - 1):
        parity = 0
        for e in range(row_ptr[r], row_ptr[r + 1]):
            parity ^= np.int32(post[_U(cols[e]) * lanes + w] <= _ZERO)
        if parity:
            return False
    return True


@njit(inline="always", **_JIT)
def _move_lane(src, dst, lanes, llr_ch, post, c2v):
    """Copy lane src's decoder state into lane dst."""
    for i in range(0, _U(llr_ch.size), lanes):
        llr_ch[i + dst] = llr_ch[i + src]
        post[i + dst] = post[i + src]
    for i in range(0, _U(c2v.size), lanes):
        c2v[i + dst] = c2v[i + src]


@njit(inline="always", **_JIT)
def _load_lane(llr_row, rx_pos, llr_max, lanes, w, llr_ch, post, c2v):
    """Put one codeword's channel LLRs (Sionna sign) into lane w; untransmitted variables get 0."""
    for i in range(w, _U(llr_ch.size), lanes):
        llr_ch[i] = _ZERO
    for j in range(rx_pos.size):
        llr_ch[_U(rx_pos[j]) * lanes + w] = -_clip(llr_row[j], llr_max)  # to ln(P0/P1)
    for i in range(w, _U(llr_ch.size), lanes):
        post[i] = llr_ch[i]
    for i in range(w, _U(c2v.size), lanes):
        c2v[i] = _ZERO


@njit(**_JIT)
def _decode_span(llr, first, last, rx_pos, num_vars, row_ptr, cols, max_degree, num_iter,
                 algorithm, layered, early_stop, llr_max, scale, offset, lanes, bits_out, ok_out,
                 iter_out):
    """Decode codewords first..last-1 in a group of ``lanes`` (see module docstring).

    The codewords in flight occupy lanes 0..width-1: a finished lane takes the next codeword, or,
    when none is left, the last lane's state, so the vector loops shrink as the span drains.
    """
    num_rows = row_ptr.size - 1
    num_info = bits_out.shape[1]
    llr_ch = np.zeros(num_vars * lanes, np.float32)
    post = np.zeros(num_vars * lanes, np.float32)  # posterior LLR (flooding: previous iteration's)
    post_next = np.zeros(num_vars * lanes, np.float32)  # flooding only: posterior being built
    c2v = np.zeros(cols.size * lanes, np.float32)
    buf = np.zeros(max_degree * lanes, np.float32)
    acc1 = np.zeros(lanes, np.float32)
    acc2 = np.zeros(lanes, np.float32)
    acc3 = np.zeros(lanes, np.float32)
    sgn = np.zeros(lanes, np.float32)
    parity = np.zeros(lanes, np.int32)
    failed = np.zeros(lanes, np.int32)
    lane_cw = np.zeros(lanes, np.int64)
    lane_iter = np.zeros(lanes, np.int64)
    keep = _ONE if layered else _ZERO
    next_cw = first
    width = _U(0)
    while width < lanes and next_cw < last:
        _load_lane(llr[next_cw], rx_pos, llr_max, lanes, width, llr_ch, post, c2v)
        lane_cw[width] = next_cw
        next_cw += 1
        width += _U(1)
    while width > 0:
        if early_stop:
            failed[:width] = 0
            _unsatisfied_lanes(post, row_ptr, cols, lanes, width, parity, failed)
        w = _U(0)
        while w < width:
            converged = early_stop and failed[w] == 0
            if not converged and lane_iter[w] < num_iter:
                w += _U(1)
                continue
            b = lane_cw[w]
            for i in range(num_info):
                bits_out[b, i] = np.uint8(post[_U(i) * lanes + w] <= _ZERO)
            ok_out[b] = converged or (
                not early_stop and _lane_satisfied(post, row_ptr, cols, lanes, w))
            iter_out[b] = lane_iter[w]
            if next_cw < last:
                _load_lane(llr[next_cw], rx_pos, llr_max, lanes, w, llr_ch, post, c2v)
                lane_cw[w] = next_cw
                lane_iter[w] = 0
                next_cw += 1
                if early_stop:
                    failed[w] = np.int32(not _lane_satisfied(post, row_ptr, cols, lanes, w))
            else:
                width -= _U(1)
                if w < width:
                    _move_lane(width, w, lanes, llr_ch, post, c2v)
                    lane_cw[w] = lane_cw[width]
                    lane_iter[w] = lane_iter[width]
                    failed[w] = failed[width]
            # slot w now holds another codeword (or w == width): examine it again
        if width == 0:
            return
        if layered:
            post_out = post
        else:
            post_next[:] = llr_ch
            post_out = post_next
        for r in range(num_rows):
            e0, e1 = row_ptr[r], row_ptr[r + 1]
            _gather_v2c(e0, e1, cols, post, c2v, buf, lanes, width, llr_max)
            if algorithm == ALGORITHM_BOXPLUS_PHI:
                _row_phi(e1 - e0, buf, acc1, sgn, lanes, width, llr_max)
            elif algorithm == ALGORITHM_BOXPLUS:
                _row_boxplus(e1 - e0, buf, acc1, sgn, lanes, width, llr_max)
            else:
                _row_minsum(e1 - e0, buf, acc1, acc2, acc3, sgn, lanes, width, llr_max, scale,
                            offset)
            _scatter_c2v(e0, e1, cols, post_out, keep, c2v, buf, lanes, width)
        if not layered:
            post, post_next = post_next, post
        lane_iter[:width] += 1


@njit(parallel=True, **_JIT)
def decode_batch(llr, rx_pos, num_vars, row_ptr, cols, max_degree, num_iter, algorithm, layered,
                 early_stop, llr_max, scale, offset, lanes, span, bits_out, ok_out, iter_out):
    """Decode a batch of codewords, spans of ``span`` codewords in parallel.

    llr: float32 [B, n_rx], ln(P(b=1)/P(b=0)) per received bit; rx_pos: int32 [n_rx], the graph
    variable each received LLR belongs to (others are punctured: LLR 0). Graph: CSR (row_ptr,
    cols) over num_vars variables whose first bits_out.shape[1] are the information bits.
    algorithm: ALGORITHM_*; layered: row-serial schedule (posterior updated after every check)
    instead of flooding; early_stop: stop a codeword once its hard decisions satisfy every
    check (tested before each iteration, so a valid channel word takes 0 iterations).
    llr_max: clip (in nats) of channel LLRs and of every message; scale, offset: min-sum
    correction; lanes: uint64 codewords per SIMD group (a runtime value on purpose, see above;
    64 fills LLVM's 4x-unrolled 16-wide loops). Writes bits_out uint8 [B, k], ok_out bool [B]
    (all checks satisfied), iter_out int32 [B] (iterations run).
    """
    num_cw = llr.shape[0]
    num_spans = (num_cw + span - 1) // span
    for s in prange(num_spans):
        _decode_span(llr, s * span, min(num_cw, (s + 1) * span), rx_pos, num_vars, row_ptr, cols,
                     max_degree, num_iter, algorithm, layered, early_stop, llr_max, scale, offset,
                     lanes, bits_out, ok_out, iter_out)


@njit(cache=True)
def _encode_span(bits, first, last, info_ptr, info_cols, binv_ptr, binv_cols, ext_ptr, ext_cols,
                 tx_pos, out):
    """Encode codewords first..last-1 (see :func:`encode_batch`)."""
    k = bits.shape[1]
    num_core = binv_ptr.size - 1
    num_ext = ext_ptr.size - 1
    syndrome = np.zeros(num_core + num_ext, np.uint8)
    word = np.zeros(k + num_core + num_ext, np.uint8)
    for b in range(first, last):
        for i in range(k):
            word[i] = bits[b, i]
        for r in range(num_core + num_ext):
            s = np.uint8(0)
            for e in range(info_ptr[r], info_ptr[r + 1]):
                s ^= word[info_cols[e]]
            syndrome[r] = s
        for i in range(num_core):
            s = np.uint8(0)
            for e in range(binv_ptr[i], binv_ptr[i + 1]):
                s ^= syndrome[binv_cols[e]]
            word[k + i] = s
        for i in range(num_ext):
            s = syndrome[num_core + i]
            for e in range(ext_ptr[i], ext_ptr[i + 1]):
                s ^= word[k + ext_cols[e]]
            word[k + num_core + i] = s
        for j in range(tx_pos.size):
            out[b, j] = word[tx_pos[j]]


@njit(parallel=True, cache=True)
def encode_batch(bits, info_ptr, info_cols, binv_ptr, binv_cols, ext_ptr, ext_cols, tx_pos, span,
                 out):
    """Systematic encoding of H = [[A, B, 0], [C1, C2, I]] with B invertible.

    bits: uint8 [B, k]. The word is laid out [info (k) | core parity p1 | extension parity p2]:
    s = H_info u (CSR info_ptr/info_cols over rows of both blocks), p1 = B^-1 s_core (CSR
    binv_*), p2 = s_ext + C2 p1 (CSR ext_* with columns indexing p1). out: uint8 [B, len(tx_pos)]
    receives word[tx_pos] (rate matching / interleaving as a gather).
    """
    num_cw = bits.shape[0]
    num_spans = (num_cw + span - 1) // span
    for s in prange(num_spans):
        _encode_span(bits, s * span, min(num_cw, (s + 1) * span), info_ptr, info_cols, binv_ptr,
                     binv_cols, ext_ptr, ext_cols, tx_pos, out)
