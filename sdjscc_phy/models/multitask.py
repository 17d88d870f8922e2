"""Multi-task JSCC (Lyu, Zhu, Xu, Ai, Cui, arXiv 2304.02317): image recovery and classification from one
transmitted code, with an optional SNR-driven gate that prunes code channels.

Only the paper's abstract was at hand; the design choices made here (also in docs/methods.md, "Multi-task JSCC and CL-JSCC"):

- **Codec.** The SD-JSCC/deep-JSCC encoder and decoder (:mod:`sdjscc_phy.models.jscc`, width 64) and the
  same link: binarized code (eq. 14 of SD-JSCC, straight-through), Gray 16-QAM, AWGN/Rayleigh, soft
  demapper. At 0.25 bpp the code is 4 channels x 8 x 8 bits = 64 16-QAM symbols per 32x32 image
  (k/n = 1/48). The encoder/decoder may start from the shipped deep-JSCC codec (``init_from``).
- **Feature head.** Classification runs on the received soft bits, not on the reconstruction: a small
  CNN (two 3x3 convs, two stride-2 convs, 2x2 average pool, linear) maps 2·P(b=1) − 1 of the code grid
  to ``feature_dim`` features h; z = h / ‖h‖ on the unit sphere (as MCR² features are in Yu et al. 2020).
- **Loss** (training flowgraph): MSE + w·CE of the linear classifier, or the paper's MSE + λ·(−ΔR) with
  ΔR the MCR² coding rate reduction of the batch's z (:func:`sdjscc_phy.training.losses.mcr2`,
  quantisation precision ε); plus the gate's rate penalty.
- **Classifier in feature space** (``classifier``): ``linear`` — a linear layer on the head's features
  before normalisation, trained with cross-entropy (MSE + w·CE, the encoder shaping its code for both
  tasks); or ``subspace`` — the paper's nearest class subspace (Yu et al. 2020, Sec. 4): per class, the top
  ``subspace_dim`` principal directions (uncentred, via SVD) of training features received at SNRs drawn
  from the training range; class scores (``logits``) are −‖z − U_j U_jᵀ z‖², the negative squared residual,
  so argmax is the nearest subspace. The bases (and class means) are buffers of the exported checkpoint;
  they are fitted for a ``linear`` model too, so both receivers can read the same code.
- **Gate.** One logit per code channel from the SNR; the mask is hard (logit > 0) with a straight-through
  sigmoid gradient. ``gate_kind: mlp``: an MLP (1 → ``gate_hidden`` → code channels) of the SNR in dB (divided by
  10), free to send any set of channels at any SNR. ``gate_kind: threshold``: channel k is sent while the SNR is
  below a learned threshold t_k (logit (t_k − SNR) / 2 dB), so fewer symbols are sent as the SNR rises, by
  construction; the thresholds start apart, 12.5 to 27.5 dB. The gate sees
  the SNR only, not the code (so the transmitter needs the SNR: it is assumed known at the transmitter,
  e.g. fed back). A masked channel is not transmitted: its 64 bits = 16 symbols are erased at the
  receiver (P(b=1) = 0.5, i.e. 0 at the decoder's input); sent symbols keep Es = 1 (no power boost).
  Pruning is per code channel, so a 4-channel code sends 16, 32, 48 or 64 symbols per image.
- **Class bits** (``class_bits`` > 0). The transmitter also runs a frozen classifier (``tx_classifier``,
  by default the task classifier ``classifier_cifar10``) on the clean image and sends its class evidence
  in the first ``class_bits`` bits of the last code channel, in place of the image code's bits there: a
  learned map (softmax of the classifier's scores -> MLP -> sigmoid, then the binarizer as for every
  code bit) is the class's channel code, and the receiver reads those soft bits with a second learned map
  whose features add to the head's. The image decoder reads the whole code, class bits included. The gate
  never drops the class bits (their mask is 1), so a gated receiver keeps the class evidence at every SNR.
  The classifier is referenced by name, not copied into the multi-task checkpoint; it costs the
  transmitter one classifier pass per image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sdjscc_phy.models import MULTITASK_CLASSIFIERS, MULTITASK_GATES
from sdjscc_phy.models.checkpoints import load_export
from sdjscc_phy.models.jscc import DOWNSAMPLING, JsccConfig, JsccDecoder, JsccEncoder

EXPORT_FORMAT = "jsccflow-multitask"
EXPORT_VERSION = 1


@dataclass(frozen=True)
class MultitaskConfig:
    """Sizes of a multi-task codec: the JSCC codec's, the feature head's and the gate's."""

    code_channels: int = 4
    width: int = 64
    num_res_blocks: int = 1
    feature_dim: int = 32
    head_width: int = 64
    num_classes: int = 10
    subspace_dim: int = 4
    gated: bool = False
    gate_hidden: int = 16
    classifier: str = "subspace"
    gate_kind: str = "mlp"
    class_bits: int = 0
    tx_classifier: str = "classifier_cifar10"

    def __post_init__(self):
        if not isinstance(self.class_bits, int) or self.class_bits < 0:
            raise ValueError(f"class_bits must be an integer >= 0; got {self.class_bits!r}")
        if self.classifier not in MULTITASK_CLASSIFIERS:
            raise ValueError(f"classifier '{self.classifier}' is not one of {', '.join(MULTITASK_CLASSIFIERS)}")
        if self.gate_kind not in MULTITASK_GATES:
            raise ValueError(f"gate_kind '{self.gate_kind}' is not one of {', '.join(MULTITASK_GATES)}")

    @property
    def codec(self) -> JsccConfig:
        return JsccConfig(self.code_channels, self.width, self.num_res_blocks)


