"""Host-path channels (Numba): AWGN and Rayleigh fading on complex64 symbol batches ``[B, S]``.

Conventions (docs/conventions.md): ``no`` is N0, the noise variance per complex symbol (N0/2 per real
dimension), i.e. ``no = 10 ** (-snr_db / 10)`` for unit-energy symbols; h ~ CN(0, 1).

Noise and fading come from ``rng.complex_normal_pair(key, counter)`` with counter
``(row_offset + b) * S + s`` for element ``(b, s)``: results are bit-identical for any thread count, and a
batch split into row ranges gives the same numbers when each part passes its first row as ``row_offset``.
The additive noise of element ``i`` is the same in ``awgn`` and ``rayleigh`` (common random numbers), so
channel comparisons at one key differ only by the fading.

Each kernel is one fused pass: read x, draw, write y (and h, no_eff).
"""

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from sdjscc_phy.errors import ParameterError
from sdjscc_phy.kernels.rng import (KERNEL_OPTIONS, STREAM_ELEMENT, STREAM_ROW, complex_normal, complex_normal_pair,
                                    split_key)
from sdjscc_phy.phy.choices import COHERENCES

_ONE = np.float32(1.0)


class FadingOutput(NamedTuple):
    """Result of a fading channel, on both paths (numpy arrays here, tensors in ``phy.channels``)."""

    y: np.ndarray
    """complex64 ``[B, S]``: received symbols, equalised (y h*/|h|^2) when ``equalize=True``."""
    h: np.ndarray
    """complex64 ``[B, 1]`` (block) or ``[B, S]`` (fast): the channel gains, CN(0, 1)."""
    no_eff: np.ndarray
    """float32 ``[B, S]``: noise variance per complex symbol in ``y`` (``no / |h|^2`` when equalised, else
    ``no``), for the demapper. May be a read-only broadcast view."""


@njit(**KERNEL_OPTIONS)
def _awgn_kernel(x, y, sigma, k0, k1, first_index):
    for i in prange(x.size):
        n_re, n_im, _, _ = complex_normal_pair(k0, k1, first_index + np.uint64(i), STREAM_ELEMENT)
        y[i] = complex(x[i].real + sigma * n_re, x[i].imag + sigma * n_im)


@njit(inline="always", error_model="numpy", cache=True)
def _fade(x, h_re, h_im, n_re, n_im, sigma, inv_gain, equalize):
    """One received symbol ``h x + sigma n``, or with CSI ``(h x + sigma n) h*/|h|^2 = x + sigma n h*/|h|^2``."""
    if equalize:
        return complex(x.real + sigma * (n_re * h_re + n_im * h_im) * inv_gain,
                       x.imag + sigma * (n_im * h_re - n_re * h_im) * inv_gain)
    return complex(h_re * x.real - h_im * x.imag + sigma * n_re, h_re * x.imag + h_im * x.real + sigma * n_im)


@njit(**KERNEL_OPTIONS)
def _rayleigh_fast_kernel(x, y, h, no_eff, no, k0, k1, first_index, equalize):
    sigma = np.sqrt(no)
    for i in prange(x.size):
        n_re, n_im, h_re, h_im = complex_normal_pair(k0, k1, first_index + np.uint64(i), STREAM_ELEMENT)
        inv_gain = _ONE / (h_re * h_re + h_im * h_im)
        h[i] = complex(h_re, h_im)
        y[i] = _fade(x[i], h_re, h_im, n_re, n_im, sigma, inv_gain, equalize)
        no_eff[i] = no * inv_gain if equalize else no


@njit(**KERNEL_OPTIONS)
def _rayleigh_block_kernel(x, y, h, inv_gain, sigma, k0, k1, first_index, equalize):
    num_rows, num_cols = x.shape
    for b in prange(num_rows):  # parallel over rows, vectorised along a row
        h_re, h_im = h[b].real, h[b].imag
        row_index = first_index + np.uint64(b * num_cols)
        for s in range(num_cols):
            n_re, n_im, _, _ = complex_normal_pair(k0, k1, row_index + np.uint64(s), STREAM_ELEMENT)
            y[b, s] = _fade(x[b, s], h_re, h_im, n_re, n_im, sigma, inv_gain[b], equalize)


def _check_inputs(x, no: float) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or not np.iscomplexobj(x):
        raise ParameterError(f"`x` must be a complex [B, S] array; got {x.dtype} with shape {x.shape}")
    if not np.isfinite(no) or no < 0:
        raise ParameterError(f"`no` (noise variance per complex symbol) must be finite and >= 0; got {no}")
    return np.ascontiguousarray(x, dtype=np.complex64)


def awgn(x: np.ndarray, no: float, key: int, out: np.ndarray | None = None, *, row_offset: int = 0) -> np.ndarray:
    """AWGN channel ``y = x + n``, n ~ CN(0, no): complex64 ``[B, S]`` in, complex64 ``[B, S]`` out.

    ``no`` is N0, the noise variance per complex symbol (linear, = 10^(-snr_db/10) for Es = 1); ``key`` any
    64-bit int; ``out`` an optional C-contiguous complex64 ``[B, S]`` array to write into (may be ``x``);
    ``row_offset`` the index of row 0 of ``x`` in the stream (to split a batch without changing the noise).
    """
    x = _check_inputs(x, no)
    if out is None:
        out = np.empty_like(x)
    elif out.shape != x.shape or out.dtype != np.complex64 or not out.flags.c_contiguous:
        raise ParameterError(f"`out` must be a C-contiguous complex64 array of shape {x.shape}")
    first_index = np.uint64(row_offset * x.shape[1])
    _awgn_kernel(x.reshape(-1), out.reshape(-1), np.float32(np.sqrt(no)), *split_key(key), first_index)
    return out


def rayleigh(x: np.ndarray, no: float, key: int, coherence: str, equalize: bool, *,
             row_offset: int = 0) -> FadingOutput:
    """Rayleigh fading ``y = h x + n``, h ~ CN(0, 1), n ~ CN(0, no), on complex64 ``[B, S]``.

    ``coherence='block'`` draws one h per row (per image or codeword), ``'fast'`` one h per symbol.
    ``equalize=True`` models a receiver with CSI: y is replaced by y h*/|h|^2 and ``no_eff = no/|h|^2``.
    ``no``, ``key`` and ``row_offset`` as in ``awgn``; the additive noise equals ``awgn``'s at the same key.
    """
    x = _check_inputs(x, no)
    if coherence not in COHERENCES:
        raise ParameterError(f"`coherence` must be one of {COHERENCES}; got {coherence!r}")
    no = np.float32(no)
    k0, k1 = split_key(key)
    first_index = np.uint64(row_offset * x.shape[1])
    y = np.empty_like(x)
    if coherence == "fast":
        h = np.empty_like(x)
        no_eff = np.empty(x.shape, np.float32)
        _rayleigh_fast_kernel(x.reshape(-1), y.reshape(-1), h.reshape(-1), no_eff.reshape(-1), no, k0, k1,
                              first_index, bool(equalize))
        return FadingOutput(y, h, no_eff)
    h = complex_normal(x.shape[0], key, first_index=row_offset, stream=STREAM_ROW)
    inv_gain = np.float32(1.0) / (h.real * h.real + h.imag * h.imag)
    _rayleigh_block_kernel(x, y, h, inv_gain, np.sqrt(no), k0, k1, first_index, bool(equalize))
    no_eff = no * inv_gain if equalize else np.full(x.shape[0], no)
    return FadingOutput(y, h[:, None], np.broadcast_to(no_eff[:, None], x.shape))
