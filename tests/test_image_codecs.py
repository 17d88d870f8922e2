"""Specification of the SSCC source codecs: payload-only bitstreams, rate control, robust decoding."""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from sdjscc_phy.codecs import CODECS, QUALITY_RANGES, decode, encode, encode_to_budget, safe_decode
from sdjscc_phy.codecs.image_codecs import _CODECS
from sdjscc_phy.data.splits import BUILTIN_SAMPLE_ZIP
from sdjscc_phy.errors import ParameterError

BUDGET_BPP = 0.25
LOWEST_PAYLOAD_BPP = {"jpeg": (0.05, 0.5), "webp": (0.2, 1.0), "bpg": (0.05, 0.5), "avif": (0.1, 1.0)}


@pytest.fixture(scope="module")
def images():
    """Four real 32x32 CIFAR-10 images from the builtin sample."""
    with zipfile.ZipFile(BUILTIN_SAMPLE_ZIP) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))[::250]
        return [np.asarray(Image.open(io.BytesIO(archive.read(n))).convert("RGB")) for n in names]


def test_the_lossy_codecs_are_available():
    assert {"jpeg", "webp", "bpg"} <= set(CODECS)


@pytest.mark.parametrize("codec", CODECS)
def test_payload_rebuild_decodes_like_the_full_file(codec, images):
    low, high = QUALITY_RANGES[codec]
    for image, quality in zip(images, (low, (low + high) // 2, high, low + 1)):
        payload, full_file = encode(image, codec, quality)
        assert len(payload) < len(full_file)
        from_payload = decode(payload, codec, quality, 32, 32)
        from_file = _CODECS[codec].decode_file(full_file)
        assert from_payload.shape == (32, 32, 3) and from_payload.dtype == np.uint8
        np.testing.assert_array_equal(from_payload, from_file)


@pytest.mark.parametrize("codec", CODECS)
def test_rate_control_takes_the_largest_quality_that_fits(codec, images):
    high = QUALITY_RANGES[codec][1]
    max_bits = 8 * len(encode(images[0], codec, QUALITY_RANGES[codec][0])[0]) + 200
    result = encode_to_budget(images[0], codec, max_bits)
    assert result.fits and result.payload_bits <= max_bits
    assert result.payload_bits == 8 * len(result.payload) and result.file_bits > result.payload_bits
    assert result.payload == encode(images[0], codec, result.quality)[0]
    if result.quality < high:
        assert 8 * len(encode(images[0], codec, result.quality + 1)[0]) > max_bits
    assert result.payload_bpp == result.payload_bits / (32 * 32)


@pytest.mark.parametrize("codec", CODECS)
def test_an_impossible_budget_returns_the_lowest_quality_marked_unfit(codec, images):
    result = encode_to_budget(images[0], codec, 8)
    assert not result.fits and result.quality == QUALITY_RANGES[codec][0]
    assert result.payload == encode(images[0], codec, result.quality)[0]


@pytest.mark.parametrize("codec", CODECS)
def test_payload_bpp_at_the_lowest_quality_is_sane(codec, images):
    quality = QUALITY_RANGES[codec][0]
    bpps = [8 * len(encode(image, codec, quality)[0]) / (32 * 32) for image in images]
    print(codec, "lowest-quality payload bpp:", np.round(bpps, 3))
    low, high = LOWEST_PAYLOAD_BPP[codec]
    assert all(low <= bpp <= high for bpp in bpps)


@pytest.mark.parametrize("codec", CODECS)
def test_corrupted_payloads_never_crash_the_decoder(codec, images):
    rng = np.random.default_rng(0)
    quality = QUALITY_RANGES[codec][0]
    payload, _ = encode(images[1], codec, quality)
    corrupted = [b"", payload[: len(payload) // 2], payload + b"\xff" * 7]
    for _ in range(40):
        bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))
        bits ^= (rng.random(bits.size) < 0.02).astype(np.uint8)
        corrupted.append(np.packbits(bits).tobytes())
    for received in corrupted:
        image = safe_decode(received, codec, quality, 32, 32)
        assert image is None or (image.shape == (32, 32, 3) and image.dtype == np.uint8)


def test_unknown_codec_is_a_parameter_error(images):
    for call in (lambda: encode(images[0], "jpeg2000", 10), lambda: encode_to_budget(images[0], "h266", 256),
                 lambda: safe_decode(b"", "png", 1, 32, 32)):
        with pytest.raises(ParameterError) as error:
            call()
        assert "\n" not in str(error.value) and "must be one of" in str(error.value)


def test_out_of_range_quality_is_a_parameter_error(images):
    with pytest.raises(ParameterError, match="quality"):
        encode(images[0], "jpeg", 0)
