"""Host-path Gray QAM mapper and soft demapper (Numba).

Constellations are Sionna's (``sionna.phy.mapping.pam(1)`` for BPSK, ``qam(k)`` otherwise): point ``n``
carries the bits of ``n`` written MSB first, bits 0, 2, 4, ... select the in-phase and bits 1, 3, 5, ...
the quadrature Gray PAM level (3GPP TS 38.211, 5.1), and the average energy is 1. The tables are built
here in numpy, so the host path does not import Sionna; a test checks equality with Sionna.

LLRs are ln(P(b=1)/P(b=0)) (Sionna's sign convention): positive means bit 1 is more likely.
"""

import numpy as np
from numba import njit, prange

from sdjscc_phy.errors import ParameterError
from sdjscc_phy.kernels.rng import KERNEL_OPTIONS
from sdjscc_phy.phy.choices import CONSTELLATIONS, DEMAPPING_METHODS

SUPPORTED_BITS_PER_SYMBOL = (1, 2, 4, 6)

_MINUS_INF = np.float32(-np.inf)


def check_num_bits_per_symbol(num_bits_per_symbol: int) -> int:
    """Return ``num_bits_per_symbol`` if supported (1 = BPSK, 2 = QPSK, 4 = 16-QAM, 6 = 64-QAM), else raise."""
    if num_bits_per_symbol not in SUPPORTED_BITS_PER_SYMBOL:
        raise ParameterError(
            f"`num_bits_per_symbol` must be one of {SUPPORTED_BITS_PER_SYMBOL}; got {num_bits_per_symbol!r}")
    return num_bits_per_symbol


def bit_labels(num_bits_per_symbol: int) -> np.ndarray:
    """uint8 ``[2^k, k]``: row ``n`` holds the bits of point ``n``, MSB first."""
    k = check_num_bits_per_symbol(num_bits_per_symbol)
    shifts = np.arange(k - 1, -1, -1)
    return ((np.arange(2**k)[:, None] >> shifts) & 1).astype(np.uint8)


def _gray_pam_levels(bits: np.ndarray) -> np.ndarray:
    """Odd-integer Gray PAM levels of the bit rows ``bits`` ``[M, n]``; Sionna's ``pam_gray`` recursion
    ``level(b) = (1 - 2 b_0) (2^(n-1) - level(b_1..))``, unrolled from the last bit."""
    signs = 1 - 2 * bits.astype(np.int64)
    level = signs[:, -1]
    for j in range(bits.shape[1] - 2, -1, -1):
        level = signs[:, j] * (2 ** (bits.shape[1] - 1 - j) - level)
    return level


def constellation(num_bits_per_symbol: int) -> np.ndarray:
    """complex64 ``[2^k]``: the unit-average-energy Gray constellation with Sionna's labelling."""
    labels = bit_labels(num_bits_per_symbol)
    if num_bits_per_symbol == 1:
        points = _gray_pam_levels(labels).astype(np.complex128)
    else:
        points = _gray_pam_levels(labels[:, 0::2]) + 1j * _gray_pam_levels(labels[:, 1::2])
    return (points / np.sqrt(np.mean(np.abs(points) ** 2))).astype(np.complex64)


def bit_partition(num_bits_per_symbol: int) -> tuple[np.ndarray, np.ndarray]:
    """int64 ``[k, 2^k / 2]`` each: indices of the points whose bit ``t`` is 0, and of those where it is 1."""
    labels = bit_labels(num_bits_per_symbol).T.astype(bool)
    return (np.stack([np.flatnonzero(~row) for row in labels]), np.stack([np.flatnonzero(row) for row in labels]))


def _bits_per_symbol_of(table: np.ndarray) -> int:
    num_bits_per_symbol = len(table).bit_length() - 1
    if len(table) != 2**num_bits_per_symbol:
        raise ParameterError(f"`table` must have 2^k points (use constellation(k)); got {len(table)}")
    return check_num_bits_per_symbol(num_bits_per_symbol)


@njit(**KERNEL_OPTIONS)
def _map_kernel(bits, table, num_bits_per_symbol, symbols):
    num_rows, num_symbols = symbols.shape
    for b in prange(num_rows):
        for s in range(num_symbols):
            index = 0
            for t in range(num_bits_per_symbol):
                index = 2 * index + bits[b, s * num_bits_per_symbol + t]
            symbols[b, s] = table[index]