class FeatureHead(nn.Module):
    """Received soft bits ``[B, C, h, w]`` (P(b=1)) -> features ``[B, feature_dim]`` (before normalisation)."""

    def __init__(self, config: MultitaskConfig):
        super().__init__()
        c, w = config.code_channels, config.head_width
        self.net = nn.Sequential(
            nn.Conv2d(c, w, 3, padding=1), nn.PReLU(w),
            nn.Conv2d(w, w, 3, stride=2, padding=1), nn.PReLU(w),
            nn.Conv2d(w, w, 3, stride=2, padding=1), nn.PReLU(w),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4 * w, config.feature_dim),
        )

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        return self.net(grid * 2.0 - 1.0)


def straight_through_mask(logits: torch.Tensor) -> torch.Tensor:
    """Hard 0/1 (logit > 0) forward, the sigmoid's gradient backward."""
    soft = torch.sigmoid(logits)
    hard = (soft > 0.5).to(soft.dtype)
    return soft + (hard - soft).detach()


class SnrGate(nn.Module):
    """SNR (dB) ``[B]`` -> one logit per code channel ``[B, C]`` (sent where > 0): an MLP of the SNR."""

    def __init__(self, config: MultitaskConfig):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, config.gate_hidden), nn.ReLU(), nn.Linear(config.gate_hidden,
                                                                                       config.code_channels))
        with torch.no_grad():  # start with every channel open (sigmoid(1) = 0.73 > 0.5)
            self.net[-1].bias.fill_(1.0)

    def forward(self, snr_db: torch.Tensor) -> torch.Tensor:
        return self.net(snr_db.float().reshape(-1, 1) / 10.0)


class ThresholdGate(nn.Module):
    """SNR (dB) ``[B]`` -> one logit per code channel ``[B, C]``: channel k is sent while the SNR is below its
    threshold (logit > 0).

    The thresholds are stored in units of 10 dB, as the MLP gate reads the SNR: one Adam step moves a
    threshold by 10 x the learning rate in dB, so the gate's learning-rate scale means the same for both."""

    # Thresholds start apart, 12.5 to 27.5 dB: started equal, they receive equal gradients and Adam moves
    # them together (one cliff instead of a channel at a time).
    START_DB = (12.5, 27.5)
    SOFTNESS_DB = 2.0  # width of the sigmoid that carries the gradient

    def __init__(self, config: MultitaskConfig):
        super().__init__()
        self.threshold = nn.Parameter(torch.linspace(*self.START_DB, config.code_channels) / 10.0)

    def forward(self, snr_db: torch.Tensor) -> torch.Tensor:
        return (10.0 * self.threshold - snr_db.float().reshape(-1, 1)) / self.SOFTNESS_DB


