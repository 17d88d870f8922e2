"""Data-parallel training on torch.distributed (gloo, two CPU processes): the steps of one process, exact
resume after a kill -9 of the whole run, rank 0 writes, and one-line errors for launches that cannot run."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import make_image_folder
from sdjscc_phy.cli.main import main as jsccflow_main
from sdjscc_phy.core.block import BatchContext
from sdjscc_phy.core.registry import registry
from sdjscc_phy.errors import CheckpointError, JsccflowError
from sdjscc_phy.training import load_checkpoint, train
from sdjscc_phy.training.distributed import World, check_devices

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")


def record_loss(trainer, stage, global_step, loss):
    """Callback (picklable: it runs in every process): appends ``step loss`` to ``losses.rank<r>.txt``."""
    with open(trainer.output_dir / f"losses.rank{trainer.world.rank}.txt", "a") as f:
        f.write(f"{global_step} {loss!r}\n")


def kill_run_after_step_4(trainer, stage, global_step, loss):
    """kill -9 of the whole run (launcher and every worker) between steps 4 and 5, from rank 0."""
    if global_step == 4 and trainer.world.is_main:
        os.killpg(os.getpgid(0), signal.SIGKILL)


def losses(out: Path, rank: int = 0) -> list[tuple[int, float]]:
    return [(int(step), float(loss)) for step, loss in
            (line.split() for line in (out / f"losses.rank{rank}.txt").read_text().splitlines())]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    """Deep JSCC through the 16-QAM AWGN link (channel noise, random flips, shuffled order) on 3 classes x 8
    random 32x32 JPEGs (2 per class held out): 18 training items in batches of 7, 7, 4, so the two ranks'
    shares differ in size (4 + 3) in most batches; 2 epochs = 6 steps, a checkpoint every 2."""
    root = tmp_path_factory.mktemp("ddp")
    make_image_folder(root / "images", ("a", "b", "c"), 8, 32)
    (root / "val.txt").write_text("a/0.jpg\nb/0.jpg\nc/0.jpg\na/1.jpg\nb/1.jpg\nc/1.jpg\n")
    recipe = {
        "seed": 3, "output_dir": "runs", "num_threads": 1, "device": "cpu",
        "set": [f"data_root={root / 'images'}", f"src.split_file={root / 'val.txt'}"],
        "stages": [{"name": "s", "flowgraph": str(REPO / "flowgraphs" / "train" / "deepjscc_awgn.yaml"),
                    "train": ["enc", "dec"], "epochs": 2, "batch_size": 7, "set": ["enc.width=8", "dec.width=8"],
                    "optimizer": {"name": "Adam", "lr": 3e-3, "clip_grad_norm": 1.0},
                    "schedule": {"kind": "linear_warmup_decay", "warmup_fraction": 0.25, "start_factor": 0.2},
                    "checkpoint_every_steps": 2, "validation": {"set": ["src.split=val"]}, "export": "codec.pt"}],
    }
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def two_processes(recipe) -> Path:
    """The uninterrupted two-process run's output_dir."""
    train(recipe, ["output_dir=two"], progress=False, callbacks=[record_loss], nproc=2, force=True)
    return recipe.parent / "two"


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    modules = load_checkpoint(out / "s" / "last.pt")["modules"]
    return {f"{m}.{k}": v for m, state in modules.items() for k, v in state.items()}


def log_rows(out: Path) -> list[dict]:
    rows = list(csv.DictReader((out / "s" / "log.csv").open()))
    return [{k: v for k, v in row.items() if not k.endswith("time_s")} for row in rows]


def test_two_processes_take_the_steps_of_one_process_with_the_same_global_batch(recipe, two_processes):
    train(recipe, ["output_dir=one"], progress=False, callbacks=[record_loss], force=True)
    one, two = losses(recipe.parent / "one"), losses(two_processes)
    assert losses(two_processes, rank=1) == two  # every rank reports the loss of the whole batch
    assert [s for s, _ in two] == [s for s, _ in one] == [1, 2, 3, 4, 5, 6]
    # only the order of the floating-point sums differs (gradients summed over 2 ranks, not 7 items)
    np.testing.assert_allclose([l for _, l in two], [l for _, l in one], rtol=1e-4)
    a, b = final_weights(recipe.parent / "one"), final_weights(two_processes)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=1e-5)
    one_rows, two_rows = log_rows(recipe.parent / "one"), log_rows(two_processes)
    assert [r.keys() for r in two_rows] == [r.keys() for r in one_rows]
    for r1, r2 in zip(one_rows, two_rows):
        np.testing.assert_allclose([float(v) for v in r2.values()], [float(v) for v in r1.values()], rtol=1e-3)


