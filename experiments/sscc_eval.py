"""Separate source-channel coding baselines on the held-out CIFAR-10 validation split: the cliff effect.

One row per (codec, target bpp, LDPC code, accounting, channel, test SNR), with accuracy and its
standard error over images, F1, PSNR, SSIM, channel bpp, achieved source bpp (payload-only and full
file, over all images and over the fitting ones), source fit rate, LDPC BLER and decode failures.

Codes (16-QAM throughout):

- ``nr5g``: one 5G NR LDPC codeword per image, flowgraphs/sscc_{codec}_ldpc_{channel}.yaml.
- ``ieee80211n``: the paper's IEEE 802.11n code (n = 1944, k = 1458, rate 3/4), several images'
  bitstreams packed into each codeword (``packing: batch``), flowgraphs/sscc_{codec}_ldpc80211n_{channel}.yaml;
  243 images fill 32 codewords (0.25 bpp) or 64 (0.5 bpp), so a batch is 972 images and the run covers
  the largest multiple of 972 images not above ``--items`` (4,860 of the 5,000).

Accountings:

- ``equal_channel_uses`` (default, the deep-JSCC literature's): an image costs the JSCC flowgraphs'
  channel bits, 1024·bpp (0.25 bpp: 256 bits = 64 symbols); the codec gets 3/4 of them (192 bits).
- ``equal_source_bpp`` (the paper's): the codec gets 1024·bpp bits (256 at 0.25 bpp) and the rate-3/4
  code needs 4/3 as many channel bits, rounded up to whole 16-QAM symbols (n = 344 = 86 symbols; 5G NR
  only, since 341.33 channel bits per image cannot be cut per image from packed 802.11n codewords).

Source codings do not depend on the channel, so each image is coded once per (codec, budget)
(``ENCODE_CACHE``); ``--cache FILE`` keeps them across runs.

    python experiments/sscc_eval.py --channels awgn rayleigh --codes nr5g --bpp 0.25 0.5
    python experiments/sscc_eval.py --channels awgn rayleigh --codes ieee80211n --bpp 0.25
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
from pathlib import Path

from sdjscc_phy.codecs import image_codecs
from sdjscc_phy.core.flowgraph import load_flowgraph
from sdjscc_phy.core.scheduler import run_flowgraph
from sdjscc_phy.io.results import write_json_atomic

REPO = Path(__file__).resolve().parents[1]
SHARED_TRAIN = REPO.parent / "shared" / "data" / "cifar10" / "train"
PIXELS = 32 * 32
BITS_PER_SYMBOL = 4  # 16-QAM
KEYS = ("accuracy", "accuracy_se", "f1_macro", "psnr_db", "ssim", "bpp", "source_payload_bpp",
        "source_file_bpp", "source_payload_bpp_fitting", "source_file_bpp_fitting", "source_fit_rate",
        "ldpc_bler", "ldpc_item_failure_rate", "decode_failure_rate", "decode_nonfit_rate", "decode_rejected_rate")
IEEE80211N = (1458, 1944)


def link(code: str, accounting: str, bpp: float) -> dict:
    """Source budget, code (k, n), channel bits per image and batch size of one configuration."""
    budget = round(PIXELS * bpp)  # bits per image at the target rate
    if accounting == "equal_channel_uses":
        channel_bits, source_bits = budget, budget * 3 // 4
    else:
        source_bits = budget
        channel_bits = math.ceil(source_bits * 4 / 3 / BITS_PER_SYMBOL) * BITS_PER_SYMBOL
    if code == "nr5g":
        return {"source_bits": source_bits, "k": source_bits, "n": channel_bits, "channel_bits": channel_bits,
                "batch_size": 1000, "group": 1}
    if accounting != "equal_channel_uses":
        raise SystemExit("the packed IEEE 802.11n code is evaluated at equal channel uses only")
    k, n = IEEE80211N
    group = k // math.gcd(k, source_bits)  # images that fill a whole number of codewords
    return {"source_bits": source_bits, "k": k, "n": n, "channel_bits": channel_bits,
            "batch_size": 4 * group, "group": group}


def overrides_for(cfg: dict, code: str, codec: str, snr_db: float, items: int) -> list[str]:
    k, n = cfg["k"], cfg["n"]
    out = [f"snr_db={snr_db}", f"options.max_items={items}", f"options.batch_size={cfg['batch_size']}",
           "src.dataset=folder", f"src.root={SHARED_TRAIN}", "src.split=val", "src.shuffle=true",
           f"senc.codec={codec}", f"sdec.codec={codec}", f"senc.source_bits={cfg['source_bits']}"]
    if code == "nr5g":
        out += [f"cenc.k={k}", f"cenc.n={n}", f"cdec.k={k}", f"cdec.n={n}"]
    return out


def flowgraph_path(code: str, channel: str) -> Path:
    # Codec is overridden; the JPEG files are the templates (the codec files differ only in 'codec').
    name = "ldpc" if code == "nr5g" else "ldpc80211n"
    return REPO / "flowgraphs" / f"sscc_jpeg_{name}_{channel}.yaml"


def load_cache(path: Path | None) -> None:
    if path is not None and path.exists():
        with open(path, "rb") as f:
            image_codecs.ENCODE_CACHE.update(pickle.load(f))


def save_cache(path: Path | None) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            pickle.dump(image_codecs.ENCODE_CACHE, f)
        tmp.replace(path)


def same_point(a: dict, b: dict) -> bool:
    return all(a[key] == b[key] for key in ("codec", "bpp_target", "code", "accounting", "snr_db"))


CODEC_NAMES = {"jpeg": "JPEG", "webp": "WebP", "bpg": "BPG-class", "avif": "AVIF"}
CODE_NAMES = {"nr5g": "5G NR per image", "ieee80211n": "802.11n packed"}


def label(row: dict) -> str:
    text = f"{CODEC_NAMES[row['codec']]} {row['bpp_target']:g} bpp, {CODE_NAMES[row['code']]} ({row['k']}, {row['n']})"
    return text + (", equal source bpp" if row["accounting"] == "equal_source_bpp" else "")


def configs(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Rows grouped by configuration (everything but the SNR), in a stable reading order, SNR-sorted."""
    order = {"jpeg": 0, "webp": 1, "bpg": 2, "avif": 3}
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["accounting"] != "equal_channel_uses", row["code"] != "nr5g", row["bpp_target"],
                           order[row["codec"]], row["codec"], row["code"], row["accounting"]), []).append(row)
    return {key: sorted(groups[key], key=lambda r: r["snr_db"]) for key in sorted(groups)}


