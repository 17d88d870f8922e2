"""How saturated a digital codec's encoder is: the fraction of its outputs e = sigmoid(s z) within 0.01 of 0 or 1
(``val_saturated``, where the sigmoid passes no gradient to the encoder) and the median |s z| it reads, on
the first validation images of the CIFAR-10 split (docs/training.md, "A stronger codec").

    python benchmarks/encoder_saturation.py deepjscc_awgn runs/codec_study/baseline.pt --items 1000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from sdjscc_phy.data.datasets import read_image_folder
from sdjscc_phy.errors import JsccflowError
from sdjscc_phy.models.jscc import load_codec

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("codecs", nargs="+", help="shipped codec names or export paths (digital codecs)")
    parser.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "cifar10" / "train"),
                        help="CIFAR-10 image folder (the validation split is read from it)")
    parser.add_argument("--items", type=int, default=1000, help="validation images")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        images = read_image_folder(args.root, split="val").images[: args.items].float() / 255.0
        codecs = {name: load_codec(name) for name in args.codecs}
    except JsccflowError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, codec in codecs.items():
        if codec.config.analog:
            print(f"error: {name}: an analog codec has no sigmoid to saturate", file=sys.stderr)
            return 2
        captured = []  # z, the encoder's last convolution: in fp32, e = sigmoid(s z) rounds to 1 beyond z ~ 17
        hook = codec.encoder.net.register_forward_hook(lambda module, inputs, output: captured.append(output))
        with torch.inference_mode():
            e = codec.encoder(images)
        hook.remove()
        logits = codec.encoder.logit_scale * captured[0]  # what the sigmoid reads
        saturated = ((e < 0.01) | (e > 0.99)).double().mean().item()
        print(f"{name}: val_saturated {saturated:.3f}, median |s z| {logits.abs().median().item():.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
