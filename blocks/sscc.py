"""Separate source-channel coding (SSCC) baseline: image codec (JPEG / WebP / BPG) + LDPC code.

Chain: ``image_codec_encoder`` -> ``ldpc_encoder`` -> mapper -> channel -> demapper -> ``ldpc_decoder``
-> ``image_codec_decoder``. Host path only (numpy / Numba / Pillow); one LDPC codeword per image.

Rate accounting. The codec's payload budget is ``source_bits`` per image (zero-padded to exactly
``source_bits``), which is the LDPC code's k; the channel carries n bits per image. The shipped
flowgraphs use the 5G NR (k=192, n=256) code, so an image costs 256 channel bits (0.25 bpp on 32x32,
64 16-QAM symbols: the JSCC flowgraphs' channel uses) and the codec gets 192 bits ("equal channel
uses", the deep-JSCC literature's fair comparison). The paper's "equal source bpp" accounting is
``source_bits`` = channel bits (e.g. 256) with an LDPC code of k = 256, which then needs n > 256
channel bits (more channel uses than the JSCC system).

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

import numpy as np
import torch

from sdjscc_phy.codecs import CODECS, encode_to_budget, safe_decode
from sdjscc_phy.core.block import Batch, BatchContext, Block
from sdjscc_phy.core.params import Param
from sdjscc_phy.core.ports import Port, Shape
from sdjscc_phy.errors import JsccflowError, PortError
from sdjscc_phy.phy.ldpc_codes import ALGORITHMS, SCHEDULES, Ieee80211nLdpcCode, LdpcDecoder, Nr5gLdpcCode

#: Fallback images of the receiver for images it cannot decode.
#: ``gray``: constant 0.5; ``cifar_mean``: the CIFAR-10 training-set per-channel mean (R, G, B).
FALLBACKS = {"gray": (0.5, 0.5, 0.5), "cifar_mean": (0.4914, 0.4822, 0.4465)}
LDPC_CODES = ("nr5g", "ieee80211n")

_CODEC = Param("codec", "str", "jpeg", choices=CODECS, doc="image codec (bpg = HEVC intra via HEIF)")
_PREFIX = Param("prefix", "str", "", doc="prepended to every result name (to tell two chains apart)")
_SIDE = "side information, assumed received error-free (not counted in bpp)"


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

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        channels, _, _ = input_shapes["image"]
        if isinstance(channels, int) and channels != 3:
            raise PortError(f"input port 'image': needs 3 (RGB) channels; got {channels}")
        return {"bits": (self.p.source_bits,), "num_bits": (), "quality": (), "fits": ()}

    def setup(self, ctx) -> None:
        self._items = self._fits = self._payload_bits = self._pixels = 0

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
        pre = self.p.prefix
        return {pre + "source_fit_rate": self._fits / self._items,
                pre + "source_payload_bpp": self._payload_bits / self._pixels}


@functools.lru_cache(maxsize=16)
def make_ldpc_code(code: str, k: int, n: int, num_bits_per_symbol: int | None):
    """The LDPC code a block's parameters name (cached: 5G NR construction goes through Sionna)."""
    if code == "nr5g":
        return Nr5gLdpcCode(k, n, num_bits_per_symbol=num_bits_per_symbol)
    built = Ieee80211nLdpcCode(n=n)
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
)


class _LdpcBlock(Block):
    def check_params(self) -> list[str]:
        try:
            self.code = make_ldpc_code(self.p.code, self.p.k, self.p.n, self.p.num_bits_per_symbol)
        except JsccflowError as err:
            return [f"parameters 'code', 'k', 'n': {err}"]
        return []


class LdpcEncoder(_LdpcBlock):
    """LDPC encoder: k information bits -> n codeword bits (one codeword per item)."""

    type_name = "ldpc_encoder"
    inputs = (Port("bits", "bits", ("K",), "information bits; K must equal the code's k"),)
    outputs = (Port("bits", "bits", ("N",), "transmitted codeword bits, N = n"),)
    params = _LDPC_PARAMS

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        (k,) = input_shapes["bits"]
        if isinstance(k, int) and k != self.code.k:
            raise PortError(f"input port 'bits': {k} bits per item but the LDPC code has k = {self.code.k} "
                            f"(set the source's bits per item to k)")
        return {"bits": (self.code.n,)}

    def process_host(self, inputs: Batch, ctx: BatchContext) -> Batch:
        coded = self.code.encode(_as_numpy_uint8_bits(inputs["bits"]))
        return {"bits": torch.from_numpy(np.ascontiguousarray(coded, dtype=np.uint8)).to(ctx.device)}


class LdpcDecoderBlock(_LdpcBlock):
    """Belief-propagation LDPC decoder: channel LLRs ln(P(1)/P(0)) [n] -> hard information bits [k], parity ok flag."""

    type_name = "ldpc_decoder"
    inputs = (Port("llr", "float32", ("N",), "channel LLRs ln(P(b=1)/P(b=0)) (Sionna's sign), N = n"),)
    outputs = (
        Port("bits", "bits", ("K",), "decided information bits, K = k"),
        Port("ok", "int64", (), "1 if the decided codeword satisfies every parity check"),
    )
    params = _LDPC_PARAMS + (
        Param("num_iter", "int", 20, low=0, doc="maximum BP iterations"),
        Param("algorithm", "str", "boxplus-phi", choices=ALGORITHMS, doc="check-node rule"),
        Param("schedule", "str", "layered", choices=SCHEDULES, doc="layered or flooding"),
        Param("early_stop", "bool", True, doc="stop a codeword once all checks are satisfied"),
        _PREFIX,
    )

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        (n,) = input_shapes["llr"]
        if isinstance(n, int) and n != self.code.n:
            raise PortError(f"input port 'llr': {n} LLRs per item but the LDPC code has n = {self.code.n}")
        return {"bits": (self.code.k,), "ok": ()}

    def setup(self, ctx) -> None:
        self._decoder = LdpcDecoder(self.code, self.p.num_iter, self.p.algorithm, self.p.schedule,
                                    self.p.early_stop)
        self._codewords = self._failures = self._iterations = 0

    def process_host(self, inputs: Batch, ctx: BatchContext) -> Batch:
        llr = np.ascontiguousarray(inputs["llr"].detach().cpu().numpy(), dtype=np.float32)
        result = self._decoder.decode(llr)
        self._codewords += result.ok.size
        self._failures += int((~result.ok).sum())
        self._iterations += int(result.iterations.sum())
        return {"bits": torch.from_numpy(result.bits).to(ctx.device),
                "ok": torch.from_numpy(result.ok.astype(np.int64)).to(ctx.device)}

    def results(self) -> dict[str, float]:
        if not getattr(self, "_codewords", 0):
            return {}
        pre = self.p.prefix
        # Detected failures (parity not satisfied); undetected errors need a BER against the sent bits.
        return {pre + "ldpc_bler": self._failures / self._codewords,
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