def test_rank_0_alone_writes_checkpoint_log_and_export(recipe, two_processes):
    ckpt = load_checkpoint(two_processes / "s" / "last.pt")
    assert ckpt["world_size"] == 2 and len(ckpt["rank_rng"]) == 1 and ckpt["state"]["finished"]
    assert sorted(p.name for p in (two_processes / "s").iterdir()) == ["last.pt", "log.csv"]
    assert (recipe.parent / "codec.pt").is_file()


def test_kill_9_of_the_run_then_resume_continues_exactly(recipe, two_processes):
    code = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import test_distributed as t; "
            f"t.train({str(recipe)!r}, ['output_dir=killed'], progress=False, nproc=2, force=True, "
            "callbacks=[t.record_loss, t.kill_run_after_step_4])")
    run = subprocess.run([sys.executable, "-c", code], start_new_session=True, capture_output=True, timeout=300)
    assert run.returncode == -signal.SIGKILL, run.stderr.decode()[-2000:]
    killed = recipe.parent / "killed"
    assert load_checkpoint(killed / "s" / "last.pt")["state"]["global_step"] == 3  # the end of epoch 1
    train(recipe, ["output_dir=killed"], resume=True, progress=False, callbacks=[record_loss], nproc=2)
    # steps 1-4 of the killed run, then the resumed run from step 4 (after the step-3 checkpoint)
    assert losses(killed) == losses(two_processes)[:4] + losses(two_processes)[3:]
    a, b = final_weights(two_processes), final_weights(killed)
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert log_rows(killed) == log_rows(two_processes)


def test_resuming_with_another_number_of_processes_is_one_clear_error(recipe, two_processes):
    with pytest.raises(CheckpointError, match="written by a training of 2 process.*resume it with 2") as info:
        train(recipe, [f"output_dir={two_processes}"], resume=True, progress=False)
    assert "\n" not in str(info.value)


def test_a_user_error_in_the_workers_is_one_line_on_stderr(recipe, two_processes, capfd):
    capfd.readouterr()
    assert jsccflow_main(["train", str(recipe), "--set", f"output_dir={two_processes}", "--nproc", "2",
                          "--force"]) == 2
    err = capfd.readouterr().err  # the launcher's and the workers' output too
    assert err.count("\n") == 1 and err.startswith("error: stage 's': ") and "last.pt' exists; resume it" in err


