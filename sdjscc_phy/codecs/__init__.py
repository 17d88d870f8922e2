"""Image codecs (JPEG, WebP, HEVC-intra 'bpg', AVIF) with payload-only bitstreams and rate control."""

from sdjscc_phy.codecs.image_codecs import (CODECS, QUALITY_RANGES, EncodeResult, decode, encode,
                                            encode_to_budget, rebuild_file, require_codec, safe_decode)

__all__ = ["CODECS", "QUALITY_RANGES", "EncodeResult", "decode", "encode", "encode_to_budget",
           "rebuild_file", "require_codec", "safe_decode"]
