"""Image codecs of the separate source-channel coding (SSCC) baseline, as pure functions.

Codecs (``CODECS``), each with an integer quality range (``QUALITY_RANGES``, higher = more bits):

- ``jpeg``: baseline JPEG via Pillow (libjpeg), 4:2:0, standard Huffman tables, quality 1..95.
- ``webp``: lossy WebP (VP8) via Pillow (libwebp), method 4, quality 0..100.
- ``bpg``: HEVC intra coding in a HEIF container via pillow-heif's x265 encoder (4:2:0, quality
  0..100). BPG itself (Bellard's HEVC-intra format) is not on PyPI; HEIF carries the same kind of
  HEVC intra bitstream, and only its payload is counted (see below), so the container does not matter.
- ``avif``: AV1 intra coding via Pillow's AVIF plugin (libavif), 4:2:0, one thread, quality 0..100;
  present only when ``PIL.features.check('avif')`` is true.

Payload-only bitstreams: like a link with a negotiated codec configuration, the transmitter sends only
the image-dependent payload of the file; everything that depends only on (codec, quality, height,
width) -- headers, tables, container boxes, parameter sets -- is known to the receiver, which rebuilds it
by encoding a dummy image with the same configuration (``sdjscc_phy.codecs.bitstreams`` documents what
is assumed known per codec). ``encode`` checks that the rebuild is byte-exact.

Images are uint8 RGB numpy arrays of shape [H, W, 3]. Rates: ``bpp`` = bits / (H·W) pixels.
"""

from __future__ import annotations

import functools
import hashlib
import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, features

from sdjscc_phy.codecs import bitstreams
from sdjscc_phy.errors import ParameterError
from sdjscc_phy.lazy import lazy_import, require

# HEVC intra ('bpg') needs the optional package pillow-heif (pip extra [heif]); the other codecs do not.
pillow_heif = lazy_import("pillow_heif", extra="heif")


def _encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, "JPEG", quality=quality, subsampling=2, optimize=False,
                                        progressive=False)
    return buffer.getvalue()


def _encode_webp(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, "WEBP", quality=quality, method=4, lossless=False,
                                        exact=False)
    return buffer.getvalue()


