"""Stage kind ``jscc``: end-to-end training of the JSCC codec through the differentiable link.

``loss.kind: mse`` is deep JSCC (paper eq. 5; also SD-JSCC's first stage, Sec. IV-B); ``loss.kind:
semantic`` is SD-JSCC's fine-tuning with the GSW-weighted feature loss of a frozen classifier (eq. 13,
Algorithm 1), optionally plus ``mse_weight`` x MSE; ``loss.kind: contrastive`` is CL-JSCC (Tang et al.,
arXiv 2304.09438): NT-Xent between the frozen classifier's representation of the received reconstruction
and of its original (channel noise as the augmentation, the batch's other images as negatives), plus
``mse_weight`` x MSE (stage 1: 0; stage 2: the recognition/reconstruction trade-off). The path is encoder
-> binarizer (straight-through) -> mapper -> channel at ``link.snr_db`` -> soft demapper -> decoder
(-> classifier features).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from sdjscc_phy.errors import JsccflowError, RecipeError
from sdjscc_phy.models.classifier import FEATURE_LAYERS, load_classifier
from sdjscc_phy.models.jscc import DOWNSAMPLING, JsccCodec, codec_config, export_codec, load_codec
from sdjscc_phy.phy.link import LinkConfig, transmit_soft_bits
from sdjscc_phy.training import gsw
from sdjscc_phy.training.data import DATA_DEFAULTS, load_train_val
from sdjscc_phy.training.losses import nt_xent
from sdjscc_phy.training.stages import Stage, register_stage

LOSS_KINDS = ("mse", "semantic", "contrastive")


@register_stage("jscc")
class JsccStage(Stage):
    """Trains a :class:`~sdjscc_phy.models.jscc.JsccCodec` at ``model.bpp`` over ``link``.

    Recipe keys (besides the common ones): ``data`` (as the classifier stage), ``model`` (``bpp`` in bits
    per pixel, or ``bandwidth_ratio`` k/n = complex symbols / (3·H·W), ``width``, ``num_res_blocks``,
    ``logit_scale``: see :class:`~sdjscc_phy.models.jscc.JsccConfig`), ``link`` (``constellation``,
    ``channel``, ``snr_db`` = the training SNR, Es/N0 in dB, ``coherence``, ``csi``, ``demap_method``),
    ``init_from`` (a codec checkpoint to start from: stage 1's export), ``classifier`` (frozen task
    network: needed by the semantic and contrastive losses, and reported as ``val_acc`` when given),
    ``loss`` (``kind``, ``layer``, ``mse_weight``, ``temperature`` (contrastive), ``gsw``: ``mode``,
    ``tau``, ``r``, ``per_batch``, ``images``), ``augment.flip``.
    """

    DEFAULTS = {
        "data": DATA_DEFAULTS,
        "model": {"bpp": 0.25, "bandwidth_ratio": None, "width": 64, "num_res_blocks": 1, "logit_scale": 1.0},
        "link": {"constellation": "qam16", "channel": "awgn", "snr_db": 5.0, "coherence": "block", "csi": True,
                 "demap_method": "app"},
        "init_from": None,
        "classifier": None,
        "loss": {"kind": "mse", "layer": "block2", "mse_weight": 0.0, "temperature": 0.1,
                 "gsw": {"mode": "true_class", "tau": 1.0, "r": 1.0, "per_batch": False, "images": 5000}},
        "augment": {"flip": True},
        "eval_batch_size": 500,
    }
    PATH_KEYS = ("data.root", "data.split_file", "init_from", "classifier")

    def __init__(self, config: dict, seed: int, device: torch.device | str = "cpu"):
        super().__init__(config, seed, device)
        self.MONITOR = "val_acc" if config["classifier"] else "val_psnr_db"

    def setup(self) -> None:
        where = f"recipe: stage '{self.name}'"
        cfg = self.config
        loss = cfg["loss"]
        if loss["kind"] not in LOSS_KINDS:
            raise RecipeError(f"{where}: loss.kind must be one of {LOSS_KINDS}; got '{loss['kind']}'")
        if loss["kind"] in ("semantic", "contrastive") and not cfg["classifier"]:
            raise RecipeError(f"{where}: loss.kind '{loss['kind']}' needs 'classifier' (a classifier checkpoint)")
        if loss["kind"] in ("semantic", "contrastive") and loss["layer"] not in FEATURE_LAYERS:
            raise RecipeError(f"{where}: loss.layer must be one of {FEATURE_LAYERS}; got {loss['layer']!r}")
        if not float(loss["temperature"]) > 0:
            raise RecipeError(f"{where}: loss.temperature must be > 0; got {loss['temperature']!r}")
        if loss["gsw"]["mode"] is False:  # YAML reads an unquoted `off` as false
            loss["gsw"]["mode"] = "off"
        if loss["gsw"]["mode"] not in gsw.GSW_MODES:
            raise RecipeError(f"{where}: loss.gsw.mode must be one of {gsw.GSW_MODES}; got {loss['gsw']['mode']!r}")
        try:
            self.link = LinkConfig(**cfg["link"])
            model = cfg["model"]
            config = codec_config(model, self.link.num_bits_per_symbol)
            if model["bandwidth_ratio"] is not None:  # stored: the rate the bandwidth ratio gives
                model["bpp"] = config.code_channels / DOWNSAMPLING**2
        except (JsccflowError, TypeError) as exc:
            raise RecipeError(f"{where}: {exc}") from None
        if (config.code_channels * 16) % self.link.num_bits_per_symbol:  # bits per 4x4 block must fill symbols
            raise RecipeError(f"{where}: model.bpp {model['bpp']} does not fill {self.link.constellation} symbols")
        self.train_set, self.val_set = load_train_val(self)
        self.codec = JsccCodec(config)
        if cfg["init_from"]:
            self.codec.load_state_dict(load_codec(cfg["init_from"]).state_dict())
        self.codec.to(self.device)
        self.classifier = None
        if cfg["classifier"]:
            self.classifier = load_classifier(cfg["classifier"], self.device).requires_grad_(False)
        self.weights = None
        if loss["kind"] == "semantic" and not loss["gsw"]["per_batch"]:
            self.weights = self._global_weights()

    def _global_weights(self) -> torch.Tensor:
        """Algorithm 1, step 2: W' from the frozen classifier over (up to) ``gsw.images`` training images."""
        g = self.config["loss"]["gsw"]
        if g["mode"] == "off":
            return None
        return gsw.semantic_weights(self.global_raw_weights(), g["tau"], g["r"])

    def global_raw_weights(self) -> torch.Tensor:
        """W ``[K]`` (before eq. 10) of this stage's GSW mode and layer over ``gsw.images`` training images."""
        g = self.config["loss"]["gsw"]
        count = min(g["images"], len(self.train_set))
        pick = torch.randperm(len(self.train_set), generator=self.epoch_generator(-1, 3))[:count]
        images, labels = self.train_set.images, self.train_set.labels
        batches = ((images[idx].to(self.device).float() / 255, labels[idx].to(self.device)) for idx in pick.split(250))
        return gsw.mean_raw_weights(self.classifier, batches, self.config["loss"]["layer"], g["mode"])

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"codec": self.codec}

    def num_batches(self) -> int:
        return -(-len(self.train_set) // self.config["batch_size"])

    def _epoch_plan(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(image order, mirror flags) of ``epoch``, drawn once per epoch from its generator."""
        if getattr(self, "_plan_epoch", None) != epoch:
            g = self.epoch_generator(epoch)
            n = len(self.train_set)
            order, flips = torch.randperm(n, generator=g), (torch.rand(n, generator=g) < 0.5)
            self._plan = order, flips & bool(self.config["augment"]["flip"])
            self._plan_epoch = epoch
        return self._plan

    def batch(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
        order, flips = self._epoch_plan(epoch)
        bs = self.config["batch_size"]
        idx = order[index * bs:(index + 1) * bs]
        images = self.train_set.images[idx].to(self.device).float().div_(255)
        images = torch.where(flips[idx, None, None, None].to(self.device), images.flip(-1), images)
        noise = self.noise_generator(epoch, stream=1000 + index)  # channel noise: fixed by (seed, epoch, batch)
        return images, self.train_set.labels[idx].to(self.device), noise

    def noise_generator(self, epoch: int, stream: int) -> torch.Generator:
        """Channel noise generator on the training device (a CPU and a GPU run draw different noise)."""
        return self.epoch_generator(epoch, stream, self.device)

    def reconstruct(self, images: torch.Tensor, generator: torch.Generator | None,
                    snr_db: float | None = None) -> torch.Tensor:
        """x' = D(demap(channel(map(Q(E(x)))))) on the differentiable path."""
        return self.receive(self.codec.encoder(images), images.shape[-2:], generator, snr_db)

    def receive(self, e: torch.Tensor, size: tuple[int, int], generator: torch.Generator | None,
                snr_db: float | None = None) -> torch.Tensor:
        """x' = D(demap(channel(map(Q(e))))) for encoder outputs ``e`` of images of ``size`` (H, W)."""
        with torch.autocast(self.device.type, enabled=False):  # the link's complex arithmetic stays in float32
            soft_bits = transmit_soft_bits(e.float(), self.link, generator, snr_db)
        return self.codec.decoder(soft_bits, *size)

    def training_loss(self, batch) -> torch.Tensor:
        images, labels, noise = batch
        x_hat = self.reconstruct(images, noise).float()
        mse = F.mse_loss(x_hat, images)
        loss_cfg = self.config["loss"]
        if loss_cfg["kind"] == "mse":
            return mse
        layer = loss_cfg["layer"]
        if loss_cfg["kind"] == "contrastive":
            # the representation: the layer's feature maps, max-pooled over positions as the classifier pools
            with torch.no_grad():
                positives = self.classifier.features(images, layer).amax(dim=(2, 3))
            anchors = self.classifier.features(x_hat, layer).amax(dim=(2, 3))
            return nt_xent(anchors.float(), positives.float(), loss_cfg["temperature"]) + loss_cfg["mse_weight"] * mse
        with torch.no_grad():
            features = self.classifier.features(images, layer)
        features_hat = self.classifier.features(x_hat, layer)
        weights = self.weights
        g = loss_cfg["gsw"]
        if weights is None and g["mode"] != "off":  # per-batch weights (one row per image)
            raw = gsw.raw_weights(self.classifier, images, labels, layer, g["mode"])
            weights = gsw.semantic_weights(raw, g["tau"], g["r"])
        if weights is None:
            weights = torch.ones(features.shape[1], device=features.device)
        return gsw.semantic_loss(features_hat.float(), features.float(), weights) + loss_cfg["mse_weight"] * mse

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """PSNR (mean of per-image PSNR), MSE and, with a classifier, accuracy at the training SNR.

        ``val_saturated``: the fraction of encoder outputs e within 0.01 of 0 or 1. The sigmoid passes
        (almost) no gradient there, so a value near 1 means the encoder has stopped learning (a collapse
        seen with too high a learning rate: PSNR then falls and does not recover).
        """
        self.codec.eval()
        noise = self.noise_generator(-2, stream=7)  # the same channel realisations after every epoch
        psnr_sum, mse_sum, correct, saturated = 0.0, 0.0, 0, 0.0
        for images, labels in self.val_set.iter_batches(self.config["eval_batch_size"]):
            x, labels = images.to(self.device).float() / 255, labels.to(self.device)
            e = self.codec.encoder(x)
            saturated += float(((e - 0.5).abs() > 0.49).float().mean(dim=1).sum())
            x_hat = self.receive(e, x.shape[-2:], noise).float().clamp(0, 1)
            mse = (x_hat - x).square().mean(dim=(1, 2, 3))
            mse_sum += float(mse.sum())
            psnr_sum += float((-10 * torch.log10(mse.clamp_min(1e-10))).sum())
            if self.classifier is not None:
                correct += int((self.classifier.predict(x_hat).argmax(1) == labels).sum())
        self.codec.train()
        n = len(self.val_set)
        metrics = {"val_psnr_db": psnr_sum / n, "val_mse": mse_sum / n, "val_saturated": saturated / n}
        if self.classifier is not None:
            metrics["val_acc"] = correct / n
        return {k: v for k, v in metrics.items() if math.isfinite(v)}

    def export(self, path: Path, metadata: dict) -> None:
        export_codec(self.codec, path, self.link.as_dict(), metadata)
