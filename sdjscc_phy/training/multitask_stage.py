"""Stage kind ``multitask``: multi-task JSCC (image recovery + feature-space classification, optional gate).

The model and the design choices are described in :mod:`sdjscc_phy.models.multitask`. Per batch, each
image gets its own SNR drawn uniformly from ``snr_range_db`` (Es/N0 per complex symbol, dB), so one model
covers the range. Loss = ``mse_weight``·MSE + ``mcr2_weight``·(−ΔR) + ``rate_weight``·(fraction of code
channels sent); the last term only when ``model.gated``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from sdjscc_phy.errors import JsccflowError, RecipeError
from sdjscc_phy.models.jscc import bpp_for_bandwidth_ratio, code_channels_for_bpp, load_codec
from sdjscc_phy.models.multitask import MultitaskConfig, MultitaskJscc, export_multitask
from sdjscc_phy.phy.link import LinkConfig, transmit_soft_bits
from sdjscc_phy.training.data import DATA_DEFAULTS, load_train_val
from sdjscc_phy.training.jscc_stage import JsccStage
from sdjscc_phy.training.losses import mcr2
from sdjscc_phy.training.stages import register_stage


@register_stage("multitask")
class MultitaskStage(JsccStage):
    """Trains a :class:`~sdjscc_phy.models.multitask.MultitaskJscc` over ``link`` at SNRs in ``snr_range_db``.

    Recipe keys (besides the common ones): ``data``, ``augment`` (as ``jscc``); ``model`` (``bpp`` or
    ``bandwidth_ratio``, ``width``, ``num_res_blocks``, ``feature_dim``, ``head_width``, ``subspace_dim``,
    ``gated``, ``gate_hidden``); ``link`` (as ``jscc``; its ``snr_db`` is unused in training); ``snr_range_db``
    ([low, high] dB); ``init_from`` (a ``jscc`` codec export for the encoder/decoder, or a ``multitask``
    export for the whole model); ``loss`` (``mse_weight``, ``mcr2_weight`` = λ, ``eps`` = ε of MCR²,
    ``rate_weight``); ``eval_snr_db`` (validation SNRs); ``stats_images`` (training images whose features
    fit the class subspaces before every evaluation and the export).
    """

    DEFAULTS = {
        "data": DATA_DEFAULTS,
        "model": {"bpp": 0.25, "bandwidth_ratio": None, "width": 64, "num_res_blocks": 1, "feature_dim": 32,
                  "head_width": 64, "subspace_dim": 4, "gated": False, "gate_hidden": 16},
        "link": {"constellation": "qam16", "channel": "awgn", "snr_db": 10.0, "coherence": "block", "csi": True,
                 "demap_method": "app"},
        "snr_range_db": [0.0, 20.0],
        "init_from": None,
        "loss": {"mse_weight": 1.0, "mcr2_weight": 0.01, "eps": 0.5, "rate_weight": 0.0},
        "augment": {"flip": True},
        "eval_snr_db": [0.0, 10.0, 20.0],
        "stats_images": 5000,
        "eval_batch_size": 500,
    }
    PATH_KEYS = ("data.root", "data.split_file", "init_from")
    MONITOR = "val_acc"

    def __init__(self, config: dict, seed: int, device: torch.device | str = "cpu"):
        super(JsccStage, self).__init__(config, seed, device)

    def setup(self) -> None:
        where = f"recipe: stage '{self.name}'"
        cfg = self.config
        low_high = cfg["snr_range_db"]
        if not (isinstance(low_high, list) and len(low_high) == 2 and float(low_high[0]) <= float(low_high[1])):
            raise RecipeError(f"{where}: snr_range_db must be [low, high] with low <= high; got {low_high!r}")
        try:
            self.link = LinkConfig(**cfg["link"])
            model = cfg["model"]
            if model["bandwidth_ratio"] is not None:
                model["bpp"] = bpp_for_bandwidth_ratio(model["bandwidth_ratio"], self.link.num_bits_per_symbol)
            code_channels = code_channels_for_bpp(model["bpp"])
        except (JsccflowError, TypeError) as exc:
            raise RecipeError(f"{where}: {exc}") from None
        if 16 % self.link.num_bits_per_symbol:  # a channel's bits (h·w = 16 per 4x4 block) must fill symbols
            raise RecipeError(f"{where}: {self.link.constellation} symbols do not tile one code channel")
        self.train_set, self.val_set = load_train_val(self)
        sizes = {k: v for k, v in model.items() if k not in ("bpp", "bandwidth_ratio")}
        self.model = MultitaskJscc(MultitaskConfig(code_channels=code_channels,
                                                   num_classes=len(self.train_set.class_names), **sizes))
        if cfg["init_from"]:
            self._init_from(cfg["init_from"], where)
        self.model.to(self.device)
        self.classifier = None

    def _init_from(self, path: str, where: str) -> None:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") == "jsccflow-multitask":  # the whole model (e.g. the ungated one)
            state = {k: v.float() for k, v in payload["state_dict"].items() if not k.startswith("gate.")}
            missing, unexpected = self.model.load_state_dict(state, strict=False)
            if unexpected or any(not k.startswith("gate.") for k in missing):
                raise RecipeError(f"{where}: init_from '{path}' does not match model ({unexpected or missing})")
            return
        codec = load_codec(path)
        try:
            self.model.encoder.load_state_dict(codec.encoder.state_dict())
            self.model.decoder.load_state_dict(codec.decoder.state_dict())
        except RuntimeError as exc:
            raise RecipeError(f"{where}: init_from '{path}' does not match model: {str(exc).splitlines()[0]}") from None

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        """``default``, and ``gate`` when gated (its ``lr`` is scaled by ``optimizer.group_scales.gate``:
        the gate's few weights must move by O(1) within one epoch to cross the threshold)."""
        if self.model.gate is None:
            return super().parameter_groups()
        gate = list(self.model.gate.parameters())
        ids = {id(p) for p in gate}
        return {"default": [p for p in self.model.parameters() if id(p) not in ids], "gate": gate}

    def _snr(self, count: int, generator: torch.Generator) -> torch.Tensor:
        low, high = (float(v) for v in self.config["snr_range_db"])
        return low + (high - low) * torch.rand(count, generator=generator, device=generator.device)

    def forward(self, images: torch.Tensor, snr_db: torch.Tensor, generator: torch.Generator | None,
                decode: bool = True) -> dict[str, torch.Tensor]:
        """Encoder -> gate -> link at per-image ``snr_db`` -> erasure -> decoder and feature head."""
        height, width = images.shape[-2:]
        e = self.model.encoder(images)
        channel_mask = self.model.channel_mask(snr_db, images.shape[0])
        with torch.autocast(self.device.type, enabled=False):
            p1 = transmit_soft_bits(e.float(), self.link, generator, snr_db.reshape(-1, 1).float())
        p1 = self.model.erase(p1, self.model.bit_mask(channel_mask.float(), p1.shape[1]))
        out = {"z": self.model.features(p1, height, width), "channel_mask": channel_mask}
        if decode:
            out["x_hat"] = self.model.decoder(p1, height, width)
        return out

    def training_loss(self, batch) -> torch.Tensor:
        images, labels, noise = batch
        snr_db = self._snr(images.shape[0], noise)
        out = self.forward(images, snr_db, noise)
        loss_cfg = self.config["loss"]
        loss = loss_cfg["mse_weight"] * F.mse_loss(out["x_hat"].float(), images)
        loss = loss - loss_cfg["mcr2_weight"] * mcr2(out["z"].float(), labels, loss_cfg["eps"])["delta_r"]
        if self.model.gate is not None:
            loss = loss + loss_cfg["rate_weight"] * out["channel_mask"].float().mean()
        return loss

    @torch.no_grad()
    def fit_class_statistics(self) -> None:
        """Class subspaces from ``stats_images`` training images received at SNRs from the training range."""
        count = min(self.config["stats_images"], len(self.train_set))
        pick = torch.randperm(len(self.train_set), generator=self.epoch_generator(-1, 4))[:count]
        noise = self.noise_generator(-1, 5)
        zs, labels = [], []
        for idx in pick.split(self.config["eval_batch_size"]):
            images = self.train_set.images[idx].to(self.device).float() / 255
            zs.append(self.forward(images, self._snr(len(idx), noise), noise, decode=False)["z"].float())
            labels.append(self.train_set.labels[idx].to(self.device))
        self.model.fit_class_statistics(torch.cat(zs), torch.cat(labels))

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Per SNR in ``eval_snr_db``: accuracy (nearest subspace), PSNR and symbols sent per image;
        ``val_acc`` / ``val_psnr_db`` are their means over those SNRs."""
        self.model.eval()
        self.fit_class_statistics()
        metrics: dict[str, float] = {}
        bits_per_channel = None
        for snr in self.config["eval_snr_db"]:
            noise = self.noise_generator(-2, stream=7)
            psnr_sum, correct, channels_sent = 0.0, 0, 0.0
            for images, labels in self.val_set.iter_batches(self.config["eval_batch_size"]):
                x, labels = images.to(self.device).float() / 255, labels.to(self.device)
                out = self.forward(x, torch.full((x.shape[0],), float(snr), device=self.device), noise)
                mse = (out["x_hat"].float().clamp(0, 1) - x).square().mean(dim=(1, 2, 3))
                psnr_sum += float((-10 * torch.log10(mse.clamp_min(1e-10))).sum())
                correct += int((self.model.logits(out["z"].float()).argmax(1) == labels).sum())
                channels_sent += float(out["channel_mask"].sum())
                bits_per_channel = x.shape[-2] * x.shape[-1] // 16
            n = len(self.val_set)
            metrics[f"val_acc_{snr:g}db"] = correct / n
            metrics[f"val_psnr_db_{snr:g}db"] = psnr_sum / n
            metrics[f"val_symbols_{snr:g}db"] = channels_sent / n * bits_per_channel / self.link.num_bits_per_symbol
        count = len(self.config["eval_snr_db"])
        metrics["val_acc"] = sum(metrics[f"val_acc_{s:g}db"] for s in self.config["eval_snr_db"]) / count
        metrics["val_psnr_db"] = sum(metrics[f"val_psnr_db_{s:g}db"] for s in self.config["eval_snr_db"]) / count
        self.model.train()
        return {k: v for k, v in metrics.items() if math.isfinite(v)}

    def export(self, path: Path, metadata: dict) -> None:
        self.model.eval()
        self.fit_class_statistics()
        self.model.train()
        link = {**self.link.as_dict(), "snr_range_db": [float(v) for v in self.config["snr_range_db"]]}
        export_multitask(self.model, path, link, metadata)
