"""Throughput of the host-path channel kernels against torch and Sionna on the same complex64 batch,
and the flowgraph framework's overhead against a hand-written loop doing the same work.

Every candidate allocates its output (as the torch expressions do), is warmed up once (Numba compile/load
excluded), then timed ``--repeats`` times; ratios use the median. Threads are left at their defaults
(torch and Numba both use every core). The last line printed is one JSON object.

    python benchmarks/channel_kernels.py --samples 10000000
"""

import argparse
import json
import statistics
import time

from pathlib import Path

import numpy as np
import torch
from sionna.phy.channel import AWGN

from sdjscc_phy.core.flowgraph import load_flowgraph
from sdjscc_phy.core.scheduler import run_flowgraph
from sdjscc_phy.kernels import channels, mapping
from sdjscc_phy.metrics import Ber
from sdjscc_phy.phy import channels as torch_channels

LINK_FLOWGRAPH = Path(__file__).resolve().parents[1] / "flowgraphs" / "qam16_awgn_ber.yaml"

SNR_DB = 10.0


def time_call(fn, repeats: int) -> tuple[float, float]:
    """(median, best) wall time of ``fn()`` in seconds, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def candidates(x: np.ndarray, no: float) -> dict:
    """Name -> zero-argument callable applying one channel to ``x`` (complex64 ``[B, S]``)."""
    x_torch, sigma, sionna_awgn = torch.from_numpy(x), float(np.sqrt(no)), AWGN()
    return {
        "numba awgn": lambda: channels.awgn(x, no, key=1),
        "numba rayleigh block (CSI)": lambda: channels.rayleigh(x, no, 1, "block", True),
        "numba rayleigh fast (CSI)": lambda: channels.rayleigh(x, no, 1, "fast", True),
        "torch x + sigma*randn_like(x)": lambda: x_torch + sigma * torch.randn_like(x_torch),
        "torch phy.channels.rayleigh fast (CSI)": lambda: torch_channels.rayleigh(x_torch, no, "fast", True),
        "sionna AWGN": lambda: sionna_awgn(x_torch, no),
    }


def framework_candidates(items: int) -> dict:
    """The 16-QAM/AWGN BER flowgraph, and a hand-written loop calling the same kernels and metric."""
    fg_overrides = [f"options.max_items={items}"]
    load_flowgraph(str(LINK_FLOWGRAPH), fg_overrides)  # fail early on a broken file
    batch_size, num_bits, no = 256, 1024, 10 ** (-SNR_DB / 10)
    table = mapping.constellation(4)

    def hand_written() -> float:
        ber = Ber()
        for start in range(0, items, batch_size):
            size = min(batch_size, items - start)
            bits = np.random.default_rng(start).integers(0, 2, (size, num_bits), dtype=np.uint8)
            y = channels.awgn(mapping.map_bits(bits, table), no, 7, row_offset=start)
            llr = mapping.demap_llr(y, no, table)
            ber.update(torch.from_numpy(bits), torch.from_numpy((llr > 0).astype(np.uint8)))
        return ber.compute()["ber"]

    return {
        "flowgraph (validate + run)": lambda: run_flowgraph(load_flowgraph(str(LINK_FLOWGRAPH), fg_overrides)),
        "hand-written loop": hand_written,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10**7, help="complex64 samples per call")
    parser.add_argument("--rows", type=int, default=1000, help="batch rows B (block fading: one h per row)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--link-items", type=int, default=5000, help="items (1024 bits each) in the overhead test")
    args = parser.parse_args(argv)

    num_cols = args.samples // args.rows
    phase = np.random.default_rng(0).integers(0, 4, (args.rows, num_cols))
    x = np.exp(1j * np.pi / 4 * (2 * phase + 1)).astype(np.complex64)  # unit-energy QPSK
    no = 10 ** (-SNR_DB / 10)
    num_samples = x.size

    medians = {}
    print(f"{num_samples:.3g} complex64 samples [{args.rows} x {num_cols}], torch threads "
          f"{torch.get_num_threads()}, median / best of {args.repeats}")
    print(f"{'candidate':40s} {'median ms':>10s} {'best ms':>9s} {'Msamples/s':>11s}")
    for name, fn in candidates(x, no).items():
        median, best = time_call(fn, args.repeats)
        medians[name] = median
        print(f"{name:40s} {1e3 * median:10.1f} {1e3 * best:9.1f} {num_samples / median / 1e6:11.1f}")

    print(f"\nframework overhead: {LINK_FLOWGRAPH.name}, {args.link_items} items of 1024 bits, 16-QAM, AWGN")
    for name, fn in framework_candidates(args.link_items).items():
        median, best = time_call(fn, args.repeats)
        medians[name] = median
        print(f"{name:40s} {1e3 * median:10.1f} {1e3 * best:9.1f}")
    overhead = medians["flowgraph (validate + run)"] / medians["hand-written loop"] - 1
    print(f"flowgraph overhead vs hand-written loop: {100 * overhead:+.1f}% (target <= +10%)")

    torch_awgn = medians["torch x + sigma*randn_like(x)"]
    result = {
        "samples": num_samples,
        "awgn_samples_per_s": num_samples / medians["numba awgn"],
        "awgn_vs_torch_ratio": torch_awgn / medians["numba awgn"],
        "awgn_vs_sionna_ratio": medians["sionna AWGN"] / medians["numba awgn"],
        "rayleigh_block_vs_torch_ratio": torch_awgn / medians["numba rayleigh block (CSI)"],
        "rayleigh_fast_vs_torch_ratio": torch_awgn / medians["numba rayleigh fast (CSI)"],
        "rayleigh_fast_vs_torch_rayleigh_fast_ratio":
            medians["torch phy.channels.rayleigh fast (CSI)"] / medians["numba rayleigh fast (CSI)"],
        "flowgraph_overhead_percent": 100 * overhead,
        "flowgraph_vs_handwritten_ratio": medians["hand-written loop"] / medians["flowgraph (validate + run)"],
    }
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))
    return result


if __name__ == "__main__":
    main()
