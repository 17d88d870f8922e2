"""Separate source-channel coding (SSCC) baseline: image codec (JPEG / WebP / BPG) + LDPC code.

Chain: ``image_codec_encoder`` -> ``ldpc_encoder`` -> mapper -> channel -> demapper -> ``ldpc_decoder``
-> ``image_codec_decoder``. Host path only (numpy / Numba / Pillow).

Codewords. ``packing: none`` (default): one LDPC codeword per image, k = the image's payload budget.
``packing: batch``: the payloads of a batch's images are concatenated in order and cut into codewords
of k bits, each image carrying its share, payload x n/k, of the channel bits; a codeword that fails its
parity check rejects every image with bits in it. A batch must fill whole codewords (checked before
the run starts).

Rate accounting. The codec's payload budget is ``source_bits`` per image (zero-padded to exactly
``source_bits``); the channel carries ``source_bits`` x n/k bits per image. "Equal channel uses" (the
deep-JSCC literature's fair comparison, the shipped flowgraphs' default): an image costs the JSCC
flowgraphs' 256 channel bits (0.25 bpp on 32x32, 64 16-QAM symbols) and the codec gets 3/4 of them,
192 bits: per image with the 5G NR (k=192, n=256) code (``sscc_*_ldpc_*.yaml``), or packed into the
paper's IEEE 802.11n (k=1458, n=1944) codewords, 243 images = 32 codewords (``sscc_*_ldpc80211n_*.yaml``).
The paper's "equal source bpp": ``source_bits`` = 256 and a rate-3/4 code with n = 344 > 256 channel
bits, i.e. 4/3 more channel uses than the JSCC system (``sscc_bpg_ldpc_awgn_equal_bpp.yaml``).

Side information, assumed delivered error-free and NOT counted in bpp (about 8 + 7 + 1 bits per
image): the payload length ``num_bits``, the codec ``quality`` and the ``fits`` flag. They travel on
direct connections from the encoder to the decoder, bypassing the channel.

Images whose payload exceeds the budget even at the codec's lowest quality ("non-fitting") are not
transmitted usefully: the encoder sends all-zero bits with ``fits`` = 0 and the receiver outputs the
fallback image; they count as decode failures.

LLRs into ``ldpc_decoder`` are ln(P(b=1)/P(b=0)) (Sionna's sign), as the demapper produces them.
"""

from __future__ import annotations

import functools
import math
from typing import ClassVar

import numpy as np

from sdjscc_phy.codecs import CODECS, encode_to_budget, require_codec, safe_decode
from sdjscc_phy.core.block import Batch, BatchContext, Block
from sdjscc_phy.core import tags
from sdjscc_phy.core.params import Param
from sdjscc_phy.core.ports import Port, Shape
from sdjscc_phy.errors import JsccflowError, PortError
from sdjscc_phy.lazy import lazy_import
from sdjscc_phy.phy.choices import LDPC_ALGORITHMS, LDPC_SCHEDULES

torch = lazy_import("torch")
ldpc_codes = lazy_import("sdjscc_phy.phy.ldpc_codes")

#: Fallback images of the receiver for images it cannot decode.
#: ``gray``: constant 0.5; ``cifar_mean``: the CIFAR-10 training-set per-channel mean (R, G, B).
FALLBACKS = {"gray": (0.5, 0.5, 0.5), "cifar_mean": (0.4914, 0.4822, 0.4465)}
LDPC_CODES = ("nr5g", "ieee80211n")
PACKINGS = ("none", "batch")

_CODEC = Param("codec", "str", "jpeg", choices=CODECS, doc="image codec (bpg = HEVC intra via HEIF)")
_PREFIX = Param("prefix", "str", "", doc="prepended to every result name (to tell two chains apart)")
_SIDE = "side information, assumed received error-free (not counted in bpp)"


def _codec_problems(codec: str) -> list[str]:
    try:
        require_codec(codec)
    except JsccflowError as err:
        return [f"parameter 'codec': {err}"]
    return []


