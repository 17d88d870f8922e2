"""Training-time augmentation of image batches (the image source applies it only in training mode)."""

from __future__ import annotations

from sdjscc_phy.lazy import lazy_import

torch = lazy_import("torch")
F = lazy_import("torch.nn.functional")

FLIP_MODES = ("none", "random", "alternate")


def random_translate_flip(
    images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int
) -> torch.Tensor:
    """Float ``[B, 3, H, W]`` images shifted by ``offsets - pad`` pixels (reflect padding) and mirrored where
    ``flips``. ``offsets``: int64 ``[B, 2]`` in ``0..2*pad`` (row, column); ``flips``: bool ``[B]``."""
    b, c, h, w = images.shape
    if pad:
        padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
        rows = (offsets[:, 0:1] + torch.arange(h, device=images.device))[:, None, :, None]
        cols = (offsets[:, 1:2] + torch.arange(w, device=images.device))[:, None, None, :]
        arange_b = torch.arange(b, device=images.device)[:, None, None, None]
        images = padded[arange_b, torch.arange(c, device=images.device)[None, :, None, None], rows, cols]
    return torch.where(flips[:, None, None, None], images.flip(-1), images)


def random_views(count: int, translate: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(mirror flags ``[count]``, a random half; offsets ``[count, 2]`` in ``0..2*translate``), drawn in that
    order on the generator's device: the arguments of :func:`random_translate_flip`."""
    flips = torch.rand(count, generator=generator, device=generator.device) < 0.5
    offsets = torch.randint(0, 2 * translate + 1, (count, 2), generator=generator, device=generator.device)
    return flips, offsets


def epoch_plan(count: int, epoch: int, flip: str, translate: int, generator: torch.Generator,
               alternate_start: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(mirror flags ``[count]``, offsets ``[count, 2]``) of one epoch for items ``0..count-1``.

    ``random`` mirrors a random half each epoch; ``alternate`` mirrors each image in every other epoch
    from a random start drawn once (``alternate_start``), as airbench does; ``none`` never mirrors.
    """
    flips, offsets = random_views(count, translate, generator)
    if flip == "alternate":
        flips = (torch.rand(count, generator=alternate_start) < 0.5) ^ bool(epoch % 2)
    elif flip == "none":
        flips = torch.zeros(count, dtype=torch.bool)
    return flips, offsets
