"""Images per second on the GPU against the CPU of this machine: the main job (``jsccflow run
flowgraphs/sdjscc_awgn.yaml``, validation and run, median of ``--repeats`` after a warm-up) and SD-JSCC
fine-tuning (the ``sdjscc`` stage of ``recipes/sdjscc_cifar10.yaml``: median step time of ``--steps``
optimiser steps after ``--warmup`` steps, times the batch size).

The CPU runs use every core (torch threads = CPU count). On the GPU the flowgraph's ``path: auto`` runs
the torch paths there; only the metric sink reads host copies. Training needs the CIFAR-10 folder
(``--data-root``); without it the training figures are null. Without a CUDA device the script prints
one line saying so and the JSON line with nulls, and exits 0. The last line printed is one JSON object.

    python benchmarks/gpu_run.py --repeats 3 --steps 50
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from run_throughput import MAIN_JOB, flowgraph_run
from trainer_steps import record_steps

REPO = Path(__file__).resolve().parents[1]
RECIPE, STAGE = REPO / "recipes" / "sdjscc_cifar10.yaml", "sdjscc"
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "data" / "cifar10" / "train"
KEYS = ("gpu_main_job_images_per_s", "cpu_main_job_images_per_s", "gpu_vs_cpu_main_job_ratio",
        "gpu_train_images_per_s", "cpu_train_images_per_s", "gpu_vs_cpu_train_ratio")


def main_job_images_per_s(device: str, items: int, batch_size: int, repeats: int) -> float:
    flowgraph_run(items, batch_size, device)  # warm-up: Numba caches, cuDNN plans, checkpoint files
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        flowgraph_run(items, batch_size, device)
        seconds.append(time.perf_counter() - start)
    return items / statistics.median(seconds)


def train_images_per_s(device: str, data_root: Path, steps: int, warmup: int, batch_size: int) -> float:
    overrides = [f"device={device}", f"num_threads={os.cpu_count()}", f"stages.{STAGE}.batch_size={batch_size}",
                 f"stages.{STAGE}.variables.data_root={data_root}"]
    rows = record_steps(str(RECIPE), STAGE, warmup + steps, overrides)
    return batch_size / statistics.median(wall for _, _, wall, _ in rows[warmup:])


def ratio(gpu: float | None, cpu: float | None) -> float | None:
    return gpu / cpu if gpu and cpu else None


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000, help="main job: images per run")
    parser.add_argument("--cpu-batch-size", type=int, default=100, help="main job on the CPU (the flowgraph's)")
    parser.add_argument("--gpu-batch-size", type=int, default=500, help="main job on the GPU")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="CIFAR-10 ImageFolder (training)")
    parser.add_argument("--steps", type=int, default=50, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=10, help="training steps before timing")
    parser.add_argument("--train-batch-size", type=int, default=128, help="the recipe's")
    args = parser.parse_args(argv)

    result: dict = dict.fromkeys(KEYS)
    if not torch.cuda.is_available():
        print("no GPU: torch sees no CUDA device here; nothing measured")
        print(json.dumps(result))
        return result
    torch.set_num_threads(os.cpu_count())
    print(f"GPU {torch.cuda.get_device_name()}, {os.cpu_count()} CPUs; {MAIN_JOB.name}: {args.items} images, "
          f"median of {args.repeats}")
    result["gpu_main_job_images_per_s"] = main_job_images_per_s("cuda", args.items, args.gpu_batch_size, args.repeats)
    result["cpu_main_job_images_per_s"] = main_job_images_per_s("cpu", args.items, args.cpu_batch_size, args.repeats)
    if args.data_root.is_dir():
        for device in ("cuda", "cpu"):
            result[f"{'gpu' if device == 'cuda' else 'cpu'}_train_images_per_s"] = train_images_per_s(
                device, args.data_root.resolve(), args.steps, args.warmup, args.train_batch_size)
    else:
        print(f"training not measured: no CIFAR-10 folder at {args.data_root} (--data-root)")
    result["gpu_vs_cpu_main_job_ratio"] = ratio(result["gpu_main_job_images_per_s"], result["cpu_main_job_images_per_s"])
    result["gpu_vs_cpu_train_ratio"] = ratio(result["gpu_train_images_per_s"], result["cpu_train_images_per_s"])
    print(f"{'':24s} {'GPU':>10s} {'CPU':>10s} {'GPU/CPU':>8s}")
    for name, key in (("main job images/s", "main_job"), ("training images/s", "train")):
        gpu, cpu, r = result[f"gpu_{key}_images_per_s"], result[f"cpu_{key}_images_per_s"], result[f"gpu_vs_cpu_{key}_ratio"]
        print(f"{name:24s} {gpu or float('nan'):10.1f} {cpu or float('nan'):10.1f} {r or float('nan'):8.1f}")
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))
    return result


if __name__ == "__main__":
    main()
