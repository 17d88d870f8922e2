"""Pure metric functions: one batch in, one value per item out.

The stateful metrics in this package only accumulate what these functions return. Where torchmetrics
has the metric we call it; bit error rate, bits per pixel, the PSNR of a mean MSE and SSIM (whose border
handling must not move with torchmetrics' version) are ours.

Image arguments are ``(N, C, H, W)`` floating tensors with values in [0, 1] (docs/conventions.md); every
function takes the reference first and the reconstruction second, ``(image, image_hat)``.
"""

from __future__ import annotations

import math

import numpy as np

from sdjscc_phy.errors import DataError
from sdjscc_phy.lazy import lazy_import

torch = lazy_import("torch")

#: Per-image PSNR is capped here, so a perfect reconstruction (MSE = 0) reports 100 dB instead of inf
#: and a single perfect image cannot turn a dataset mean into inf. 100 dB is an MSE of 1e-10.
DEFAULT_MAX_PSNR_DB = 100.0

# SSIM as Wang et al. (2004) define it and scikit-image computes it (``structural_similarity`` with
# gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1): an 11-tap Gaussian window
# (radius int(3.5 sigma + 0.5) = 5), K1 = 0.01, K2 = 0.03, the SSIM map averaged over the *valid* region
# only (every window inside the image), then over channels. Computed here rather than by a library whose
# border handling changed between versions (torchmetrics >= 1.4.3 also averages mirrored-border windows).
SSIM_KERNEL_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
DATA_RANGE = 1.0


def as_tensor(value, name: str) -> torch.Tensor:
    """Return ``value`` (tensor, numpy array or number) as a detached tensor; DataError otherwise."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (np.ndarray, np.generic, int, float, bool)):
        return torch.as_tensor(value)
    raise DataError(f"`{name}` must be a tensor or numpy array; got {type(value).__name__}")


def check_image_pair(image, image_hat) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a reference/reconstruction pair and return both as float tensors of one dtype."""
    image, image_hat = as_tensor(image, "image"), as_tensor(image_hat, "image_hat")
    for name, x in (("image", image), ("image_hat", image_hat)):
        if not x.is_floating_point():
            raise DataError(f"`{name}` must be a floating tensor with values in [0, 1]; got dtype {x.dtype}")
        if x.ndim != 4:
            raise DataError(f"`{name}` must have shape (N, C, H, W); got {tuple(x.shape)}")
    if image.shape != image_hat.shape:
        raise DataError(
            f"`image` and `image_hat` must have the same shape; got {tuple(image.shape)} and {tuple(image_hat.shape)}"
        )
    for name, x in (("image", image), ("image_hat", image_hat)):
        if not x.numel():
            continue
        # One pass for both bounds; a NaN makes both NaN and fails the comparisons, so non-finite values fail too.
        low, high = (float(v) for v in torch.aminmax(x))
        if not (low >= 0 and high <= 1):
            raise DataError(
                f"`{name}` must have values in [0, 1] (clamp the decoder output); got range [{low:.4g}, {high:.4g}]"
            )
    dtype = torch.promote_types(torch.promote_types(image.dtype, image_hat.dtype), torch.float32)
    return image.to(dtype), image_hat.to(dtype)


def per_image_mse(image, image_hat) -> torch.Tensor:
    """Mean squared error of each image over its C·H·W values; shape ``(N,)``."""
    image, image_hat = check_image_pair(image, image_hat)
    return (image_hat - image).square().flatten(1).mean(dim=1)


def per_image_psnr_db(image, image_hat, max_db: float = DEFAULT_MAX_PSNR_DB) -> torch.Tensor:
    """PSNR in dB of each image (data range 1), capped at ``max_db``; shape ``(N,)``."""
    image, image_hat = check_image_pair(image, image_hat)
    # torchmetrics is imported on first use: its package import pulls in scipy.signal (seconds).
    from torchmetrics.functional.image import peak_signal_noise_ratio

    psnr = peak_signal_noise_ratio(image_hat, image, data_range=DATA_RANGE, reduction="none", dim=(1, 2, 3))
    return psnr.clamp(max=max_db)


def psnr_db_from_mse(mse: float, max_db: float = DEFAULT_MAX_PSNR_DB) -> float:
    """PSNR in dB (data range 1) of one MSE value, capped at ``max_db`` (also for MSE = 0)."""
    if mse <= 10.0 ** (-max_db / 10.0):
        return float(max_db)
    return -10.0 * math.log10(mse)


