"""``python -m sdjscc_phy.training RECIPE [--set KEY=VALUE ...] [--resume] [--no-progress]``.

The same as ``jsccflow train``; usable before the package is installed. User errors print one line
and exit with code 2.
"""

from __future__ import annotations

import argparse
import sys

from sdjscc_phy.errors import JsccflowError
from sdjscc_phy.training import train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdjscc_phy.training", description="Train the stages of a recipe.")
    parser.add_argument("recipe")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value by dotted key, e.g. stages.classifier.epochs=1")
    parser.add_argument("--resume", action="store_true", help="continue from the stages' last checkpoints")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or epoch lines")
    args = parser.parse_args(argv)
    try:
        results = train(args.recipe, args.overrides, resume=args.resume, progress=not args.no_progress)
    except JsccflowError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for stage, metrics in results.items():
        print(stage, " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
