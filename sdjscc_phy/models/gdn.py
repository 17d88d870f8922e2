"""Generalized divisive normalization (Ballé, Laparra & Simoncelli 2016), the activation of the deep-JSCC papers.

GDN: ``y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)``; inverse GDN (decoder): ``y_i = x_i * sqrt(...)``.

Written here rather than imported from ``compressai.layers.GDN``: compressai 1.2.8 pins numpy < 2 (this
project runs on numpy 2) and pulls in torch-geometric, pandas and scipy for one 20-line layer. Same
parametrisation as compressai's: beta and gamma are stored as ``sqrt(value + pedestal)`` and squared back,
with a lower bound whose gradient still lets a parameter below it move up, so both stay positive.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

_PEDESTAL = 2.0**-36
_GAMMA_BOUND = 2.0**-18


class _LowerBound(torch.autograd.Function):
    """max(x, bound), whose gradient passes where x >= bound or where descent would raise x."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad * ((x >= ctx.bound) | (grad < 0)), None


class GDN(nn.Module):
    """GDN over the channels of ``[B, C, H, W]`` (``inverse``: IGDN); beta starts at 1, gamma at 0.1 I."""

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta_bound = (beta_min + _PEDESTAL) ** 0.5
        self.beta = nn.Parameter(torch.sqrt(torch.ones(channels) + _PEDESTAL))
        self.gamma = nn.Parameter(torch.sqrt(gamma_init * torch.eye(channels) + _PEDESTAL))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = _LowerBound.apply(self.beta, self.beta_bound) ** 2 - _PEDESTAL
        gamma = _LowerBound.apply(self.gamma, _GAMMA_BOUND) ** 2 - _PEDESTAL
        norm = F.conv2d(x * x, gamma[:, :, None, None], beta)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)