def map_bits(bits: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Map uint8 bits ``[B, N]`` (0/1) to complex64 symbols ``[B, N / k]`` with ``table = constellation(k)``;
    symbol ``s`` carries bits ``s k .. s k + k - 1``, MSB first."""
    k = _bits_per_symbol_of(table)
    bits = np.ascontiguousarray(bits, dtype=np.uint8)
    if bits.ndim != 2 or bits.shape[1] % k:
        raise ParameterError(f"`bits` must be [B, N] with N a multiple of {k}; got shape {bits.shape}")
    if np.any(bits > 1):
        raise ParameterError("`bits` must be 0 or 1")
    symbols = np.empty((bits.shape[0], bits.shape[1] // k), np.complex64)
    _map_kernel(bits, np.asarray(table, np.complex64), k, symbols)
    return symbols


@njit(**KERNEL_OPTIONS)
def _demap_kernel(y, no, table, zeros, ones, maxlog, llr):
    num_rows, num_symbols = y.shape
    num_bits_per_symbol, half = ones.shape
    for b in prange(num_rows):
        logits = np.empty(table.size, np.float32)  # scratch per row, not per symbol
        for s in range(num_symbols):
            for j in range(table.size):
                d = y[b, s] - table[j]
                logits[j] = -(d.real * d.real + d.imag * d.imag) / no[b, s]
            for t in range(num_bits_per_symbol):
                max0 = max1 = _MINUS_INF
                for j in range(half):
                    max0 = max(max0, logits[zeros[t, j]])
                    max1 = max(max1, logits[ones[t, j]])
                if maxlog:
                    llr[b, s * num_bits_per_symbol + t] = max1 - max0
                    continue
                sum0 = sum1 = np.float32(0.0)
                for j in range(half):  # log-sum-exp, shifted by the maxima so nothing underflows to log(0)
                    sum0 += np.exp(logits[zeros[t, j]] - max0)
                    sum1 += np.exp(logits[ones[t, j]] - max1)
                llr[b, s * num_bits_per_symbol + t] = max1 - max0 + np.log(sum1 / sum0)


def demap_llr(y: np.ndarray, no, table: np.ndarray, method: str = "app") -> np.ndarray:
    """Soft-demap complex symbols ``y`` ``[B, S]`` to float32 LLRs ``[B, S k]``, ln(P(b=1)/P(b=0)).

    ``no`` is the noise variance per complex symbol (linear N0): a float, or float32 ``[B, S]`` per symbol
    (e.g. ``no_eff = no/|h|^2`` after equalisation). ``method='app'`` is the exact a-posteriori LLR
    (log-sum-exp over the points), ``'maxlog'`` its max-log approximation.
    """
    if method not in DEMAPPING_METHODS:
        raise ParameterError(f"`method` must be one of {DEMAPPING_METHODS}; got {method!r}")
    k = _bits_per_symbol_of(table)
    y = np.ascontiguousarray(y, dtype=np.complex64)
    if y.ndim != 2:
        raise ParameterError(f"`y` must be a [B, S] array; got shape {y.shape}")
    try:  # a contiguous copy even for a scalar: one compiled kernel, and k times smaller than llr
        no = np.ascontiguousarray(np.broadcast_to(np.asarray(no, np.float32), y.shape))
    except ValueError:
        raise ParameterError(f"`no` must be a float or broadcastable to {y.shape}; got shape {np.shape(no)}") from None
    if not np.all(no > 0):
        raise ParameterError("`no` (noise variance per complex symbol) must be > 0")
    zeros, ones = bit_partition(k)
    llr = np.empty((y.shape[0], y.shape[1] * k), np.float32)
    _demap_kernel(y, no, np.asarray(table, np.complex64), zeros, ones, method == "maxlog", llr)
    return llr


def bit_probabilities(llr: np.ndarray) -> np.ndarray:
    """P(b = 1) = sigmoid(llr) for LLRs ln(P(b=1)/P(b=0)); float32, stable for any |llr|."""
    llr = np.asarray(llr, np.float32)
    return np.float32(0.5) * (np.float32(1.0) + np.tanh(np.float32(0.5) * llr))
