"""Per-step training losses and step times of the first STEPS steps of one recipe stage, and a comparison of
two such curves (two trainers, or two versions of one, on the same recipe).

    python benchmarks/trainer_steps.py run recipes/sdjscc_cifar10.yaml deepjscc 500 new.csv [--set KEY=VALUE ...]
        [--glibc-default-heap]
    python benchmarks/trainer_steps.py compare old.csv new.csv [--window 50]

``run`` trains the stage with the recipe's schedule (one thread), stops after STEPS optimiser steps and writes
one row per step (step, loss, seconds: wall time, cpu_seconds: this process's CPU time, which other processes
sharing the cores disturb far less). ``--glibc-default-heap`` leaves glibc's malloc at its defaults instead of
the trainer's :func:`~sdjscc_phy.training.trainer.keep_freed_heap` (to measure what that saves); an older
trainer gets the same setting from the environment:
``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824``.
``compare`` prints the two curves' moving averages every 50 steps, their largest relative difference after the
first window, and the median step times.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time

import numpy as np


class _Done(Exception):
    """Raised by the step callback once enough steps ran."""


def record_steps(recipe: str, stage: str, steps: int, overrides: list[str]) -> list[tuple[int, float, float, float]]:
    """(step, loss, wall s, CPU s) of the first ``steps`` optimiser steps of ``stage``, trained in a temporary
    folder with the recipe's schedule and ``overrides``."""
    from sdjscc_phy.training import train

    if args.glibc_default_heap:
        import sdjscc_phy.training.trainer as trainer

        trainer.keep_freed_heap = lambda: False

    rows: list[tuple[int, float, float, float]] = []
    last = [time.perf_counter(), time.process_time()]

    def record(trainer, stage, step, loss):
        now = [time.perf_counter(), time.process_time()]
        rows.append((step, loss, now[0] - last[0], now[1] - last[1]))
        last[:] = now
        if step >= steps:
            raise _Done

    with tempfile.TemporaryDirectory() as out:
        try:
            # The export goes to the temporary folder too: a measurement never replaces a shipped checkpoint.
            train(recipe, [f"output_dir={out}", f"stages.{stage}.export={out}/export.pt", *overrides], only=[stage],
                  progress=False, callbacks=[record], report=False)
        except _Done:
            pass
    return rows


def run(args) -> None:
    rows = record_steps(args.recipe, args.stage, args.steps, ["num_threads=1", *args.overrides])
    with open(args.csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "loss", "seconds", "cpu_seconds"])
        writer.writerows(rows)
    print(f"{args.stage}: {len(rows)} steps, median step {np.median([r[2] for r in rows[10:]]):.3f} s "
          f"(CPU {np.median([r[3] for r in rows[10:]]):.3f} s)")


def _read(path: str) -> tuple[np.ndarray, np.ndarray]:
    rows = list(csv.DictReader(open(path)))
    seconds = "cpu_seconds" if "cpu_seconds" in rows[0] else "seconds"
    return np.array([float(r["loss"]) for r in rows]), np.array([float(r[seconds]) for r in rows])


def compare(args) -> None:
    (a, ta), (b, tb) = _read(args.a), _read(args.b)
    n, k = min(len(a), len(b)), args.window
    kernel = np.ones(k) / k
    ma, mb = np.convolve(a[:n], kernel, "valid"), np.convolve(b[:n], kernel, "valid")
    rel = (mb - ma) / ma
    print(f"{'step':>6} {'A (MA' + str(k) + ')':>12} {'B (MA' + str(k) + ')':>12} {'B/A - 1':>9}")
    for i in range(0, len(ma), k):
        print(f"{i + k:>6} {ma[i]:>12.5f} {mb[i]:>12.5f} {rel[i]:>+9.2%}")
    if len(rel) > k:
        print(f"largest |B/A - 1| of the moving averages after step {2 * k}: {np.abs(rel[k:]).max():.2%}")
    print(f"median step time (CPU time where recorded): A {np.median(ta[10:]):.3f} s, B {np.median(tb[10:]):.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("recipe")
    p.add_argument("stage")
    p.add_argument("steps", type=int)
    p.add_argument("csv")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--glibc-default-heap", action="store_true")
    p.set_defaults(func=run)
    p = sub.add_parser("compare")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--window", type=int, default=50)
    p.set_defaults(func=compare)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
