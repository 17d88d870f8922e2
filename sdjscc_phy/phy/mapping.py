"""Torch-path Gray QAM mapper and soft demapper: differentiable twins of ``kernels.mapping``.

Same constellations (Sionna's labelling, unit energy) and LLR sign, ln(P(b=1)/P(b=0)); a parity test holds
the two paths equal.
"""

import functools

import torch

from sdjscc_phy.errors import ParameterError
from sdjscc_phy.kernels import mapping as host


@functools.cache
def _tables(num_bits_per_symbol: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CPU tensors: constellation (complex64 ``[M]``), and point indices with bit t = 0 / = 1 (``[k, M/2]``)."""
    zeros, ones = host.bit_partition(num_bits_per_symbol)
    # Made outside inference mode even when a run asks first: training in the same process saves them for backward.
    with torch.inference_mode(False):
        points = torch.from_numpy(host.constellation(num_bits_per_symbol))
        return points, torch.from_numpy(zeros), torch.from_numpy(ones)


def constellation(num_bits_per_symbol: int, device: torch.device | str | None = None) -> torch.Tensor:
    """complex64 ``[2^k]``: the same points as ``kernels.mapping.constellation``."""
    return _tables(num_bits_per_symbol)[0].to(device, copy=True)  # a copy: the cached table stays intact


def map_bits(bits: torch.Tensor, num_bits_per_symbol: int) -> torch.Tensor:
    """Map bits ``[..., N]`` to complex64 symbols ``[..., N / k]`` (symbol s carries bits s k .. s k + k - 1).

    Float bits in [0, 1] are read as P(b = 1) of independent bits and give the mean symbol
    ``sum_n P(point n) c_n``. This is the multilinear extension of the lookup: it equals the lookup exactly
    for 0/1 bits (so a straight-through binarizer upstream sees the true forward value), and d x / d b_t is
    the symbol change when bit t flips, the finite difference a hard bit would see. A linear ``bits @ w``
    cannot do this: Gray labels are not linear in the bits.
    """
    points = constellation(host.check_num_bits_per_symbol(num_bits_per_symbol), bits.device)
    if bits.shape[-1] % num_bits_per_symbol:
        raise ParameterError(f"`bits` must end in a multiple of {num_bits_per_symbol} bits; got {tuple(bits.shape)}")
    p_one = bits.to(torch.float32).unflatten(-1, (-1, num_bits_per_symbol))
    point_probs = torch.ones_like(p_one[..., :1])
    for t in range(num_bits_per_symbol):  # MSB first: index 2 n + b_t, as in bit_labels
        p_t = p_one[..., t : t + 1]
        point_probs = torch.stack([point_probs * (1 - p_t), point_probs * p_t], dim=-1).flatten(-2)
    return torch.complex(point_probs @ points.real, point_probs @ points.imag)


def demap_llr(y: torch.Tensor, no, num_bits_per_symbol: int, method: str = "app") -> torch.Tensor:
    """Soft-demap complex symbols ``y`` ``[..., S]`` to float32 LLRs ``[..., S k]``, ln(P(b=1)/P(b=0)).

    ``no``: noise variance per complex symbol (linear N0), a float or a tensor broadcastable to ``y``
    (e.g. ``no_eff`` after equalisation). ``method``: ``'app'`` (exact log-sum-exp) or ``'maxlog'``.
    Differentiable w.r.t. ``y`` (and ``no``).
    """
    if method not in host.DEMAPPING_METHODS:
        raise ParameterError(f"`method` must be one of {host.DEMAPPING_METHODS}; got {method!r}")
    points, zeros, ones = (t.to(y.device) for t in _tables(host.check_num_bits_per_symbol(num_bits_per_symbol)))
    no = torch.as_tensor(no, dtype=torch.float32, device=y.device)
    diff = y.unsqueeze(-1) - points  # [..., S, M]
    logits = -(diff.real.square() + diff.imag.square()) / no.unsqueeze(-1)
    logits_one, logits_zero = logits[..., ones], logits[..., zeros]  # [..., S, k, M/2]
    if method == "app":
        llr = torch.logsumexp(logits_one, dim=-1) - torch.logsumexp(logits_zero, dim=-1)
    else:
        llr = logits_one.amax(dim=-1) - logits_zero.amax(dim=-1)
    return llr.flatten(-2)


def bit_probabilities(llr: torch.Tensor) -> torch.Tensor:
    """P(b = 1) = sigmoid(llr) for LLRs ln(P(b=1)/P(b=0))."""
    return torch.sigmoid(llr)
