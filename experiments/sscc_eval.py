"""Separate source-channel coding baselines on the held-out CIFAR-10 validation split: the cliff effect.

Runs flowgraphs/sscc_{codec}_ldpc_{channel}.yaml for each codec, rate and test SNR at equal channel uses
with the JSCC flowgraphs (0.25 bpp: 5G NR LDPC (192, 256); 0.5 bpp: (384, 512); 16-QAM) and writes one
row per point (accuracy with standard error, F1, PSNR, SSIM, bpp, source fit rate, LDPC BLER, decode
failures) to summary.json.

    python experiments/sscc_eval.py --codecs jpeg webp bpg --snr 0 5 10 15 20 --items 2000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sdjscc_phy.core.flowgraph import load_flowgraph
from sdjscc_phy.core.scheduler import run_flowgraph
from sdjscc_phy.io.results import write_json_atomic

REPO = Path(__file__).resolve().parents[1]
SHARED_TRAIN = REPO.parent / "shared" / "data" / "cifar10" / "train"
#: channel bits per 32x32 image -> (k, n) of the 5G NR code (rate 3/4)
RATES = {0.25: (192, 256), 0.5: (384, 512)}
KEYS = ("accuracy", "accuracy_se", "f1_macro", "psnr_db", "ssim", "bpp", "source_fit_rate", "ldpc_bler",
        "decode_failure_rate")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codecs", nargs="+", default=["jpeg", "webp", "bpg"])
    parser.add_argument("--channel", choices=("awgn", "rayleigh"), default="awgn")
    parser.add_argument("--bpp", nargs="+", type=float, default=[0.25, 0.5], choices=sorted(RATES))
    parser.add_argument("--snr", nargs="+", type=float, default=[0.0, 5.0, 10.0, 15.0, 20.0])
    parser.add_argument("--items", type=int, default=2000, help="validation images (a seeded random subset)")
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "results" / "sscc_eval")
    args = parser.parse_args(argv)
    rows = []
    for codec in args.codecs:
        for bpp in args.bpp:
            k, n = RATES[bpp]
            for snr_db in args.snr:
                overrides = [f"snr_db={snr_db}", f"options.max_items={args.items}", "options.batch_size=250",
                             "src.dataset=folder", f"src.root={SHARED_TRAIN}", "src.split=val", "src.shuffle=true",
                             f"senc.source_bits={k}", f"cenc.k={k}", f"cenc.n={n}", f"cdec.k={k}", f"cdec.n={n}"]
                path = REPO / "flowgraphs" / f"sscc_{codec}_ldpc_{args.channel}.yaml"
                metrics = run_flowgraph(load_flowgraph(str(path), overrides)).metrics
                rows.append({"codec": codec, "bpp_target": bpp, "k": k, "n": n, "snr_db": snr_db,
                             **{key: metrics.get(key) for key in KEYS}})
                print(json.dumps({key: rows[-1][key] for key in ("codec", "bpp_target", "snr_db", "accuracy",
                                                                  "psnr_db", "ldpc_bler", "source_fit_rate")}))
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(str(args.out / f"summary_{args.channel}.json"),
                      {"channel": args.channel, "items": args.items, "rows": rows})
    print(f"\n{'codec':6s} {'bpp':>5s} {'SNR':>4s} {'acc':>7s} {'±se':>5s} {'PSNR':>6s} {'SSIM':>6s} "
          f"{'fit':>5s} {'BLER':>5s} {'fail':>5s}")
    for r in rows:
        print(f"{r['codec']:6s} {r['bpp']:5.3f} {r['snr_db']:4.0f} {100 * r['accuracy']:6.2f}% "
              f"{100 * r['accuracy_se']:5.2f} {r['psnr_db']:6.2f} {r['ssim']:6.3f} {r['source_fit_rate']:5.3f} "
              f"{r['ldpc_bler']:5.3f} {r['decode_failure_rate']:5.3f}")
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