#: gate_kind -> the gate's module (the names are MULTITASK_GATES)
GATES = {"mlp": SnrGate, "threshold": ThresholdGate}

CLASS_MAP_WIDTH = 64  # hidden width of the class bits' transmitter and receiver maps


class ClassEncoder(nn.Module):
    """Image ``[B, 3, H, W]`` -> e ``[B, class_bits]`` in [0, 1]: the frozen ``tx_classifier``'s softmax
    through a learned map. The classifier is held outside the module tree: it is neither trained nor exported."""

    def __init__(self, config: MultitaskConfig):
        super().__init__()
        from sdjscc_phy.models.classifier import load_classifier

        self.__dict__["classifier"] = load_classifier(config.tx_classifier).requires_grad_(False)
        self.map = nn.Sequential(nn.Linear(config.num_classes, CLASS_MAP_WIDTH), nn.PReLU(CLASS_MAP_WIDTH),
                                 nn.Linear(CLASS_MAP_WIDTH, config.class_bits))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            probs = self.classifier.to(image.device)(image).softmax(1)
        return torch.sigmoid(self.map(probs))


class ClassReader(nn.Module):
    """Received class bits P(b=1) ``[B, class_bits]`` -> features ``[B, feature_dim]`` added to the head's;
    the last layer starts at zero, so a codec trained without class bits starts where it was."""

    def __init__(self, config: MultitaskConfig):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(config.class_bits, CLASS_MAP_WIDTH), nn.PReLU(CLASS_MAP_WIDTH),
                                 nn.Linear(CLASS_MAP_WIDTH, config.feature_dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, p1: torch.Tensor) -> torch.Tensor:
        return self.net(p1 * 2.0 - 1.0)


