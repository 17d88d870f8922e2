"""How much class information a codec's transmitted bits carry: a small CNN trained on the hard bits
(e > 0.5, eq. 14) of the training images, tested on the held-out validation split, noise-free.

SD-JSCC's decoder + frozen classifier can only recover what the bits hold; the probe estimates how much
that is. It is not a strict bound (a stronger probe could read more), but a receiver far above the
probe's accuracy on clean bits would be surprising.
The probe sees the bits as the code's C x H/4 x W/4 grid (bit-flip augmentation 5 %, Adam, 12 epochs).

    python benchmarks/code_probe.py --methods deepjscc_awgn sdjscc_awgn

Prints a table and, as the last line, one JSON object; writes it to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from sdjscc_phy.data.datasets import load_dataset
from sdjscc_phy.data.splits import CIFAR10_VAL_SPLIT
from sdjscc_phy.errors import JsccflowError
from sdjscc_phy.io.results import write_json_atomic
from sdjscc_phy.models.jscc import DOWNSAMPLING, load_codec

REPO = Path(__file__).resolve().parents[1]
SHARED_TRAIN = REPO.parent / "shared" / "data" / "cifar10" / "train"


@torch.no_grad()
def hard_bits(codec, dataset, batch_size: int = 1000) -> torch.Tensor:
    """The codec's bits of every image, [N, C, H/4, W/4] in {0, 1}."""
    h, w = dataset.image_shape[-2:]
    chunks = [(codec.encoder(x.float() / 255) > 0.5).float() for x, _ in dataset.iter_batches(batch_size)]
    return torch.cat(chunks).reshape(len(dataset), -1, h // DOWNSAMPLING, w // DOWNSAMPLING)


def probe_network(code_channels: int, num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(code_channels, 128, 3, padding=1), nn.ReLU(), nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Conv2d(128, 256, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        nn.Dropout(0.3), nn.Linear(256, num_classes),
    )


def probe(bits_train, labels_train, bits_val, labels_val, epochs: int, seed: int) -> float:
    """Validation accuracy of the probe after ``epochs`` (bits mapped to ±1)."""
    torch.manual_seed(seed)
    net = probe_network(bits_train.shape[1], int(labels_train.max()) + 1)
    optimizer = torch.optim.Adam(net.parameters(), 1e-3, weight_decay=1e-4)
    for _ in tqdm(range(epochs), desc="probe", leave=False):
        net.train()
        for idx in torch.randperm(len(bits_train)).split(256):
            b = bits_train[idx]
            b = torch.where(torch.rand_like(b) < 0.05, 1 - b, b)
            loss = F.cross_entropy(net(2 * b - 1), labels_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        return float((net(2 * bits_val - 1).argmax(1) == labels_val).float().mean())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["deepjscc_awgn", "sdjscc_awgn"],
                        help="shipped codec names or LABEL=CHECKPOINT_PATH")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "results" / "code_probe.json")
    args = parser.parse_args(argv)
    try:  # bad input: one line on stderr, exit code 2 (as the jsccflow CLI), before any long work
        codecs = {label: load_codec(checkpoint) for label, checkpoint in
                  (m.split("=", 1) if "=" in m else (m, m) for m in args.methods)}
        train = load_dataset("imagefolder", SHARED_TRAIN, "train", split_file=CIFAR10_VAL_SPLIT)
        val = load_dataset("imagefolder", SHARED_TRAIN, "val", split_file=CIFAR10_VAL_SPLIT)
    except JsccflowError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    results = {}
    for label, codec in codecs.items():
        results[label] = probe(hard_bits(codec, train), train.labels, hard_bits(codec, val), val.labels,
                               args.epochs, args.seed)
    print(f"{'codec':<24} probe accuracy on clean bits ({len(val)} validation images)")
    for label, accuracy in results.items():
        print(f"{label:<24} {100 * accuracy:6.2f} %")
    summary = {"epochs": args.epochs, "images": len(val), "accuracy": results}
    write_json_atomic(args.out, summary)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