def _as_numpy_uint8_bits(bits: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(bits.detach().cpu().numpy()).astype(np.uint8, copy=False)


class ImageCodecEncoder(Block):
    """Rate-controlled image codec: highest quality whose payload fits ``source_bits`` bits; payload bits zero-padded."""

    type_name = "image_codec_encoder"
    inputs = (Port("image", "float32", (3, "H", "W"), "RGB image in [0, 1] (quantised to 8 bits)"),)
    outputs = (
        Port("bits", "bits", ("K",), "payload bits (MSB first), zero-padded to K = source_bits; all 0 if not fitting"),
        Port("num_bits", "int64", (), "payload length in bits (0 if not fitting); " + _SIDE),
        Port("quality", "int64", (), "codec quality used; " + _SIDE),
        Port("fits", "int64", (), "1 if the payload fits source_bits at some quality, else 0; " + _SIDE),
    )
    params = (
        _CODEC,
        Param("source_bits", "int", 192, low=8, unit="bits per image",
              doc="payload budget per image; set it to the LDPC code's k"),
        _PREFIX,
    )

    def check_params(self) -> list[str]:
        return _codec_problems(self.p.codec)

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        channels, _, _ = input_shapes["image"]
        if isinstance(channels, int) and channels != 3:
            raise PortError(f"input port 'image': needs 3 (RGB) channels; got {channels}")
        return {"bits": (self.p.source_bits,), "num_bits": (), "quality": (), "fits": ()}

    def setup(self, ctx) -> None:
        self._items = self._fits = self._payload_bits = self._file_bits = self._pixels = 0

    def process_host(self, inputs: Batch, ctx: BatchContext) -> Batch:
        images = inputs["image"].detach().cpu()
        images = (images.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        batch, budget = images.shape[0], self.p.source_bits
        bits = np.zeros((batch, budget), np.uint8)
        num_bits, quality, fits = (np.zeros(batch, np.int64) for _ in range(3))
        for i in range(batch):
            result = encode_to_budget(np.ascontiguousarray(images[i]), self.p.codec, budget)
            quality[i] = result.quality
            if result.fits:
                payload = np.unpackbits(np.frombuffer(result.payload, np.uint8))
                bits[i, :payload.size] = payload
                num_bits[i], fits[i] = payload.size, 1
                self._file_bits += result.file_bits
        self._items += batch
        self._fits += int(fits.sum())
        self._payload_bits += int(num_bits.sum())
        self._pixels += batch * images.shape[1] * images.shape[2]
        dev = ctx.device
        return {"bits": torch.from_numpy(bits).to(dev), "num_bits": torch.from_numpy(num_bits).to(dev),
                "quality": torch.from_numpy(quality).to(dev), "fits": torch.from_numpy(fits).to(dev)}

    def results(self) -> dict[str, float]:
        if not getattr(self, "_items", 0):
            return {}
        # Over all images (a non-fitting image sends 0 bits) and over the fitting images only.
        pre, pixels_per_image = self.p.prefix, self._pixels / self._items
        fitting_pixels = max(self._fits, 1) * pixels_per_image
        return {pre + "source_fit_rate": self._fits / self._items,
                pre + "source_payload_bpp": self._payload_bits / self._pixels,
                pre + "source_file_bpp": self._file_bits / self._pixels,
                pre + "source_payload_bpp_fitting": self._payload_bits / fitting_pixels,
                pre + "source_file_bpp_fitting": self._file_bits / fitting_pixels}


@functools.lru_cache(maxsize=16)
def make_ldpc_code(code: str, k: int, n: int, num_bits_per_symbol: int | None):
    """The LDPC code a block's parameters name (cached: 5G NR construction goes through Sionna)."""
    if code == "nr5g":
        return ldpc_codes.Nr5gLdpcCode(k, n, num_bits_per_symbol=num_bits_per_symbol)
    built = ldpc_codes.Ieee80211nLdpcCode(n=n)
    if built.k != k:
        raise PortError(f"the IEEE 802.11n (n={n}) code has k = {built.k}; got k = {k}")
    return built


_LDPC_PARAMS = (
    Param("code", "str", "nr5g", choices=LDPC_CODES,
          doc="nr5g: 3GPP 38.212 with rate matching; ieee80211n: n = 1944, R = 3/4 (k = 1458)"),
    Param("k", "int", 192, low=12, unit="bits", doc="information bits per codeword"),
    Param("n", "int", 256, low=12, unit="bits", doc="transmitted bits per codeword"),
    Param("num_bits_per_symbol", "int", None, low=1, nullable=True,
          doc="nr5g only: apply the 38.212 output interleaver for this modulation order"),
    Param("packing", "str", "none", choices=PACKINGS,
          doc="none: one codeword per item (item = k info / n channel bits); batch: the batch's items are "
              "concatenated in order and cut into codewords, an item of K info bits carries K*n/k channel "
              "bits, and every batch must fill whole codewords"),
)


class _LdpcBlock(Block):
    """What the LDPC encoder and decoder share: the code and the packing of items into codewords.

    With ``packing: batch`` the information bits of a batch of B items (K bits each) form one stream of
    B*K bits, cut into B*K/k codewords in item order; codeword c holds the information bits
    [c*k, (c+1)*k) of the stream, so item i lies in codewords floor(i*K/k) .. floor(((i+1)*K - 1)/k).
    The coded stream (B*K*n/k bits) is cut back into items of K*n/k channel bits. B*K must be a
    multiple of k: B a multiple of k / gcd(k, K), the items per group.
    """

    def check_params(self) -> list[str]:
        try:
            self.code = make_ldpc_code(self.p.code, self.p.k, self.p.n, self.p.num_bits_per_symbol)
        except JsccflowError as err:
            return [f"parameters 'code', 'k', 'n': {err}"]
        return []

    def packed_item_bits(self, port: str, size, per_item: int) -> tuple[int, int] | None:
        """(information bits, channel bits) per item given the size of ``port``'s items, where
        ``per_item`` is the code's k (encoder input) or n (decoder input); None if not known yet."""
        if not isinstance(size, int):
            return None
        if self.p.packing == "none":
            if size != per_item:
                raise PortError(f"input port '{port}': {size} per item but the LDPC code has "
                                f"{'k' if per_item == self.code.k else 'n'} = {per_item} (set packing: batch "
                                f"to pack several items into a codeword, or size the items to the code)")
            return self.code.k, self.code.n
        k, n = self.code.k, self.code.n
        other, this = (n, k) if per_item == k else (k, n)  # bits per item scale by other/this
        if size * other % this:
            raise PortError(f"input port '{port}': with packing: batch an item of {size} bits must map to a whole "
                            f"number of {'channel' if per_item == k else 'information'} bits, but {size}*{other}/"
                            f"{this} = {size * other / this:g}")
        info = size if per_item == k else size * k // n
        return info, info * n // k

    def check_batch(self, batch_size: int, info_bits: int) -> None:
        """PortError unless ``batch_size`` items of ``info_bits`` fill whole codewords (packing: batch)."""
        if self.p.packing == "none":
            return
        group = self.code.k // math.gcd(self.code.k, info_bits)
        if batch_size % group:
            raise PortError(
                "packing: batch needs every batch to fill whole codewords: a multiple of "
                f"{group} items ({group} x {info_bits} bits = {group * info_bits // self.code.k} codewords of "
                f"k = {self.code.k}); got a batch of {batch_size} items (set options.batch_size and "
                f"options.max_items to multiples of {group})")

    #: The input port whose items pack into codewords, and which of the code's lengths it carries.
    _packed_input: ClassVar[tuple[str, str]]

    def check_batch_sizes(self, batch_sizes: tuple[int, ...], input_shapes: dict[str, Shape]) -> None:
        port, length = self._packed_input
        sizes = self.packed_item_bits(port, input_shapes.get(port, (None,))[0], getattr(self.code, length))
        for batch_size in batch_sizes if sizes else ():
            self.check_batch(batch_size, sizes[0])


class LdpcEncoder(_LdpcBlock):
    """LDPC encoder: information bits -> codeword bits, one codeword per item or items packed into codewords."""

    type_name = "ldpc_encoder"
    inputs = (Port("bits", "bits", ("K",), "information bits; K = k (packing: none) or any K with K*n/k whole "
                                           "(packing: batch)"),)
    outputs = (Port("bits", "bits", ("N",), "transmitted codeword bits: N = n (packing: none) or the item's "
                                            "share K*n/k of the packed codewords (packing: batch)"),)
    params = _LDPC_PARAMS
    _packed_input = ("bits", "k")

    def propagate_tags(self, input_tags: dict[str, dict], input_shapes: dict[str, Shape]) -> dict[str, dict]:
        out = super().propagate_tags(input_tags, input_shapes)
        out["bits"][tags.CODE_RATE] = out["bits"].get(tags.CODE_RATE, 1.0) * self.code.k / self.code.n
        return out

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        (size,) = input_shapes["bits"]
        sizes = self.packed_item_bits("bits", size, self.code.k)
        if sizes is None and self.p.packing == "batch":
            raise PortError("input port 'bits': packing: batch needs a fixed number of bits per item")
        return {"bits": (sizes[1] if sizes else self.code.n,)}

    def setup(self, ctx) -> None:
        self.check_batch_sizes(ctx.batch_sizes, ctx.input_shapes)

    def process_host(self, inputs: Batch, ctx: BatchContext) -> Batch:
        bits = _as_numpy_uint8_bits(inputs["bits"])
        batch, size = bits.shape
        self.check_batch(batch, size)
        coded = self.code.encode(bits.reshape(-1, self.code.k))  # one row per codeword, items in order
        return {"bits": torch.from_numpy(np.ascontiguousarray(coded, dtype=np.uint8).reshape(batch, -1)).to(ctx.device)}


class LdpcDecoderBlock(_LdpcBlock):
    """Belief-propagation LDPC decoder: channel LLRs ln(P(1)/P(0)) -> hard information bits, parity ok flag per item."""

    type_name = "ldpc_decoder"
    inputs = (Port("llr", "float32", ("N",), "channel LLRs ln(P(b=1)/P(b=0)) (Sionna's sign): N = n "
                                             "(packing: none) or the item's share of the codewords (batch)"),)
    outputs = (
        Port("bits", "bits", ("K",), "decided information bits: K = k (packing: none) or N*k/n (packing: batch)"),
        Port("ok", "int64", (), "1 if every codeword holding bits of the item satisfies all its parity checks"),
    )
    params = _LDPC_PARAMS + (
        Param("num_iter", "int", 20, low=0, doc="maximum BP iterations"),
        Param("algorithm", "str", "boxplus-phi", choices=LDPC_ALGORITHMS, doc="check-node rule"),
        Param("schedule", "str", "layered", choices=LDPC_SCHEDULES, doc="layered or flooding"),
        Param("early_stop", "bool", True, doc="stop a codeword once all checks are satisfied"),
        _PREFIX,
    )
    _packed_input = ("llr", "n")

    def propagate_tags(self, input_tags: dict[str, dict], input_shapes: dict[str, Shape]) -> dict[str, dict]:
        out = super().propagate_tags(input_tags, input_shapes)
        rate = self.code.k / self.code.n
        for port_tags in out.values():  # decoded: this code's rate no longer applies
            outer = port_tags.pop(tags.CODE_RATE, rate) / rate
            if not math.isclose(outer, 1.0):
                port_tags[tags.CODE_RATE] = outer
        return out

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        (size,) = input_shapes["llr"]
        sizes = self.packed_item_bits("llr", size, self.code.n)
        if sizes is None and self.p.packing == "batch":
            raise PortError("input port 'llr': packing: batch needs a fixed number of LLRs per item")
        return {"bits": (sizes[0] if sizes else self.code.k,), "ok": ()}

    def setup(self, ctx) -> None:
        self.check_batch_sizes(ctx.batch_sizes, ctx.input_shapes)
        self._decoder = ldpc_codes.LdpcDecoder(self.code, self.p.num_iter, self.p.algorithm, self.p.schedule,
                                    self.p.early_stop)
        self._codewords = self._failures = self._iterations = self._items = self._failed_items = 0

    def process_host(self, inputs: Batch, ctx: BatchContext) -> Batch:
        llr = np.ascontiguousarray(inputs["llr"].detach().cpu().numpy(), dtype=np.float32)
        batch, size = llr.shape
        info_bits = size * self.code.k // self.code.n
        self.check_batch(batch, info_bits)
        result = self._decoder.decode(llr.reshape(-1, self.code.n))
        # An item is ok only if every codeword holding some of its bits satisfies its parity checks.
        failed_so_far = np.concatenate(([0], np.cumsum(~result.ok)))
        first = np.arange(batch) * info_bits // self.code.k
        last = (np.arange(1, batch + 1) * info_bits - 1) // self.code.k
        ok = failed_so_far[last + 1] == failed_so_far[first]
        self._codewords += result.ok.size
        self._failures += int((~result.ok).sum())
        self._iterations += int(result.iterations.sum())
        self._items += batch
        self._failed_items += int((~ok).sum())
        return {"bits": torch.from_numpy(np.ascontiguousarray(result.bits.reshape(batch, -1))).to(ctx.device),
                "ok": torch.from_numpy(ok.astype(np.int64)).to(ctx.device)}

    def results(self) -> dict[str, float]:
        if not getattr(self, "_codewords", 0):
            return {}
        pre = self.p.prefix
        # Detected failures (parity not satisfied); undetected errors need a BER against the sent bits.
        return {pre + "ldpc_bler": self._failures / self._codewords,
                pre + "ldpc_item_failure_rate": self._failed_items / self._items,
                pre + "ldpc_mean_iterations": self._iterations / self._codewords}


class ImageCodecDecoder(Block):
    """Receiver of the image codec: payload bits + side information -> image; fallback image where decoding fails."""

    type_name = "image_codec_decoder"
    inputs = (
        Port("bits", "bits", ("K",), "received payload bits (first num_bits are the payload)"),
        Port("num_bits", "int64", (), "payload length in bits; " + _SIDE),
        Port("quality", "int64", (), "codec quality; " + _SIDE),
        Port("fits", "int64", (), "0: nothing was sent, output the fallback; " + _SIDE),
        Port("ok", "int64", (), "optional channel-decoder parity flag: if connected, ok = 0 gives the "
                                "fallback without decoding", optional=True),
    )
    outputs = (Port("image", "float32", (3, "H", "W"), "decoded RGB image in [0, 1] (fallback on failure)"),)
    params = (
        _CODEC,
        Param("height", "int", 32, low=1, unit="pixels", doc="image height (known to the receiver)"),
        Param("width", "int", 32, low=1, unit="pixels", doc="image width (known to the receiver)"),
        Param("fallback", "str", "gray", choices=tuple(FALLBACKS),
              doc="image output on failure: gray = constant 0.5; cifar_mean = CIFAR-10 per-channel mean"),
        _PREFIX,
    )

    def check_params(self) -> list[str]:
        return _codec_problems(self.p.codec)

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        self.bind_inputs(input_shapes)
        return {"image": (3, self.p.height, self.p.width)}

    def setup(self, ctx) -> None:
        self._fallback = torch.tensor(FALLBACKS[self.p.fallback], dtype=torch.float32)[:, None, None].expand(
            3, self.p.height, self.p.width)
        self._items = self._nonfit = self._rejected = self._corrupt = 0

    def process_host(self, inputs: Batch, ctx: BatchContext) -> Batch:
        bits = _as_numpy_uint8_bits(inputs["bits"])
        num_bits = inputs["num_bits"].cpu().numpy()
        quality = inputs["quality"].cpu().numpy()
        fits = inputs["fits"].cpu().numpy()
        ok = inputs["ok"].cpu().numpy() if "ok" in inputs else np.ones_like(fits)
        batch, (height, width) = bits.shape[0], (self.p.height, self.p.width)
        out = self._fallback.expand(batch, 3, height, width).clone()
        for i in range(batch):
            if not fits[i]:
                self._nonfit += 1
                continue
            if not ok[i]:
                self._rejected += 1
                continue
            count = int(num_bits[i])
            if count % 8 or not 0 < count <= bits.shape[1]:
                self._corrupt += 1
                continue
            payload = np.packbits(bits[i, :count]).tobytes()
            image = safe_decode(payload, self.p.codec, int(quality[i]), height, width)
            if image is None:
                self._corrupt += 1
                continue
            out[i] = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255.0
        self._items += batch
        return {"image": out.to(ctx.device)}

    def results(self) -> dict[str, float]:
        if not getattr(self, "_items", 0):
            return {}
        pre, items = self.p.prefix, self._items
        return {pre + "decode_failure_rate": (self._nonfit + self._rejected + self._corrupt) / items,
                pre + "decode_nonfit_rate": self._nonfit / items,
                pre + "decode_rejected_rate": self._rejected / items,
                pre + "decode_corrupt_rate": self._corrupt / items}