class MultitaskJscc(nn.Module):
    """Encoder, decoder, feature head, optional gate and the class subspaces of one multi-task codec."""

    def __init__(self, config: MultitaskConfig):
        super().__init__()
        self.config = config
        self.encoder = JsccEncoder(config.codec)
        self.decoder = JsccDecoder(config.codec)
        self.head = FeatureHead(config)
        self.gate = GATES[config.gate_kind](config) if config.gated else None
        self.class_encoder = ClassEncoder(config) if config.class_bits else None
        self.class_reader = ClassReader(config) if config.class_bits else None
        k, d = config.num_classes, config.feature_dim
        self.linear = nn.Linear(d, k) if config.classifier == "linear" else None
        self.register_buffer("class_bases", torch.zeros(k, d, config.subspace_dim))
        self.register_buffer("class_means", torch.zeros(k, d))

    def config_dict(self) -> dict:
        return asdict(self.config)

    # --- transmitter ---------------------------------------------------------------------------
    def class_slice(self, num_bits: int) -> slice:
        """Where the class bits sit in a code of ``num_bits`` bits: the start of the last code channel."""
        start = num_bits - num_bits // self.config.code_channels
        return slice(start, start + self.config.class_bits)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """e ``[B, N]`` in [0, 1]: the image code, its class bits (if any) replaced by the class encoder's."""
        e = self.encoder(image)
        if self.class_encoder is None:
            return e
        where = self.class_slice(e.shape[1])
        return torch.cat([e[:, :where.start], self.class_encoder(image), e[:, where.stop:]], dim=1)

    def channel_mask(self, snr_db: torch.Tensor | float, batch_size: int, gate: bool = True,
                     relaxed: bool = False) -> torch.Tensor:
        """0/1 mask ``[B, C]`` of the code channels sent at ``snr_db`` (all ones when ungated or ``gate`` off),
        with the sigmoid's gradient (straight-through); ``relaxed``: the sigmoid itself, a mask in (0, 1)
        that attenuates a channel towards erasure, so the loss sees what a partly dropped channel costs and
        the gate's gradient is the exact one of this relaxed objective (the straight-through one is not)."""
        if self.gate is None or not gate:
            return torch.ones(batch_size, self.config.code_channels, device=self.class_means.device)
        snr = torch.as_tensor(snr_db, dtype=torch.float32, device=self.class_means.device)
        logits = self.gate(snr.expand(batch_size) if snr.ndim == 0 else snr)
        return torch.sigmoid(logits) if relaxed else straight_through_mask(logits)

    def bit_mask(self, channel_mask: torch.Tensor, num_bits: int) -> torch.Tensor:
        """Per-bit mask ``[B, N]`` of a channel mask ``[B, C]`` (the code is channel-major: C x h x w); the
        class bits are always sent."""
        mask = channel_mask.repeat_interleave(num_bits // channel_mask.shape[1], dim=1)
        if not self.config.class_bits:
            return mask
        always = torch.zeros(num_bits, dtype=mask.dtype, device=mask.device)
        always[self.class_slice(num_bits)] = 1.0
        return mask + always * (1.0 - mask)

    # --- receiver ------------------------------------------------------------------------------
    @staticmethod
    def erase(p1: torch.Tensor, bit_mask: torch.Tensor | None) -> torch.Tensor:
        """P(b=1) with unsent bits erased to 0.5 (gradient reaches the gate through ``bit_mask``)."""
        return p1 if bit_mask is None else 0.5 + bit_mask * (p1 - 0.5)

    def grid(self, p1: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return p1.reshape(-1, self.config.code_channels, height // DOWNSAMPLING, width // DOWNSAMPLING)

    def embed(self, p1: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Features h ``[B, feature_dim]`` (before normalisation) of received (erased) soft bits ``[B, N]``."""
        h = self.head(self.grid(p1, height, width))
        return h if self.class_reader is None else h + self.class_reader(p1[:, self.class_slice(p1.shape[1])])

    @staticmethod
    def unit(h: torch.Tensor) -> torch.Tensor:
        """The unit-norm features z the MCR² loss and the class subspaces use."""
        return F.normalize(h, dim=1)

    def scores(self, h: torch.Tensor, classifier: str | None = None) -> torch.Tensor:
        """Class scores of features h by ``classifier`` (default: the model's own): the linear layer's
        logits, or the nearest class subspace's (:meth:`logits` of the unit-norm z)."""
        if (classifier or self.config.classifier) == "linear":
            if self.linear is None:
                raise ValueError("the codec has no linear classifier (it was trained for the subspace receiver)")
            return self.linear(h)
        return self.logits(self.unit(h))

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Class scores −‖z − U_j U_jᵀ z‖² (nearest class subspace) ``[B, num_classes]``."""
        projected = torch.einsum("bd,kdr->bkr", z, self.class_bases)
        residual = z.square().sum(1, keepdim=True) - projected.square().sum(-1)
        return -residual

    @torch.no_grad()
    def fit_class_statistics(self, z: torch.Tensor, labels: torch.Tensor) -> None:
        """Class means and subspaces (top ``subspace_dim`` right singular vectors) of features ``z`` ``[n, d]``."""
        r = self.config.subspace_dim
        for j in range(self.config.num_classes):
            members = z[labels == j].float()
            if members.shape[0] == 0:
                continue
            self.class_means[j] = members.mean(0)
            _, _, vh = torch.linalg.svd(members, full_matrices=False)
            basis = vh[:r].T
            self.class_bases[j].zero_()
            self.class_bases[j, :, : basis.shape[1]] = basis


def export_multitask(model: MultitaskJscc, path: str | Path, metadata: dict) -> None:
    """Write the inference checkpoint: fp16 weights (fp32 class statistics), config and ``metadata``."""
    from sdjscc_phy.training.checkpoint import atomic_torch_save  # training imports this module

    keep = ("class_bases", "class_means")
    state = {k: v.cpu().half() if v.is_floating_point() and k not in keep else v.cpu()
             for k, v in model.state_dict().items()}
    payload = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "config": model.config_dict(),
               "state_dict": state, **metadata}
    atomic_torch_save(payload, path)


def load_multitask(name_or_path: str, map_location: str | torch.device = "cpu") -> MultitaskJscc:
    """Load an exported multi-task codec (shipped name or path) in eval mode; ``.metadata`` attached."""
    model, info = load_export(name_or_path, EXPORT_FORMAT, "multi-task codec",
                              lambda payload: MultitaskJscc(MultitaskConfig(**payload["config"])), map_location)
    model.metadata = info
    return model