def _encode_heif(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    pillow_heif.encode("RGB", (image.shape[1], image.shape[0]), np.ascontiguousarray(image).tobytes(),
                       buffer, quality=quality, chroma=420)
    return buffer.getvalue()


def _encode_avif(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, "AVIF", quality=quality, subsampling="4:2:0",
                                        max_threads=1)
    return buffer.getvalue()


def _decode_pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def _decode_heif(data: bytes) -> np.ndarray:
    heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
    return np.asarray(heif.to_pillow().convert("RGB"))


@dataclass(frozen=True)
class _Codec:
    encode_file: Callable[[np.ndarray, int], bytes]
    decode_file: Callable[[bytes], np.ndarray]
    split: Callable[[bytes], bytes]
    join: Callable[[bytes, bytes], bytes]
    qualities: tuple[int, int]


_CODECS = {
    "jpeg": _Codec(_encode_jpeg, _decode_pillow, bitstreams.split_jpeg, bitstreams.join_jpeg, (1, 95)),
    "webp": _Codec(_encode_webp, _decode_pillow, bitstreams.split_webp, bitstreams.join_webp, (0, 100)),
    "bpg": _Codec(_encode_heif, _decode_heif, bitstreams.split_heif, bitstreams.join_heif, (0, 100)),
}
if features.check("avif"):
    _CODECS["avif"] = _Codec(_encode_avif, _decode_pillow, bitstreams.split_avif, bitstreams.join_avif,
                             (0, 100))

CODECS: tuple[str, ...] = tuple(sorted(_CODECS))
QUALITY_RANGES: dict[str, tuple[int, int]] = {name: codec.qualities for name, codec in _CODECS.items()}


def require_codec(name: str) -> None:
    """Raise MissingExtraError now if codec ``name`` needs an optional package that is not installed
    (so a flowgraph fails at validation, not after its first batch)."""
    if name == "bpg":
        require("pillow_heif", extra="heif")


def _codec(name: str) -> _Codec:
    if name not in _CODECS:
        raise ParameterError(f"`codec` must be one of {CODECS}; got {name!r}")
    return _CODECS[name]


def _check_quality(codec: str, quality: int) -> int:
    low, high = QUALITY_RANGES[codec]
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not low <= quality <= high:
        raise ParameterError(f"`quality` of codec '{codec}' must be an integer in [{low}, {high}]; "
                             f"got {quality!r}")
    return int(quality)


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ParameterError(f"`image` must be a uint8 RGB array of shape [H, W, 3]; "
                             f"got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


@functools.lru_cache(maxsize=1024)
def _template(codec: str, quality: int, height: int, width: int) -> bytes:
    """The file the receiver generates for a configuration: a mid-grey dummy image coded with it."""
    dummy = np.full((height, width, 3), 128, dtype=np.uint8)
    return _CODECS[codec].encode_file(dummy, quality)


def encode(image: np.ndarray, codec: str, quality: int) -> tuple[bytes, bytes]:
    """Code ``image`` (uint8 [H, W, 3]); return ``(payload, full_file)``.

    ``payload`` is what the transmitter sends; ``full_file`` is the ordinary file the codec writes.
    """
    spec = _codec(codec)
    quality = _check_quality(codec, quality)
    image = _check_image(image)
    full_file = spec.encode_file(image, quality)
    payload = spec.split(full_file)
    if spec.join(payload, _template(codec, quality, *image.shape[:2])) != full_file:
        raise RuntimeError(f"{codec} quality {quality}: the payload does not rebuild the file byte-exactly")
    return payload, full_file


def rebuild_file(payload: bytes, codec: str, quality: int, height: int, width: int) -> bytes:
    """The full file the receiver rebuilds from ``payload`` and the known configuration."""
    spec = _codec(codec)
    return spec.join(bytes(payload), _template(codec, _check_quality(codec, quality), height, width))


def decode(payload: bytes, codec: str, quality: int, height: int, width: int) -> np.ndarray:
    """Decode a payload of ``encode`` to a uint8 [height, width, 3] image; raises on a corrupt payload."""
    image = _codec(codec).decode_file(rebuild_file(payload, codec, quality, height, width))
    if image.shape != (height, width, 3) or image.dtype != np.uint8:
        raise ValueError(f"decoded image has shape {image.shape}, dtype {image.dtype}; "
                         f"expected ({height}, {width}, 3) uint8")
    return image


def safe_decode(payload: bytes, codec: str, quality: int, height: int, width: int) -> np.ndarray | None:
    """``decode`` for payloads that crossed a noisy channel: None where decoding fails or gives an image
    of the wrong shape (the caller substitutes a fallback image and counts a decode failure)."""
    _codec(codec)
    _check_quality(codec, quality)
    try:
        return decode(payload, codec, quality, height, width)
    except Exception:  # any decoder failure on corrupted bits is a decode failure, not a crash
        return None


@dataclass(frozen=True)
class EncodeResult:
    """The rate-controlled coding of one image.

    ``payload_bits`` = 8 × payload bytes (what is transmitted); ``file_bits`` = 8 × full-file bytes.
    ``fits`` is False when even the lowest quality exceeds the budget; ``payload`` then holds the
    lowest-quality payload, and the SSCC transmitter sends nothing (the receiver outputs a fallback).
    """

    payload: bytes
    quality: int
    payload_bits: int
    file_bits: int
    fits: bool
    height: int
    width: int

    @property
    def payload_bpp(self) -> float:
        """Payload bits per pixel."""
        return self.payload_bits / (self.height * self.width)

    @property
    def file_bpp(self) -> float:
        """Full-file bits per pixel."""
        return self.file_bits / (self.height * self.width)


#: Memo of :func:`encode_to_budget` (a pure function): (image digest, shape, codec, max_bits) -> result.
#: Sweeps over channels and SNRs code every image once; an evaluation script may persist it
#: (pickle) to reuse codings across processes. Bounded: the oldest entry goes first.
ENCODE_CACHE: dict[tuple, "EncodeResult"] = {}
ENCODE_CACHE_MAX_ENTRIES = 100_000


def encode_to_budget(image: np.ndarray, codec: str, max_bits: int) -> EncodeResult:
    """Code ``image`` at the highest quality whose payload has at most ``max_bits`` bits.

    Binary search over the integer quality range, keeping "lowest known to fit" and "lowest known not
    to fit" ends; payload size is not strictly monotonic in quality, so the result is the largest
    quality q that fits with q + 1 not fitting (not necessarily the global maximum). Results are
    memoised in ``ENCODE_CACHE``.
    """
    spec = _codec(codec)
    image = _check_image(image)
    if isinstance(max_bits, bool) or not isinstance(max_bits, (int, np.integer)) or max_bits < 0:
        raise ParameterError(f"`max_bits` must be a non-negative integer; got {max_bits!r}")
    key = (hashlib.blake2b(image.tobytes(), digest_size=16).digest(), image.shape, codec, int(max_bits))
    if key not in ENCODE_CACHE:
        if len(ENCODE_CACHE) >= ENCODE_CACHE_MAX_ENTRIES:
            del ENCODE_CACHE[next(iter(ENCODE_CACHE))]
        ENCODE_CACHE[key] = _search_budget(image, codec, int(max_bits), *spec.qualities)
    return ENCODE_CACHE[key]


def _search_budget(image: np.ndarray, codec: str, max_bits: int, low: int, high: int) -> EncodeResult:
    def result(quality: int) -> EncodeResult:
        payload, full_file = encode(image, codec, quality)
        bits = 8 * len(payload)
        return EncodeResult(payload, quality, bits, 8 * len(full_file), bits <= max_bits, *image.shape[:2])

    best = result(low)
    if not best.fits:
        return best
    top = result(high)
    if top.fits:
        return top
    while high - low > 1:  # invariant: low fits, high does not
        middle = result((low + high) // 2)
        if middle.fits:
            low, best = middle.quality, middle
        else:
            high = middle.quality
    return best