def plot(summary: dict, path: Path) -> None:
    """Accuracy (± standard error over images) vs test SNR, one line per configuration."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"jpeg": "tab:blue", "webp": "tab:orange", "bpg": "tab:green", "avif": "tab:red"}
    styles = {("nr5g", 0.25): "-o", ("nr5g", 0.5): "--s", ("ieee80211n", 0.25): ":^", ("ieee80211n", 0.5): "-.v"}
    fig, ax = plt.subplots(figsize=(8, 5))
    for rows in configs(summary["rows"]).values():
        first = rows[0]
        style = styles[(first["code"], first["bpp_target"])]
        ax.errorbar([r["snr_db"] for r in rows], [100 * r["accuracy"] for r in rows],
                    yerr=[100 * r["accuracy_se"] for r in rows], fmt=style, color=colours[first["codec"]],
                    alpha=0.5 if first["accounting"] == "equal_source_bpp" else 1.0, capsize=2, label=label(first))
    ax.axhline(10, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("test SNR Es/N0 (dB)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(f"SSCC + 16-QAM over {summary['channel'].upper() if summary['channel'] == 'awgn' else 'block Rayleigh'}"
                 f" (CIFAR-10 validation split)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def tables(summary: dict) -> str:
    """Markdown tables of one channel's summary: accuracy ± SE per SNR; BLER / PSNR / SSIM per SNR;
    source side (fit rate, achieved bpp)."""
    groups = configs(summary["rows"])
    snrs = sorted({r["snr_db"] for r in summary["rows"]})
    head = "| configuration | items | " + " | ".join(f"{s:g} dB" for s in snrs) + " |\n"
    rule = "|---|---|" + "---|" * len(snrs) + "\n"
    out = ["Accuracy (%) ± standard error over images:\n\n" + head + rule]
    for rows in groups.values():
        by_snr = {r["snr_db"]: r for r in rows}
        cells = [f"{100 * by_snr[s]['accuracy']:.2f} ± {100 * by_snr[s]['accuracy_se']:.2f}" if s in by_snr else "–"
                 for s in snrs]
        out.append(f"| {label(rows[0])} | {rows[0]['items']} | " + " | ".join(cells) + " |\n")
    out.append("\nLDPC BLER (per codeword) / PSNR dB / SSIM:\n\n" + head + rule)
    for rows in groups.values():
        by_snr = {r["snr_db"]: r for r in rows}
        cells = [f"{by_snr[s]['ldpc_bler']:.4f} / {by_snr[s]['psnr_db']:.2f} / {by_snr[s]['ssim']:.3f}"
                 if s in by_snr else "–" for s in snrs]
        out.append(f"| {label(rows[0])} | {rows[0]['items']} | " + " | ".join(cells) + " |\n")
    out.append("\nSource side (channel-independent): fit rate, achieved bpp of the fitting images (payload-only, "
               "full file) and payload bpp over all images (non-fitting ones send nothing):\n\n"
               "| configuration | source bits / image | channel bits / image | fit rate | payload bpp (fitting) | "
               "file bpp (fitting) | payload bpp (all) |\n|---|---|---|---|---|---|---|\n")
    for rows in groups.values():
        r = rows[0]
        fitting = (f"{r['source_payload_bpp_fitting']:.3f} | {r['source_file_bpp_fitting']:.3f}"
                   if r["source_fit_rate"] else "– | –")
        out.append(f"| {label(r)} | {r['source_bits']} | {r['channel_bits_per_image']} | "
                   f"{100 * r['source_fit_rate']:.1f} % | {fitting} | {r['source_payload_bpp']:.3f} |\n")
    return "".join(out)


def report(out: Path, channels) -> None:
    for channel in channels:
        path = out / f"summary_{channel}.json"
        if path.exists():
            summary = json.loads(path.read_text())
            plot(summary, out / f"accuracy_vs_snr_{channel}.png")
            print(f"\n## {channel}\n\n{tables(summary)}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codecs", nargs="+", default=["jpeg", "webp", "bpg"])
    parser.add_argument("--channels", nargs="+", choices=("awgn", "rayleigh"), default=["awgn"])
    parser.add_argument("--codes", nargs="+", choices=("nr5g", "ieee80211n"), default=["nr5g"])
    parser.add_argument("--accounting", nargs="+", choices=("equal_channel_uses", "equal_source_bpp"),
                        default=["equal_channel_uses"])
    parser.add_argument("--bpp", nargs="+", type=float, default=[0.25, 0.5], choices=(0.25, 0.5))
    parser.add_argument("--snr", nargs="+", type=float, default=[0.0, 5.0, 10.0, 15.0, 20.0])
    parser.add_argument("--items", type=int, default=5000, help="validation images (5000 = the whole split; "
                        "fewer: a seeded random subset)")
    parser.add_argument("--cache", type=Path, default=None, help="pickle of source codings kept across runs")
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "results" / "sscc_eval")
    parser.add_argument("--report", action="store_true", help="only redraw the plots and print the tables of "
                        "the summaries in --out")
    args = parser.parse_args(argv)
    if args.report:
        report(args.out, args.channels)
        return
    load_cache(args.cache)
    args.out.mkdir(parents=True, exist_ok=True)
    for codec in args.codecs:
        for bpp in args.bpp:
            for code in args.codes:
                for accounting in args.accounting:
                    if code == "ieee80211n" and accounting != "equal_channel_uses":
                        continue
                    cfg = link(code, accounting, bpp)
                    items = args.items - args.items % cfg["batch_size"]
                    for channel in args.channels:
                        summary_path = args.out / f"summary_{channel}.json"
                        summary = (json.loads(summary_path.read_text()) if summary_path.exists()
                                   else {"channel": channel, "rows": []})
                        for snr_db in args.snr:
                            path = flowgraph_path(code, channel)
                            fg = load_flowgraph(str(path), overrides_for(cfg, code, codec, snr_db, items))
                            result = run_flowgraph(fg)
                            row = {"codec": codec, "bpp_target": bpp, "code": code, "accounting": accounting,
                                   "k": cfg["k"], "n": cfg["n"], "source_bits": cfg["source_bits"],
                                   "channel_bits_per_image": cfg["channel_bits"], "snr_db": snr_db,
                                   "items": result.items, "flowgraph": str(path.relative_to(REPO)),
                                   **{key: result.metrics.get(key) for key in KEYS}}
                            summary["rows"] = [r for r in summary["rows"] if not same_point(r, row)] + [row]
                            write_json_atomic(str(summary_path), summary)
                            print(json.dumps({key: row[key] for key in (
                                "codec", "bpp_target", "code", "accounting", "snr_db", "items", "accuracy",
                                "psnr_db", "ldpc_bler", "source_fit_rate")}), flush=True)
                        save_cache(args.cache)
    report(args.out, args.channels)


if __name__ == "__main__":
    main()
