"""Where blocks compute: ``options.path: auto`` picks the torch paths on a GPU and the host paths on the CPU,
blocks without a torch path run on the host, and the scheduler copies a tensor to another device once per
batch. The placement rule is device-independent, so a ``cuda`` device object (no GPU needed) tests it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sdjscc_phy.core.flowgraph import load_flowgraph
from sdjscc_phy.core.scheduler import _on_device, block_devices, resolve_path, run_flowgraph

FLOWGRAPHS = Path(__file__).resolve().parents[1] / "flowgraphs"
CPU, GPU = torch.device("cpu"), torch.device("cuda")


def test_auto_path_is_torch_on_a_gpu_and_host_on_the_cpu():
    assert resolve_path("auto", GPU) == "torch" and resolve_path("auto", CPU) == "host"
    assert resolve_path("host", GPU) == "host" and resolve_path("torch", CPU) == "torch"


def test_on_a_gpu_the_main_job_keeps_every_block_but_the_metric_sinks_on_the_device():
    fg = load_flowgraph(FLOWGRAPHS / "sdjscc_awgn.yaml", device="cpu")
    placed = block_devices(fg, resolve_path("auto", GPU), GPU)
    # the sinks (the task and the unseen classifier's) accumulate on the host
    assert {b for b, d in placed.items() if d == CPU} == {"metrics", "unseen_metrics"}


def test_on_a_gpu_only_blocks_without_a_torch_path_run_on_the_host():
    fg = load_flowgraph(FLOWGRAPHS / "sscc_jpeg_ldpc_awgn.yaml", device="cpu")
    on_host = {b for b, d in block_devices(fg, "torch", GPU).items() if d == CPU}
    assert on_host == {"senc", "cenc", "cdec", "sdec", "metrics", "unseen_metrics"}
    assert all(fg.blocks[b].available_paths() == ("host",) for b in on_host)
    # path: host asks for the Numba kernels: the PHY blocks move to the CPU, the networks stay on the GPU
    on_host = {b for b, d in block_devices(fg, "host", GPU).items() if d == CPU}
    assert on_host == {"senc", "cenc", "map", "ch", "demap", "cdec", "sdec", "metrics", "unseen_metrics"}


def test_on_the_cpu_every_block_runs_on_the_cpu():
    fg = load_flowgraph(FLOWGRAPHS / "sscc_jpeg_ldpc_awgn.yaml", device="cpu")
    for path in ("host", "torch"):
        assert set(block_devices(fg, path, CPU).values()) == {CPU}


def test_a_tensor_is_copied_to_another_device_once_per_batch():
    meta = torch.device("meta")  # a device without data: stands in for a GPU
    values, copies = {("src", "x"): torch.ones(3)}, {}
    assert _on_device(values, copies, ("src", "x"), CPU) is values[("src", "x")]
    first = _on_device(values, copies, ("src", "x"), meta)
    assert first.device == meta and _on_device(values, copies, ("src", "x"), meta) is first
    assert list(copies) == [(("src", "x"), "meta")]


def test_torch_and_host_paths_of_the_main_job_agree_statistically():
    """Other noise draws, same link: PSNR within 0.2 dB, accuracy within 4 standard errors (100 images)."""
    host, torch_path = (run_flowgraph(load_flowgraph(FLOWGRAPHS / "sdjscc_awgn.yaml", [f"options.path={path}"],
                                                     max_items=100, device="cpu")).metrics
                        for path in ("host", "torch"))
    assert torch_path["psnr_db"] == pytest.approx(host["psnr_db"], abs=0.2)
    assert abs(torch_path["accuracy"] - host["accuracy"]) < 4 * host["accuracy_se"]
    assert torch_path["bpp"] == host["bpp"] == 0.25


@pytest.mark.skipif(torch.cuda.is_available(), reason="measures on a machine with a GPU")
def test_gpu_benchmark_skips_cleanly_without_a_gpu():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_run.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    first, last = proc.stdout.strip().splitlines()
    assert first.startswith("no GPU")
    figures = json.loads(last)
    assert figures and all(v is None for v in figures.values())
    assert {"gpu_vs_cpu_main_job_ratio", "gpu_vs_cpu_train_ratio"} <= set(figures)


def test_a_torch_path_run_leaves_the_torch_path_trainable():
    """A run is in inference mode; the PHY tables it caches must still serve autograd afterwards."""
    from sdjscc_phy.phy import mapping

    run_flowgraph(load_flowgraph(FLOWGRAPHS / "qam16_awgn_ber.yaml", ["options.path=torch"], max_items=10))
    y = torch.randn(2, 8, dtype=torch.complex64, requires_grad=True)
    mapping.demap_llr(y, 0.3, 4).sum().backward()
    assert y.grad is not None and bool(y.grad.abs().sum() > 0)
