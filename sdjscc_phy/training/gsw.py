"""GSW: gradient-based semantic weights of the classifier's feature maps (paper eqs. 8-10).

For feature maps f_k (``[B, K, M, N]``) of a frozen classifier with class scores y^c (logits), the
paper's weight of map k is the gradient of y^c with respect to f_k, averaged over the M x N positions
and over the C classes (eq. 9), then ``W' = r * softmax(tau * W)`` (eq. 10). Modes:

- ``paper``: eq. 9 exactly, averaged over training images. Summing the gradient over *all* classes
  differentiates sum_c y^c; for a linear head trained with softmax cross-entropy that sum barely
  depends on the features (the logits' gradient sums to zero over classes), so W is a small residue.
- ``true_class`` / ``predicted_class``: Grad-CAM's alpha_k (the same spatial average) for the image's
  true or predicted class only, averaged over images (global) or kept per image (per-batch mode).
- ``magnitude``: the spatial average of |dy^c/df_k|, averaged over classes and images: how strongly
  map k moves any class score, whatever the sign.
- ``off``: all weights 1 (the "SD-JSCC w/o GSW" ablation).
"""

from __future__ import annotations

import torch

from sdjscc_phy.errors import RecipeError
from sdjscc_phy.models import GSW_MODES



def channel_gradients(classifier, images: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-class spatial mean of dy^c/df_k: ``[B, C, K]``; and the logits ``[B, C]``."""
    with torch.enable_grad():
        features = classifier.features(images, layer).detach().requires_grad_(True)
        logits = classifier._head(features, layer)
        grads = []
        for c in range(logits.shape[1]):
            (g,) = torch.autograd.grad(logits[:, c].sum(), features, retain_graph=c + 1 < logits.shape[1])
            grads.append(g.mean(dim=(2, 3)))  # eq. 8: average over the M x N positions
    return torch.stack(grads, dim=1), logits.detach()


def raw_weights(classifier, images: torch.Tensor, labels: torch.Tensor, layer: str, mode: str) -> torch.Tensor:
    """W before the softmax: ``[B, K]`` per image (mean over classes or the chosen class, eq. 9)."""
    grads, logits = channel_gradients(classifier, images, layer)
    if mode == "paper":
        return grads.mean(dim=1)
    if mode == "magnitude":
        return grads.abs().mean(dim=1)
    if mode in ("true_class", "predicted_class"):
        chosen = labels if mode == "true_class" else logits.argmax(dim=1)
        return grads[torch.arange(len(chosen)), chosen]
    raise RecipeError(f"gsw.mode must be one of {GSW_MODES}; got '{mode}'")


def semantic_weights(raw: torch.Tensor, tau: float, r: float) -> torch.Tensor:
    """Eq. 10: ``W' = r * softmax(tau * W)`` over the K feature maps (last dimension)."""
    return r * torch.softmax(tau * raw, dim=-1)


@torch.no_grad()
def mean_raw_weights(classifier, batches, layer: str, mode: str) -> torch.Tensor:
    """W ``[K]`` (eq. 9 for mode ``paper``) averaged over the given (images, labels) batches."""
    total, count = None, 0
    for images, labels in batches:
        w = raw_weights(classifier, images, labels, layer, mode)
        total = w.sum(0) if total is None else total + w.sum(0)
        count += w.shape[0]
    return total / count


def effective_maps(weights: torch.Tensor) -> float:
    """exp(entropy) of the weights normalised to sum 1: K for uniform weights, 1 for all on one map."""
    p = weights / weights.sum()
    return float(torch.exp(-(p * p.clamp_min(1e-30).log()).sum()))


def semantic_loss(features_hat: torch.Tensor, features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 13: (1/B) sum_b sum_k w'_k ||f'_k - f_k||^2; ``weights`` is ``[K]`` or per image ``[B, K]``."""
    per_map = (features_hat - features).square().sum(dim=(2, 3))  # [B, K]
    return (per_map * weights).sum(dim=1).mean()
