"""The SD-JSCC / deep-JSCC codec (paper Sec. III-C, Fig. 3).

Encoder: strided convolutions and residual blocks, then a sigmoid head whose outputs ``e`` in [0, 1]
are binarized (eq. 14); an *analog* codec (deep JSCC of Bourtsoulatze et al. 2019) has a linear head
instead, whose outputs a power normaliser turns into complex channel symbols. Decoder: convolutions, residual blocks and upsampling from the soft bits the
demapper delivers (P(b = 1), in [0, 1]) back to an image in [0, 1]. The encoder downsamples by 4, so
any image whose sides are divisible by 4 works (CIFAR 32x32, STL 96x96); the code has
``code_channels`` x H/4 x W/4 bits, i.e. ``bpp = code_channels / 16`` bits per pixel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from sdjscc_phy.errors import ParameterError
from sdjscc_phy.models import DOWNSAMPLING, JSCC_NONLINEARITIES
from sdjscc_phy.models.checkpoints import load_export
from sdjscc_phy.models.gdn import GDN


def code_channels_for_bpp(bpp: float) -> int:
    """Channels of the binary code for a target rate in bits per pixel (must be a multiple of 1/16)."""
    channels = bpp * DOWNSAMPLING * DOWNSAMPLING
    if channels < 1 or abs(channels - round(channels)) > 1e-9:
        raise ParameterError(f"bpp must be a positive multiple of 1/16 (one code channel); got {bpp}")
    return int(round(channels))


@dataclass(frozen=True)
class JsccConfig:
    """Codec size: ``width`` channels at H/4, ``width // 2`` at H/2 and ``width // 4`` at full resolution.

    ``logit_scale``: the encoder's sigmoid reads ``logit_scale`` x its last convolution. The bits
    (e > 0.5) depend only on the sign, so the scale changes training, not the code: below 1 it keeps
    outputs off the sigmoid's flat tails, where the straight-through gradient no longer reaches the encoder.

    ``analog``: linear encoder head (real values, no binarizer) and a decoder that reads the received
    real values as they are (a digital decoder reads 2 P(b=1) - 1).

    ``nonlinearity``: the activation after each stage convolution (not inside residual blocks): ``prelu``,
    or ``gdn``: GDN then PReLU in the encoder, inverse GDN then PReLU in the decoder (as in ADJSCC).
    Checkpoints written before the option existed have no such key and load as ``prelu``.
    """

    code_channels: int = 4
    width: int = 64
    num_res_blocks: int = 1
    logit_scale: float = 1.0
    analog: bool = False
    nonlinearity: str = "prelu"

    def __post_init__(self):
        scale = self.logit_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise ParameterError(f"model.logit_scale must be a number > 0; got {scale!r}")
        if self.nonlinearity not in JSCC_NONLINEARITIES:
            raise ParameterError(f"model.nonlinearity must be one of ({', '.join(JSCC_NONLINEARITIES)}); "
                                 f"got {self.nonlinearity!r}")


class ResidualBlock(nn.Module):
    """conv3x3 - PReLU - conv3x3, plus the identity."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _res_stack(channels: int, count: int) -> list[nn.Module]:
    return [ResidualBlock(channels) for _ in range(count)]


def _activation(channels: int, nonlinearity: str, inverse: bool) -> nn.Module:
    """The activation after a stage convolution; a bare PReLU keeps the state-dict keys of older checkpoints."""
    if nonlinearity == "gdn":
        return nn.Sequential(GDN(channels, inverse=inverse), nn.PReLU(channels))
    return nn.PReLU(channels)


def _upsample(c_in: int, c_out: int, nonlinearity: str) -> list[nn.Module]:
    """x2 upsampling: conv to 4 c_out channels, then pixel shuffle."""
    return [nn.Conv2d(c_in, 4 * c_out, 3, padding=1), nn.PixelShuffle(2), _activation(c_out, nonlinearity, True)]


class JsccEncoder(nn.Module):
    """Image [B, 3, H, W] in [0, 1] -> e [B, code_channels·H/4·W/4] in [0, 1] (before eq. 14)."""

    def __init__(self, config: JsccConfig):
        super().__init__()
        w, r, act = config.width, config.num_res_blocks, config.nonlinearity
        self.logit_scale = config.logit_scale
        self.analog = config.analog
        self.net = nn.Sequential(
            nn.Conv2d(3, w // 2, 5, stride=2, padding=2), _activation(w // 2, act, False), *_res_stack(w // 2, r),
            nn.Conv2d(w // 2, w, 5, stride=2, padding=2), _activation(w, act, False), *_res_stack(w, r),
            nn.Conv2d(w, config.code_channels, 3, padding=1),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.net(image * 2.0 - 1.0).flatten(1)
        return logits if self.analog else torch.sigmoid(self.logit_scale * logits)


class JsccDecoder(nn.Module):
    """Soft bits [B, code_channels·H/4·W/4] in [0, 1] -> image [B, 3, H, W] in [0, 1]."""

    def __init__(self, config: JsccConfig):
        super().__init__()
        w, r, act = config.width, config.num_res_blocks, config.nonlinearity
        self.code_channels = config.code_channels
        self.analog = config.analog
        self.net = nn.Sequential(
            nn.Conv2d(config.code_channels, w, 3, padding=1), _activation(w, act, True), *_res_stack(w, r),
            *_upsample(w, w // 2, act), *_res_stack(w // 2, r),
            *_upsample(w // 2, w // 4, act),
            nn.Conv2d(w // 4, 3, 3, padding=1),
        )

    def forward(self, soft_bits: torch.Tensor, height: int, width: int) -> torch.Tensor:
        grid = soft_bits.reshape(-1, self.code_channels, height // DOWNSAMPLING, width // DOWNSAMPLING)
        return torch.sigmoid(self.net(grid if self.analog else grid * 2.0 - 1.0))


class JsccCodec(nn.Module):
    """Encoder and decoder of one trained codec (one checkpoint)."""

    def __init__(self, config: JsccConfig):
        super().__init__()
        self.config = config
        self.encoder = JsccEncoder(config)
        self.decoder = JsccDecoder(config)

    def config_dict(self) -> dict:
        return asdict(self.config)


EXPORT_FORMAT = "jsccflow-jscc"
EXPORT_VERSION = 1


def export_codec(codec: JsccCodec, path: str | Path, metadata: dict) -> None:
    """Write the inference checkpoint: fp16 weights, codec config and ``metadata`` (metrics, the training
    recipe stage with its flowgraph, code version)."""
    from sdjscc_phy.training.checkpoint import atomic_torch_save  # training imports this module

    state = {k: v.cpu().half() if v.is_floating_point() else v.cpu() for k, v in codec.state_dict().items()}
    payload = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "config": codec.config_dict(),
               "state_dict": state, **metadata}
    atomic_torch_save(payload, path)


def load_codec(name_or_path: str, map_location: str | torch.device = "cpu") -> JsccCodec:
    """Load an exported codec (shipped name or path) in eval mode with fp32 weights.

    The checkpoint's metadata is attached as ``codec.metadata``.
    """
    codec, info = load_export(name_or_path, EXPORT_FORMAT, "codec",
                              lambda payload: JsccCodec(JsccConfig(**payload["config"])), map_location)
    codec.metadata = info
    return codec
