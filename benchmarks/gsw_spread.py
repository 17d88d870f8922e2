"""How much GSW actually weights the feature maps: W (before eq. 10) of a recipe's semantic stage over its
training images, and for each tau the weights W' = r softmax(tau W) as max/min ratio and effective number
of maps (exp of the entropy of W'/r; K = uniform, 1 = one map). Reads Fig. 7 (accuracy vs tau).

    python benchmarks/gsw_spread.py --tau 1 10 100 1000 10000
    python benchmarks/gsw_spread.py --set stages.sdjscc.variables.gsw_mode=paper --tau 1 1000

Prints a table and, as the last line, one JSON object; writes it to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from sdjscc_phy.errors import JsccflowError
from sdjscc_phy.io.results import write_json_atomic
from sdjscc_phy.training import gsw, load_recipe
from sdjscc_phy.training.trainer import StageRun

REPO = Path(__file__).resolve().parents[1]


def _fail(message: str) -> None:
    """A bad argument: one line on stderr, exit code 2 (as the jsccflow CLI)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "sdjscc_cifar10.yaml"))
    parser.add_argument("--stage", default="sdjscc")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--tau", type=float, nargs="+", default=[1, 10, 100, 1000, 10000])
    parser.add_argument("--out", default=str(REPO / "experiments" / "results" / "sweeps" / "fig7_tau" / "gsw_spread.json"))
    args = parser.parse_args()

    try:
        recipe = load_recipe(args.recipe, args.overrides)
    except JsccflowError as err:
        _fail(str(err))
    names = [s["name"] for s in recipe["stages"]]
    if args.stage not in names:
        _fail(f"{args.recipe}: no stage '{args.stage}' (stages: {', '.join(names)})")
    config = recipe["stages"][names.index(args.stage)]
    torch.set_num_threads(recipe["num_threads"] or torch.get_num_threads())
    stage = StageRun(recipe, config, torch.device("cpu"))
    semantic = next((b for b in stage.fg.blocks.values() if b.type_name == "semantic_loss"), None)
    if semantic is None or not semantic.calibration_items():
        _fail(f"stage '{args.stage}': its flowgraph has no semantic_loss with fitted GSW weights")
    stage.calibrate()
    raw, p = semantic.raw_weights, semantic.p
    rows = []
    for tau in args.tau:
        w = gsw.semantic_weights(raw, tau, p.r)
        rows.append({"tau": tau, "max_over_min": float(w.max() / w.min()), "effective_maps": gsw.effective_maps(w)})
    report = {"recipe": args.recipe, "stage": args.stage, "layer": p.layer, "mode": p.gsw_mode,
              "images": p.gsw_images, "maps": raw.numel(), "raw_min": float(raw.min()), "raw_max": float(raw.max()),
              "raw_std": float(raw.std()), "weights": rows}
    print(f"{p.gsw_mode} W on {p.layer} ({raw.numel()} maps, {p.gsw_images} images): "
          f"min {report['raw_min']:.2e}, max {report['raw_max']:.2e}, std {report['raw_std']:.2e}")
    print(f"{'tau':>8} {'max/min W':>12} {'effective maps':>15}")
    for row in rows:
        print(f"{row['tau']:>8g} {row['max_over_min']:>12.3g} {row['effective_maps']:>15.1f}")
    write_json_atomic(args.out, report)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
