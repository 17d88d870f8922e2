"""What a multi-task codec loses when one code channel is not sent, at each SNR: accuracy and PSNR with
every channel, and with each channel erased (P(b=1) = 0.5 at the receiver, as the gate erases it).

A gate trained with a rate penalty drops a channel where the loss it costs is below the penalty; this
shows how that cost varies with the SNR (16-QAM, AWGN, the codec's own receiver, or --classifier).

    python benchmarks/erasure_cost.py --codec multitask_awgn --images 2000

Prints a table and, as the last line, one JSON object; writes it to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from sdjscc_phy.data.datasets import load_dataset
from sdjscc_phy.data.splits import CIFAR10_VAL_SPLIT
from sdjscc_phy.errors import JsccflowError
from sdjscc_phy.io.results import write_json_atomic
from sdjscc_phy.models.multitask import load_multitask
from sdjscc_phy.phy.channels import awgn
from sdjscc_phy.phy.mapping import bit_probabilities, demap_llr, map_bits

REPO = Path(__file__).resolve().parents[1]
SHARED_TRAIN = REPO.parent / "shared" / "data" / "cifar10" / "train"
BITS_PER_SYMBOL = 4  # 16-QAM


@torch.no_grad()
def erasure_costs(model, images: torch.Tensor, labels: torch.Tensor, snrs: list[float], classifier: str | None,
                  seed: int) -> dict:
    """{snr: {"all" | "drop c": (accuracy, mean PSNR dB)}} of one noise draw per SNR."""
    height, width = images.shape[-2:]
    bits = (model.encoder(images) > 0.5).float()
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for snr in snrs:
        no = 10.0 ** (-snr / 10.0)
        p1 = bit_probabilities(demap_llr(awgn(map_bits(bits, BITS_PER_SYMBOL), no, generator), no, BITS_PER_SYMBOL))
        rows = {}
        for drop in (None, *range(model.config.code_channels)):
            channels = torch.ones(len(images), model.config.code_channels)
            if drop is not None:
                channels[:, drop] = 0.0
            received = model.erase(p1, model.bit_mask(channels, p1.shape[1]))
            accuracy = (model.scores(model.embed(received, height, width), classifier).argmax(1) == labels)
            mse = (model.decoder(received, height, width) - images).square().mean((1, 2, 3))
            rows["all" if drop is None else f"drop {drop}"] = (float(accuracy.float().mean()),
                                                               float((-10.0 * torch.log10(mse)).mean()))
        out[snr] = rows
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", default="multitask_awgn", help="shipped multi-task codec name or path")
    parser.add_argument("--classifier", choices=("subspace", "linear"), default=None,
                        help="receiver (default: the codec's own)")
    parser.add_argument("--snr-db", type=float, nargs="+", default=[0.0, 5.0, 10.0, 15.0, 20.0])
    parser.add_argument("--images", type=int, default=2000, help="validation images (a seeded random subset)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "results" / "erasure_cost.json")
    args = parser.parse_args(argv)
    try:  # bad input: one line on stderr, exit code 2 (as the jsccflow CLI), before any long work
        model = load_multitask(args.codec)
        if args.classifier == "linear" and model.linear is None:
            raise JsccflowError(f"--classifier linear: '{args.codec}' has no linear classifier")
        val = load_dataset("imagefolder", SHARED_TRAIN, "val", split_file=CIFAR10_VAL_SPLIT)
    except JsccflowError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    torch.manual_seed(args.seed)
    pick = torch.randperm(len(val))[: args.images]
    images, labels = next(iter(val.subset(pick).iter_batches(len(pick))))
    costs = erasure_costs(model, images.float() / 255, labels, args.snr_db, args.classifier, args.seed)
    columns = list(next(iter(costs.values())))
    print(f"{args.codec}, {len(pick)} validation images: accuracy % / PSNR dB")
    print(f"{'SNR dB':>7} " + " ".join(f"{c:>14}" for c in columns))
    for snr, rows in costs.items():
        print(f"{snr:>7g} " + " ".join(f"{100 * a:6.1f} / {p:5.2f}" for a, p in rows.values()))
    summary = {"codec": args.codec, "classifier": args.classifier, "images": len(pick), "seed": args.seed,
               "accuracy_psnr": {str(snr): rows for snr, rows in costs.items()}}
    write_json_atomic(args.out, summary)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
