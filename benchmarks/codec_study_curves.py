"""Validation PSNR after each epoch of the codec study's variants, as one CSV that ``jsccflow plot`` reads.

Reads ``<runs>/<variant>/deepjscc/log.csv`` (the trainer's log of each ``jsccflow train ... --stage deepjscc``
run; docs/training.md, "A stronger codec") and adds the shipped deepjscc_awgn's final validation PSNR (its
export's metadata, the same 1,000 validation images) as one point at its epoch count.

    python benchmarks/codec_study_curves.py runs/codec_study --out experiments/results/codec_study/epochs.csv
    jsccflow plot experiments/results/codec_study/epochs.csv --x epoch --y psnr_db -o docs/images/codec_study_psnr
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from sdjscc_phy.models.jscc import load_codec

VARIANTS = ("baseline", "gdn", "deep", "wide", "wide_gdn", "logit_scale")
COLUMNS = ("method", "epoch", "seed", "items", "psnr_db", "psnr_db_se", "epoch_time_s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="folder of the variants' training runs")
    parser.add_argument("--out", type=Path, required=True, help="CSV to write")
    parser.add_argument("--items", type=int, default=1000,
                        help="validation images per epoch (the deepjscc stage's validation options.max_items)")
    args = parser.parse_args(argv)
    logs = {v: args.runs / v / "deepjscc" / "log.csv" for v in VARIANTS}
    found = {v: p for v, p in logs.items() if p.is_file()}
    if not found:
        print(f"error: {args.runs}: no <variant>/deepjscc/log.csv of {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    rows = []
    for variant, path in found.items():
        with path.open() as f:
            rows += [{"method": variant, "epoch": int(r["epoch"]), "seed": 0, "items": args.items,
                      "psnr_db": r["val_psnr_db"],
                      "psnr_db_se": r["val_psnr_db_se"], "epoch_time_s": r["epoch_time_s"]} for r in csv.DictReader(f)]
    shipped = load_codec("deepjscc_awgn").metadata
    rows.append({"method": "shipped deepjscc_awgn", "epoch": shipped["recipe"]["epochs"], "seed": shipped["seed"],
                 "items": shipped["recipe"]["data"]["val_limit"], "psnr_db": shipped["metrics"]["val_psnr_db"], "psnr_db_se": "", "epoch_time_s": ""})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} rows ({', '.join(found)}) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
