"""SD-JSCC vs deep JSCC (vs SD-JSCC w/o GSW) on the held-out CIFAR-10 validation split.

Runs flowgraphs/sdjscc_awgn.yaml (or _rayleigh) with each codec checkpoint at each test SNR and noise
seed over the 5,000 validation images, keeps per-image CSVs, and reports per method and SNR: accuracy
(mean over seeds, with the standard error over images), F1, PSNR, SSIM; and paired differences of
accuracy against the first method (same images, same noise seeds: per-image mean correctness over seeds,
difference, standard error over images). Differences under twice their standard error are reported as
"no significant difference".

    python experiments/sdjscc_eval.py --methods sdjscc_awgn deepjscc_awgn --snr 0 5 10 20 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np

from sdjscc_phy.core.flowgraph import load_flowgraph
from sdjscc_phy.core.scheduler import run_flowgraph
from sdjscc_phy.io.results import write_json_atomic

REPO = Path(__file__).resolve().parents[1]
SHARED_TRAIN = REPO.parent / "shared" / "data" / "cifar10" / "train"


def run_point(flowgraph: Path, method: str, checkpoint: str, snr_db: float, seed: int, out_dir: Path,
              max_items: int) -> dict:
    items_csv = out_dir / f"items_{method}_snr{snr_db:g}_seed{seed}.csv"
    overrides = [f"snr_db={snr_db}", f"options.seed={seed}", f"options.max_items={max_items}",
                 "options.batch_size=250", "src.dataset=folder", f"src.root={SHARED_TRAIN}", "src.split=val",
                 f"enc.checkpoint={checkpoint}", f"dec.checkpoint={checkpoint}", f"metrics.items_csv={items_csv}",
                 "metrics.overwrite=true"]
    result = run_flowgraph(load_flowgraph(str(flowgraph), overrides))
    return {"method": method, "checkpoint": checkpoint, "snr_db": snr_db, "seed": seed, "items": result.items,
            **result.metrics,
            "items_csv": items_csv.name}


def correctness(items_csv: Path) -> np.ndarray:
    with open(items_csv, newline="") as fh:
        return np.array([int(row["correct"]) for row in csv.DictReader(fh)], dtype=float)


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean and standard error over images of the per-image difference a - b."""
    d = a - b
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["sdjscc_awgn", "deepjscc_awgn"],
                        help="shipped codec names or LABEL=CHECKPOINT_PATH; the first is the reference")
    parser.add_argument("--channel", choices=("awgn", "rayleigh"), default="awgn")
    parser.add_argument("--snr", nargs="+", type=float, default=[0.0, 5.0, 10.0, 20.0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--max-items", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "results" / "sdjscc_eval")
    args = parser.parse_args(argv)
    out_dir = args.out / args.channel
    out_dir.mkdir(parents=True, exist_ok=True)
    flowgraph = REPO / "flowgraphs" / f"sdjscc_{args.channel}.yaml"

    checkpoints = dict(m.split("=", 1) if "=" in m else (m, m) for m in args.methods)
    args.methods = list(checkpoints)
    rows = []
    for snr_db in args.snr:
        for method, checkpoint in checkpoints.items():
            for seed in args.seeds:
                rows.append(run_point(flowgraph, method, checkpoint, snr_db, seed, out_dir, args.max_items))
                print(json.dumps({k: rows[-1][k] for k in ("method", "snr_db", "seed", "accuracy", "psnr_db")}))

    summary = []
    reference = args.methods[0]
    for snr_db in args.snr:
        per_method = {}
        for method in args.methods:
            runs = [r for r in rows if r["method"] == method and r["snr_db"] == snr_db]
            per_image = np.mean([correctness(out_dir / r["items_csv"]) for r in runs], axis=0)
            per_method[method] = per_image
            entry = {"method": method, "snr_db": snr_db, "seeds": len(runs), "images": len(per_image),
                     "accuracy": float(per_image.mean()),
                     "accuracy_se": float(per_image.std(ddof=1) / math.sqrt(len(per_image)))}
            for key in ("f1_macro", "psnr_db", "ssim", "bpp"):
                entry[key] = float(np.mean([r[key] for r in runs]))
            summary.append(entry)
        for method in args.methods[1:]:
            diff, se = paired(per_method[reference], per_method[method])
            verdict = "significant" if abs(diff) >= 2 * se else "no significant difference"
            summary.append({"method": f"{reference} - {method}", "snr_db": snr_db, "accuracy_diff": diff,
                            "accuracy_diff_se": se, "verdict": verdict})
    write_json_atomic(str(out_dir / "summary.json"), {"channel": args.channel, "runs": rows, "summary": summary})
    print(f"\n{'method':34s} {'SNR':>5s} {'acc':>8s} {'±se':>7s} {'F1':>6s} {'PSNR':>6s} {'SSIM':>6s}")
    for e in summary:
        if "accuracy" in e:
            print(f"{e['method']:34s} {e['snr_db']:5.0f} {100 * e['accuracy']:7.2f}% {100 * e['accuracy_se']:6.2f} "
                  f"{e['f1_macro']:6.3f} {e['psnr_db']:6.2f} {e['ssim']:6.3f}")
        else:
            print(f"{e['method']:34s} {e['snr_db']:5.0f} {100 * e['accuracy_diff']:+7.2f}% "
                  f"{100 * e['accuracy_diff_se']:6.2f}  {e['verdict']}")
    print(json.dumps({"summary": summary}))


if __name__ == "__main__":
    main()
