"""Representation losses of the multi-task and contrastive JSCC systems (pure functions on tensors).

- :func:`coding_rate` / :func:`mcr2` — maximal coding rate reduction (Yu, Chan, You, Song, Ma, NeurIPS
  2020), the feature loss of multi-task JSCC (Lyu et al., arXiv 2304.02317).
- :func:`nt_xent` — the normalised-temperature cross entropy (InfoNCE of SimCLR, Chen et al. 2020), the
  loss of contrastive-learning JSCC (Tang et al., arXiv 2304.09438).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def coding_rate(z: torch.Tensor, eps: float) -> torch.Tensor:
    """R(Z) = ½ logdet(I + d/(n ε²) Zᵀ Z) of ``n`` feature rows ``z`` ``[n, d]`` (Yu et al., eq. 3).

    The features are rows here (Yu et al. write Z as d x n), so Z Zᵀ there is ``zᵀ z`` here.
    """
    n, d = z.shape
    gram = z.T.float() @ z.float()
    eye = torch.eye(d, dtype=gram.dtype, device=gram.device)
    return 0.5 * torch.logdet(eye + (d / (n * eps**2)) * gram)


def mcr2(z: torch.Tensor, labels: torch.Tensor, eps: float) -> dict[str, torch.Tensor]:
    """Coding rate reduction ΔR = R(Z) − Σ_j (n_j / n) R(Z_j) of features ``z`` ``[n, d]`` with ``labels``.

    Returns ``{"delta_r", "r", "r_c"}``; the loss to minimise is ``-delta_r``. Classes absent from the
    batch contribute nothing (n_j = 0).
    """
    n = z.shape[0]
    r = coding_rate(z, eps)
    r_c = z.new_zeros(())
    for label in labels.unique():
        members = z[labels == label]
        r_c = r_c + members.shape[0] / n * coding_rate(members, eps)
    return {"delta_r": r - r_c, "r": r, "r_c": r_c}


def nt_xent(anchors: torch.Tensor, positives: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent over a batch of ``N`` pairs (SimCLR): 2N views, each view's positive is its pair partner
    and its negatives are the 2N − 2 other views; cosine similarity divided by ``temperature``.

    ``anchors`` and ``positives`` are ``[N, D]`` (here: representations of the received reconstructions
    and of their originals). Returns the mean over the 2N views of
    −log(exp(s_ip/τ) / Σ_{k≠i} exp(s_ik/τ)).
    """
    n = anchors.shape[0]
    views = F.normalize(torch.cat([anchors, positives]).float(), dim=1)
    similarity = views @ views.T / temperature
    similarity = similarity.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=views.device), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(views.device)
    return F.cross_entropy(similarity, partner)