@pytest.mark.parametrize("args, message", [
    (["--nproc", "0"], "--nproc: must be at least 1; got 0"),
    (["--nproc", "2", "--backend", "nccl"], "--backend nccl: needs CUDA devices; the recipe trains on 'cpu'"),
    (["--nproc", "2", "--backend", "mpi"], "--backend: must be one of gloo, nccl; got 'mpi'"),
    (["--nproc", "2", "--set", "device=cuda:7"], "'cuda:7' requested but"),
])
def test_launches_that_cannot_run_are_one_line_before_anything_starts(recipe, args, message, capsys):
    assert jsccflow_main(["train", str(recipe), "--set", "output_dir=never", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert not (recipe.parent / "never").exists()


def test_nproc_under_torchrun_and_more_processes_than_gpus_are_refused(recipe, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(JsccflowError, match="--nproc 2: one process per GPU, but this machine has 1 CUDA device"):
        check_devices(2, torch.device("cuda"), None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(JsccflowError, match="started by torchrun"):
        train(recipe, ["output_dir=never"], nproc=2)


@pytest.mark.parametrize("items, size", [(7, 2), (4, 2), (1, 3), (10, 4)])
def test_shares_split_a_batch_into_contiguous_rows_in_rank_order(items, size):
    shares = [World(rank, size).share(items) for rank in range(size)]
    assert [offset for offset, _ in shares] == list(np.cumsum([0] + [rows for _, rows in shares[:-1]]))
    assert sum(rows for _, rows in shares) == items and max(r for _, r in shares) - min(r for _, r in shares) <= 1


@pytest.mark.parametrize("block_type, params", [
    ("awgn_channel", {}), ("rayleigh_channel", {"coherence": "block"}), ("rayleigh_channel", {"coherence": "fast"}),
    ("snr_source", {}), ("bit_source", {"num_bits": 8}),
])
def test_the_shares_of_a_batch_draw_the_values_their_items_get_in_the_whole_batch(block_type, params):
    """Per-item random draws (torch-path noise and fading, SNRs, bits): shares of a batch put together are
    the batch, so data-parallel training sees the noise of one process."""
    block = registry()[block_type]("b", **params)
    x = torch.randn(7, 16, dtype=torch.complex64)

    def draw(start, rows, share=None):
        ctx = BatchContext(2, start, rows, "torch", torch.device("cpu"), 5, "b", 11, epoch=1, training=True,
                           share=share)
        return block.process({"x": x[start:start + rows]} if "channel" in block_type else {}, ctx)

    whole = draw(0, 7)
    parts = [draw(0, 4, (0, 7)), draw(4, 3, (4, 7))]
    for port, value in whole.items():
        assert torch.equal(torch.cat([part[port] for part in parts]), value), port


def test_a_shares_own_stream_differs_from_the_other_shares_and_the_batch():
    """``ctx.generator`` / ``ctx.rng`` / ``ctx.key`` in a share: a stream per rank (a plugin drawing from
    them gets independent noise on every rank); outside a share, the batch's stream as always."""
    ctx = lambda share=None: BatchContext(2, 0, 4, "torch", torch.device("cpu"), 5, "b", 11, 1, True, share)
    keys = {ctx().key, ctx((0, 7)).key, ctx((4, 7)).key}
    assert len(keys) == 3 and ctx().key == ctx().batch_key == ctx((4, 7)).batch_key


@pytest.mark.parametrize("flowgraph, overrides, found", [
    ("deepjscc_awgn.yaml", ["stages.s.set=enc.width=8", "stages.s.set=dec.width=8"], []),
    ("classifier.yaml", ["stages.s.train=[clf]", 'stages.s.set=["clf.widths=[8, 16, 16]", "clf.num_classes=3"]'],
     ["BatchNorm of 'clf.model'"]),
])
def test_what_sees_only_a_share_of_the_batch_is_named(recipe, flowgraph, overrides, found):
    """BatchNorm in trained blocks and batch-level losses: the trainer names them in data-parallel runs."""
    from sdjscc_phy.training import load_recipe
    from sdjscc_phy.training.trainer import StageRun

    loaded = load_recipe(recipe, [f"stages.s.flowgraph={REPO / 'flowgraphs' / 'train' / flowgraph}", *overrides])
    assert StageRun(loaded, loaded["stages"][0], torch.device("cpu")).batch_statistics() == found


def test_the_shares_weighted_objectives_sum_to_the_batchs_objective_and_gradient(recipe):
    """In one process, without torch.distributed: the two ranks' share-weighted objectives of a batch of 7
    (shares of 4 and 3 items, each with its items' noise) sum to the whole batch's, gradients included.
    Weighting each share's mean loss alike (DDP's mean) would be 2 % off here."""
    from sdjscc_phy.training import load_recipe
    from sdjscc_phy.training.checkpoint import seed_everything
    from sdjscc_phy.training.trainer import StageRun

    loaded = load_recipe(recipe, ["output_dir=unused"])
    seed_everything(0)
    stage = StageRun(loaded, loaded["stages"][0], torch.device("cpu"))
    stage.calibrate()
    parameters = [p for group in stage.parameter_groups().values() for p in group]

    def objective_and_gradient(world):
        for p in parameters:
            p.grad = None
        objective = stage.training_loss(0, 1, world)
        objective.backward()
        return float(objective.detach()), torch.cat([p.grad.reshape(-1) for p in parameters])

    whole, whole_grad = objective_and_gradient(World())
    shares = [objective_and_gradient(World(rank, 2)) for rank in range(2)]
    assert sum(value for value, _ in shares) == pytest.approx(whole, rel=1e-6)
    torch.testing.assert_close(shares[0][1] + shares[1][1], whole_grad, rtol=1e-5, atol=1e-7)