def per_image_ssim(image, image_hat) -> torch.Tensor:
    """SSIM of each image over its valid region (Gaussian window 11, σ = 1.5, data range 1, mean over
    channels; see the constants above); shape ``(N,)``, in the images' dtype."""
    image, image_hat = check_image_pair(image, image_hat)
    if min(image.shape[-2:]) < SSIM_KERNEL_SIZE:
        raise DataError(
            f"SSIM needs images of at least {SSIM_KERNEL_SIZE}x{SSIM_KERNEL_SIZE} pixels; "
            f"got {image.shape[-2]}x{image.shape[-1]}"
        )
    n, c, h, w = image.shape
    # float64: the variances are differences of close second moments (scikit-image works in float64 too).
    x = image.to(torch.float64).reshape(n * c, h, w)
    y = image_hat.to(torch.float64).reshape(n * c, h, w)
    # One separable valid-mode blur of the five moment images at once, as two matrix products with banded
    # Gaussian matrices (rows = window positions): float64 BLAS is ~10x faster than float64 conv2d here.
    moments = torch.cat([x, y, x * x, y * y, x * y])
    blurred = _valid_blur_matrix(h, x.device) @ moments @ _valid_blur_matrix(w, x.device).T
    mu_x, mu_y, xx, yy, xy = blurred.split(n * c)
    var_x, var_y, cov = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.reshape(n, c, -1).mean(dim=2).mean(dim=1).to(image.dtype)


def _valid_blur_matrix(size: int, device) -> torch.Tensor:
    """``[size - 10, size]`` float64 matrix whose row i holds the normalised 11-tap Gaussian (σ = 1.5) at
    columns i..i+10: multiplying a signal by it is the valid-mode blur of SSIM's window."""
    radius = (SSIM_KERNEL_SIZE - 1) // 2
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    g = torch.exp(-(taps**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    rows = size - 2 * radius
    matrix = torch.zeros(rows, size, dtype=torch.float64, device=device)
    for k in range(SSIM_KERNEL_SIZE):
        matrix.diagonal(k)[:] = g[k]
    return matrix


def per_item_ber(bits, bits_hat) -> torch.Tensor:
    """Bit error rate of each item: hard bits ``(N, ...)`` of 0/1 (bool, integer or float); shape ``(N,)``."""
    bits, bits_hat = as_tensor(bits, "bits"), as_tensor(bits_hat, "bits_hat")
    if bits.shape != bits_hat.shape:
        raise DataError(
            f"`bits` and `bits_hat` must have the same shape; got {tuple(bits.shape)} and {tuple(bits_hat.shape)}"
        )
    if bits.ndim < 2 or bits[0].numel() == 0:
        raise DataError(f"`bits` must have shape (N, num_bits, ...) with num_bits > 0; got {tuple(bits.shape)}")
    if bits.dtype == bits_hat.dtype == torch.uint8 and bits.device.type == "cpu":
        # The host path's uint8 bits: numpy's uint8 max and xor-sum are 3-20x faster than torch's here.
        a, b = bits.flatten(1).numpy(), bits_hat.flatten(1).numpy()
        for name, x in (("bits", a), ("bits_hat", b)):
            if x.max() > 1:
                raise DataError(f"`{name}` must hold hard bits 0/1 (make hard decisions on LLRs first)")
        return torch.from_numpy(np.bitwise_xor(a, b).sum(axis=1, dtype=np.int64) / a.shape[1])
    for name, x in (("bits", bits), ("bits_hat", bits_hat)):
        if x.is_complex() or not bool(((x == 0) | (x == 1)).all()):
            raise DataError(f"`{name}` must hold hard bits 0/1 (make hard decisions on LLRs first)")
    return (bits != bits_hat).flatten(1).sum(dim=1, dtype=torch.int64).to(torch.float64) / bits[0].numel()


def bits_per_pixel(num_bits, height: int, width: int, num_images: int) -> torch.Tensor:
    """Transmitted bits per source pixel, ``num_bits / (height·width)``, for each image; shape ``(N,)``.

    ``num_bits`` is one count for every image or one count per image, shape ``(N,)``.
    """
    num_bits = as_tensor(num_bits, "num_bits").to(torch.float64)
    if num_bits.ndim == 0:
        num_bits = num_bits.expand(num_images)
    if num_bits.shape != (num_images,):
        raise DataError(f"`num_bits` must be a scalar or have shape ({num_images},); got {tuple(num_bits.shape)}")
    if not bool((num_bits >= 0).all()):
        raise DataError("`num_bits` must be >= 0")
    return num_bits / (height * width)
