"""Images per second of the main job, ``flowgraphs/sdjscc_awgn.yaml``, against the same networks, PHY kernels
and metrics called directly by a hand-written loop, in one run: the framework's overhead.

Both candidates do the same work from the same loaded data: load the codec and classifier checkpoints,
then per batch encode, binarize, map to 16-QAM, add AWGN, demap, decode, classify with the task and the
unseen classifier (flip TTA as the shipped classifiers do) and update both metric sinks' metrics. The flowgraph candidate also validates the file. The
loop draws the channel noise from the key the flowgraph's channel uses, so both must report the same
accuracy; the script fails if they do not. Candidates alternate over ``--repeats`` rounds after one
untimed warm-up each; figures are medians. CPU time (this process, every thread) is shown beside the
wall time: other processes sharing the cores disturb it far less. The load average is printed, since
a busy machine lowers every wall-time figure. The last line printed is one JSON object.

    python benchmarks/run_throughput.py --repeats 5
    python benchmarks/run_throughput.py --device cuda --batch-size 500   # the torch paths on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from sdjscc_phy.core.block import derive_key
from sdjscc_phy.core.flowgraph import load_flowgraph
from sdjscc_phy.core.scheduler import resolve_device, resolve_path, run_flowgraph
from sdjscc_phy.data.datasets import ImageDataset, read_builtin
from sdjscc_phy.kernels import channels, mapping
from sdjscc_phy.metrics import make_metrics
from sdjscc_phy.models.classifier import load_classifier
from sdjscc_phy.models.jscc import load_codec
from sdjscc_phy.phy import channels as torch_channels
from sdjscc_phy.phy import mapping as torch_mapping

MAIN_JOB = Path(__file__).resolve().parents[1] / "flowgraphs" / "sdjscc_awgn.yaml"
SNR_DB, NUM_BITS_PER_SYMBOL, SEED = 5.0, 4, 0
METRICS = ["accuracy", "f1_macro", "psnr_db", "ssim", "bpp"]
CHANNELS_LAST = torch.channels_last


def flowgraph_run(items: int, batch_size: int, device: str) -> dict[str, float]:
    """Validate and run the main job (the work of ``jsccflow run`` after start-up); its metrics."""
    fg = load_flowgraph(str(MAIN_JOB), [f"options.max_items={items}", f"options.batch_size={batch_size}",
                                        f"options.device={device}", f"snr_db={SNR_DB}"])
    return run_flowgraph(fg).metrics


def direct_run(items: int, batch_size: int, device_name: str, data: ImageDataset) -> dict[str, float]:
    """The main job as a hand-written loop over the library's models, kernels and metrics, on ``data``
    (decoded once, as the image source's dataset is once per process)."""
    device = resolve_device(device_name, "--device")
    on_gpu = resolve_path("auto", device) == "torch"
    codec = load_codec("sdjscc_awgn").to(device, memory_format=CHANNELS_LAST)
    classifier = load_classifier("classifier_cifar10").to(device)
    unseen = load_classifier("classifier_vgg_cifar10").to(device)
    metrics, unseen_metrics = make_metrics(METRICS), make_metrics(["accuracy"])
    no = 10 ** (-SNR_DB / 10)
    table = mapping.constellation(NUM_BITS_PER_SYMBOL)
    channel_key = derive_key(SEED, "ch")
    with torch.inference_mode():
        for batch_index, start in enumerate(range(0, items, batch_size)):
            image = data.images[start:start + batch_size].to(device).float().div_(255.0)
            label = data.labels[start:start + batch_size].to(device)
            e = codec.encoder(image.contiguous(memory_format=CHANNELS_LAST)).float()
            if on_gpu:  # the torch paths, noise from the channel's per-batch generator as the block draws it
                bits = (e > 0.5).float()
                generator = torch.Generator(device=device).manual_seed(derive_key(SEED, "ch", batch_index))
                y = torch_channels.awgn(torch_mapping.map_bits(bits, NUM_BITS_PER_SYMBOL), no, generator=generator)
                llr = torch_mapping.demap_llr(y, torch.full(y.shape, no, device=device), NUM_BITS_PER_SYMBOL)
            else:  # the Numba kernels, counter-based noise keyed as the channel block keys it
                bits = (e > 0.5).to(torch.uint8)
                y = channels.awgn(mapping.map_bits(bits.numpy(), table), no, channel_key, row_offset=start)
                llr = torch.from_numpy(mapping.demap_llr(y, no, table))
            image_hat = codec.decoder(torch.sigmoid(llr), *image.shape[-2:])
            logits = classifier.predict(image_hat.contiguous(memory_format=CHANNELS_LAST)).float()
            unseen_logits = unseen.predict(image_hat.contiguous(memory_format=CHANNELS_LAST)).float()
            # The metric sinks run on the host (their metrics accumulate there).
            metrics.update({"label": label.cpu(), "logits": logits.cpu(), "image": image.cpu(),
                            "image_hat": image_hat.cpu(), "bits": bits.cpu(), "num_bits": bits.shape[1]})
            unseen_metrics.update({"label": label.cpu(), "logits": unseen_logits.cpu()})
    return {**metrics.compute(), **{f"unseen_{k}": v for k, v in unseen_metrics.compute().items()}}


def timed(fn) -> tuple[float, float, dict]:
    """(wall s, CPU s of this process, result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def measure(items: int, batch_size: int, device: str, repeats: int) -> dict[str, dict]:
    """Median wall and CPU seconds of the flowgraph and the direct loop, alternating, after a warm-up each."""
    data = read_builtin()
    candidates = {"flowgraph": lambda: flowgraph_run(items, batch_size, device),
                  "direct": lambda: direct_run(items, batch_size, device, data)}
    results = {name: fn() for name, fn in candidates.items()}  # warm-up: Numba caches, checkpoint files
    if any(results["flowgraph"][k] != results["direct"][k] for k in ("accuracy", "unseen_accuracy")):
        raise SystemExit(f"the loop does other work than the flowgraph: accuracy {results['direct']['accuracy']} "
                         f"vs {results['flowgraph']['accuracy']}")
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            wall, cpu, _ = timed(fn)
            times[name].append((wall, cpu))
    return {name: {"wall_s": statistics.median(w for w, _ in rows), "best_wall_s": min(w for w, _ in rows),
                   "cpu_s": statistics.median(c for _, c in rows), "accuracy": results[name]["accuracy"]}
            for name, rows in times.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000, help="images per run (the builtin set has 1,000)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the flowgraph's")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    batch_size = args.batch_size or load_flowgraph(str(MAIN_JOB)).options.batch_size

    load_before = os.getloadavg()[0]
    figures = measure(args.items, batch_size, args.device, args.repeats)
    load_after = os.getloadavg()[0]
    print(f"{MAIN_JOB.name}: {args.items} images, batch {batch_size}, device {args.device}, torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} CPUs, load average {load_before:.1f} -> {load_after:.1f}; "
          f"median of {args.repeats}")
    print(f"{'candidate':12s} {'wall s':>8s} {'best s':>8s} {'CPU s':>8s} {'images/s':>9s} {'images/CPU-s':>13s}")
    for name, f in figures.items():
        print(f"{name:12s} {f['wall_s']:8.2f} {f['best_wall_s']:8.2f} {f['cpu_s']:8.2f} "
              f"{args.items / f['wall_s']:9.1f} {args.items / f['cpu_s']:13.1f}")
    flow, direct = figures["flowgraph"], figures["direct"]
    overhead = flow["wall_s"] / direct["wall_s"] - 1
    print(f"framework overhead: {100 * overhead:+.1f} % wall, {100 * (flow['cpu_s'] / direct['cpu_s'] - 1):+.1f} % "
          f"CPU (target <= +5 %); accuracy {flow['accuracy']:.4f} in both")
    result = {
        "items": args.items, "batch_size": batch_size, "device": args.device, "repeats": args.repeats,
        "cpus": os.cpu_count(), "load_average": round(max(load_before, load_after), 2),
        "flowgraph_images_per_s": args.items / flow["wall_s"], "direct_images_per_s": args.items / direct["wall_s"],
        "flowgraph_images_per_cpu_s": args.items / flow["cpu_s"], "direct_images_per_cpu_s": args.items / direct["cpu_s"],
        "flowgraph_overhead_percent": 100 * overhead,
        "flowgraph_vs_direct_ratio": direct["wall_s"] / flow["wall_s"],
        "flowgraph_vs_direct_cpu_ratio": direct["cpu_s"] / flow["cpu_s"],
    }
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))
    return result


if __name__ == "__main__":
    main()
