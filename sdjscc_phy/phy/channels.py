"""Torch-path channels: differentiable twins of ``kernels.channels`` (same conventions, same outputs).

``no`` is N0, the noise variance per complex symbol (N0/2 per real dimension), a float or a real tensor
broadcastable to ``x`` (e.g. ``[B, 1]`` for one SNR per example). Noise and fading come from torch's RNG
(``generator``), so values differ from the host path; their statistics are equal (parity test).
``share``: the rows ``x`` holds of a larger batch (:attr:`~sdjscc_phy.core.block.BatchContext.share`);
they get the values those rows get when the whole batch is drawn.
"""

import torch

from sdjscc_phy.core.block import share_rows
from sdjscc_phy.errors import ParameterError
from sdjscc_phy.kernels.channels import COHERENCES, FadingOutput


def _complex_normal(shape, like: torch.Tensor, generator: torch.Generator | None,
                    share: tuple[int, int] | None) -> torch.Tensor:
    """CN(0, 1) samples (variance 1/2 per real part) with ``like``'s complex dtype and device."""
    return share_rows(lambda rows: torch.randn((rows, *shape[1:]), dtype=like.dtype, device=like.device,
                                               generator=generator), shape[0], share)


def _noise_variance(no, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(no, dtype=like.real.dtype, device=like.device)


def awgn(x: torch.Tensor, no, generator: torch.Generator | None = None,
         share: tuple[int, int] | None = None) -> torch.Tensor:
    """AWGN channel ``y = x + n``, n ~ CN(0, no); ``x`` complex ``[B, ..., S]``, differentiable w.r.t. ``x``."""
    return x + _noise_variance(no, x).sqrt() * _complex_normal(x.shape, x, generator, share)


def rayleigh(x: torch.Tensor, no, coherence: str, equalize: bool,
             generator: torch.Generator | None = None, share: tuple[int, int] | None = None) -> FadingOutput:
    """Rayleigh fading ``y = h x + n``, h ~ CN(0, 1), n ~ CN(0, no), on complex ``x`` ``[B, ..., S]``.

    ``coherence='block'``: h ``[..., 1]`` (one per row); ``'fast'``: h ``[..., S]``. ``equalize=True``: y is
    y h*/|h|^2 and ``no_eff = no/|h|^2`` (``[..., S]``, else ``no`` expanded), as ``kernels.channels.rayleigh``.
    """
    if coherence not in COHERENCES:
        raise ParameterError(f"`coherence` must be one of {COHERENCES}; got {coherence!r}")
    h_shape = x.shape if coherence == "fast" else (*x.shape[:-1], 1)
    h = _complex_normal(h_shape, x, generator, share)
    no = _noise_variance(no, x)
    noise = no.sqrt() * _complex_normal(x.shape, x, generator, share)
    gain = h.real.square() + h.imag.square()
    if equalize:  # (h x + n) h*/|h|^2 = x + n h*/|h|^2, written so that dy/dx is exactly 1
        return FadingOutput(x + noise * h.conj() / gain, h, (no / gain).expand(x.shape))
    return FadingOutput(h * x + noise, h, no.expand(x.shape))
