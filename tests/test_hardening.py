"""Every bad input a hostile user tried gets one ``error:`` line and exit code 2: no traceback, no hang,
no code run, nothing written outside its folder, nothing overwritten without ``--force``."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from filelock import FileLock

from sdjscc_phy.cli.main import main
from sdjscc_phy.core.yaml_lines import load_yaml_with_lines, parse_assignment
from sdjscc_phy.data.datasets import read_cifar10_batches, read_image_folder
from sdjscc_phy.data.splits import read_split_file
from sdjscc_phy.errors import (
    CheckpointError, DataError, JsccflowError, ParameterError, RecipeError, TrainingError, YamlFileError,
)
from sdjscc_phy.models.checkpoints import resolve_checkpoint
from sdjscc_phy.models.jscc import load_codec
from sdjscc_phy.sweep import load_sweep, run_sweep
from sdjscc_phy.training import load_recipe
from sdjscc_phy.training.checkpoint import TRAIN_FORMAT, TRAIN_VERSION, load_checkpoint

REPO = Path(__file__).resolve().parents[1]
BER = REPO / "flowgraphs" / "qam16_awgn_ber.yaml"
RECIPE = REPO / "recipes" / "sdjscc_cifar10.yaml"
SMALL = ["--set", "options.max_items=64", "--set", "src.num_bits=64"]


def errors_of(capsys) -> list[str]:
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), lines
    return lines


# -- safe readers ------------------------------------------------------------------------------------
class _Touch:
    """Unpickling this calls Path.touch: what a hostile CIFAR-10 batch would do."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return Path.touch, (self.target,)


def test_a_cifar10_batch_whose_pickle_runs_code_is_refused_and_nothing_runs(tmp_path):
    target = tmp_path / "created-by-the-pickle"
    for i in range(1, 6):
        batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"x": _Touch(target)}
        (tmp_path / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    with pytest.raises(DataError, match="refused global pathlib") as info:
        read_cifar10_batches(tmp_path, "train")
    assert not target.exists() and "\n" not in str(info.value)


def test_a_valid_cifar10_batch_written_by_python3_protocol2_still_loads(tmp_path):
    for i in range(1, 6):
        batch = {b"data": np.full((2, 3072), i, np.uint8), b"labels": [i, 9 - i], b"batch_label": b"x"}
        (tmp_path / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))
    data = read_cifar10_batches(tmp_path, "train")
    assert len(data) == 10 and data.class_names[3] == "c3" and data.labels.tolist()[:2] == [1, 8]


def test_a_png_claiming_40000_by_40000_pixels_is_one_data_error(tmp_path):
    from PIL import Image

    folder = tmp_path / "images" / "cls"
    folder.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / "ok.png")
    data = (folder / "ok.png").read_bytes()
    # IHDR width and height sit at bytes 16..24; the CRC is not checked before the size is.
    (folder / "bomb.png").write_bytes(data[:16] + (40000).to_bytes(4, "big") * 2 + data[24:])
    with pytest.raises(DataError, match="cannot decode image 'cls/bomb.png'") as info:
        read_image_folder(tmp_path / "images", use_cache=False)
    assert "\n" not in str(info.value)


def test_an_undecodable_image_and_a_binary_split_file_are_one_line_each(tmp_path):
    folder = tmp_path / "images" / "cls"
    folder.mkdir(parents=True)
    (folder / "junk.jpg").write_bytes(os.urandom(300))
    with pytest.raises(DataError, match="cannot decode image 'cls/junk.jpg'"):
        read_image_folder(tmp_path / "images", use_cache=False)
    split = tmp_path / "split.txt"
    split.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    with pytest.raises(DataError, match="split file .* is not UTF-8 text"):
        read_split_file(split)


def test_a_checkpoint_with_the_right_tag_but_wrong_field_types_is_one_checkpoint_error(tmp_path):
    payload = torch.load(resolve_checkpoint("sdjscc_awgn"), weights_only=True)
    for field, value, message in [("state_dict", "x", "field 'state_dict' must be a dict"),
                                  ("state_dict", {"w": 1}, "must map parameter names to tensors"),
                                  ("config", None, "field 'config' must be a dict")]:
        path = tmp_path / f"{field}.pt"
        torch.save({**payload, field: value}, path)
        with pytest.raises(CheckpointError, match=message):
            load_codec(str(path))
    path = tmp_path / "last.pt"
    torch.save({"format": TRAIN_FORMAT, "version": TRAIN_VERSION, "stage": "s", "kind": "jscc", "modules": "x",
                "optimizer": {}, "rng": {}, "state": {}, "recipe": {}}, path)
    with pytest.raises(CheckpointError, match="field 'modules' must be a dict"):
        load_checkpoint(path)


# -- YAML limits -------------------------------------------------------------------------------------
FLOWGRAPH = BER.read_text()
LAUGHS = "\n".join(["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
                   + [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 10)])


def test_yaml_alias_expansion_is_refused_quickly_without_echoing_the_value(tmp_path, capsys):
    path = tmp_path / "fg.yaml"
    path.write_text(LAUGHS + "\n" + FLOWGRAPH.replace("snr_db: 10.0", "snr_db: *l9"))
    began = time.perf_counter()
    assert main(["validate", str(path)]) == 2
    assert time.perf_counter() - began < 2
    (line,) = errors_of(capsys)
    assert "aliases expand to more than 100,000 values" in line and len(line) < 300


HOSTILE_TEXT = {
    "invalid UTF-8": (b"\xff\xfe\xc3\x28", "not UTF-8 text"),
    "a NUL byte": (b"\x00", "control character"),
    "1,200-deep nesting": (b"[" * 1200 + b"]" * 1200, "nesting deeper than 32 levels"),
    "a 5,000-digit integer": (b"9" * 5000, "integer with 5000 digits is too large"),
    "a Python tag": (b"!!python/object/apply:os.system ['touch pwned']", "YAML error"),
}


def _hostile(kind: str, text: str, needle: str) -> bytes:
    payload = HOSTILE_TEXT[kind][0]
    head, _, tail = text.partition(needle)
    return head.encode() + needle.split(":")[0].encode() + b": " + payload + b"\n" + tail.partition("\n")[2].encode()


@pytest.mark.parametrize("kind", list(HOSTILE_TEXT))
def test_hostile_yaml_is_one_error_naming_the_file_and_line_in_flowgraphs_recipes_and_sweeps(kind, tmp_path, capsys):
    message = HOSTILE_TEXT[kind][1]
    fg = tmp_path / "fg.yaml"
    fg.write_bytes(_hostile(kind, FLOWGRAPH, "variables:"))
    assert main(["validate", str(fg)]) == 2
    (line,) = errors_of(capsys)
    line_no = FLOWGRAPH[:FLOWGRAPH.index("variables:")].count("\n") + 1
    assert line.startswith(f"error: {fg}:{line_no}") and message in line and len(line) < 300
    recipe = tmp_path / "recipe.yaml"
    recipe.write_bytes(_hostile(kind, RECIPE.read_text(), "seed:"))
    with pytest.raises(YamlFileError, match=message):
        load_recipe(recipe)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_bytes(b"format_version: 1\ndescription: " + HOSTILE_TEXT[kind][0] + b"\nmethods: {a: {flowgraph: x}}\n")
    assert main(["sweep", "--dry-run", str(sweep)]) == 2
    (line,) = errors_of(capsys)
    assert line.startswith(f"error: {sweep}:2") and message in line
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_exponent_floats_are_floats_and_dates_stay_strings(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("a: 1e-3\nb: -2E+4\nc: 2024-01-01\nd: 5\ne: .5\n")
    assert load_yaml_with_lines(str(path)) == {"a": 0.001, "b": -20000.0, "c": "2024-01-01", "d": 5, "e": 0.5}
    assert parse_assignment("lr=1e-3") == ("lr", 0.001)
    with pytest.raises(ParameterError, match="nesting deeper"):
        parse_assignment("x=" + "[" * 100 + "]" * 100)


# -- wrong types and non-finite values ---------------------------------------------------------------
@pytest.mark.parametrize("override, message", [
    ("options.device=5", "parameter 'device': must be a str; got int 5"),
    ("snr_db=.nan", "parameter 'snr_db': must be a finite number; got nan"),
    ("ch.snr_db=.inf", "parameter 'snr_db': must be a finite number; got inf"),
    ("snr_db=-1.2e21", "parameter 'snr_db': must be in [-50.0, 100.0]"),
])
def test_wrong_types_and_nonfinite_set_values_are_one_error(override, message, capsys):
    assert main(["validate", str(BER), "--set", override]) == 2
    (line,) = errors_of(capsys)
    assert message in line


def test_a_mapping_as_block_id_is_an_error_not_a_traceback(tmp_path, capsys):
    path = tmp_path / "fg.yaml"
    path.write_text(FLOWGRAPH.replace("{id: src,", "{id: {a: 1},"))
    assert main(["validate", str(path), "--set", "src.num_bits=8"]) == 2
    lines = errors_of(capsys)
    assert any("blocks[0]: 'id' must be an identifier" in line for line in lines)


def test_a_non_string_sweep_grid_key_is_an_error(tmp_path, capsys):
    path = tmp_path / "sweep.yaml"
    path.write_text(f"methods: {{m: {{flowgraph: {BER}}}}}\ngrid:\n  product:\n    true: [1, 2]\n")
    assert main(["sweep", "--dry-run", str(path)]) == 2
    lines = errors_of(capsys)
    assert any(f"{path}:4: grid.product: variable name True must be a name" in line for line in lines)


def test_sweep_files_report_every_key_error_at_once_with_lines(tmp_path, capsys):
    path = tmp_path / "sweep.yaml"
    path.write_text(textwrap.dedent(f"""\
        format_version: 1
        description: [1]
        output: 5
        methods:
          m:
            flowgraph: {BER}
            set: [1]
            train: {{recipe: {RECIPE}, stage: 3, checkpoint: enc}}
        """))
    assert main(["sweep", "--dry-run", str(path)]) == 2
    text = "\n".join(errors_of(capsys))
    for expected in (":2: key 'description': must be a str", ":3: key 'output': must be a path",
                     ":7: method 'm': key 'set': must be a mapping",
                     ":8: method 'm': train: key 'stage': must be a str"):
        assert expected in text, text


def test_recipe_num_threads_nan_is_refused_at_load(tmp_path):
    with pytest.raises(RecipeError, match="key 'num_threads': must be a int; got float nan"):
        load_recipe(RECIPE, ["num_threads=.nan"])


# -- paths -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../../x", "/abs", ".hidden", "a/b"])
def test_a_stage_name_cannot_leave_the_output_folder(name):
    with pytest.raises(RecipeError, match="key 'name' must be a plain name"):
        load_recipe(RECIPE, [f"stages.0.name={name!r}"])


def test_a_sweep_method_name_cannot_be_a_path(tmp_path, capsys):
    path = tmp_path / "sweep.yaml"
    path.write_text(f"methods: {{'../up': {{flowgraph: {BER}}}}}\n")
    assert main(["sweep", "--dry-run", str(path)]) == 2
    assert "method name must be a plain name" in errors_of(capsys)[0]


@pytest.mark.parametrize("target, message", [
    ("/tmp", "is a folder"), ("/proc/version", "cannot be written|not writable|already exists"),
    ("/dev/null", "is not a regular file"),
])
def test_items_csv_is_checked_before_the_run_and_leaves_no_temp_file(target, message, tmp_path, capsys):
    before = set(os.listdir("/"))
    assert main(["run", str(BER), *SMALL, "--set", f"sink.items_csv={target}"]) == 2
    (line,) = errors_of(capsys)
    assert "parameter 'items_csv'" in line and any(m in line for m in message.split("|")), line
    assert set(os.listdir("/")) == before


def test_run_output_and_items_csv_are_not_overwritten_without_force(tmp_path, capsys):
    out, items = tmp_path / "r.json", tmp_path / "items.csv"
    assert main(["run", str(BER), *SMALL, "--output", str(out), "--set", f"sink.items_csv={items}"]) == 0
    first = out.read_text()
    assert main(["run", str(BER), *SMALL, "--output", str(out)]) == 2
    assert "already exists; pass --force to replace it" in errors_of(capsys)[-1]
    assert main(["run", str(BER), *SMALL, "--set", f"sink.items_csv={items}"]) == 2
    assert "already exists; set overwrite: true to replace it" in errors_of(capsys)[-1]
    assert out.read_text() == first
    assert main(["run", str(BER), *SMALL, "--output", str(out), "--force", "--set", f"sink.items_csv={items}",
                 "--set", "sink.overwrite=true"]) == 0
    assert main(["run", str(BER), *SMALL, "--output", str(tmp_path)]) == 2
    assert "is a directory" in errors_of(capsys)[-1]  # (click checks this one itself)


def test_training_refuses_to_replace_an_existing_export_without_force(tmp_path):
    from sdjscc_phy.training import Trainer

    recipe = load_recipe(RECIPE, [f"output_dir={tmp_path / 'runs'}", f"stages.deepjscc.export={tmp_path / 'e.pt'}"])
    (tmp_path / "e.pt").write_bytes(b"precious")
    with pytest.raises(JsccflowError, match="export '.*e.pt' already exists; pass --force"):
        Trainer(recipe, progress=False, only=("deepjscc",)).run()
    assert (tmp_path / "e.pt").read_bytes() == b"precious"
    folder = load_recipe(RECIPE, [f"output_dir={tmp_path / 'runs'}", f"stages.deepjscc.export={tmp_path}"])
    with pytest.raises(JsccflowError, match="export .* is a folder"):
        Trainer(folder, progress=False, only=("deepjscc",), force=True).run()


def test_validate_refuses_cuda_without_a_gpu(capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["validate", str(BER), "--set", "options.device=cuda"]) == 2
    assert "no CUDA device is available" in errors_of(capsys)[0]


# -- processes and locks -----------------------------------------------------------------------------
def _sweep_file(tmp_path, items: int) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(textwrap.dedent(f"""\
        output: out
        set: {{options.max_items: {items}, options.batch_size: 256}}
        methods:
          m: {{flowgraph: {BER}}}
        grid:
          product: {{snr_db: [0, 1, 2, 3], seed: [0, 1]}}
        """))
    return path


def test_a_second_sweep_on_the_same_output_folder_is_refused(tmp_path):
    sweep = load_sweep(str(_sweep_file(tmp_path, 64)))
    Path(sweep.output).mkdir()
    with FileLock(str(Path(sweep.output) / ".lock")):
        with pytest.raises(JsccflowError, match="in use by another sweep"):
            run_sweep(sweep, progress=False)
    assert run_sweep(sweep, progress=False).ran == 8


def test_a_second_training_on_the_same_output_dir_is_refused(tmp_path):
    from sdjscc_phy.training import Trainer

    recipe = load_recipe(RECIPE, [f"output_dir={tmp_path / 'runs'}", f"stages.deepjscc.export={tmp_path / 'e.pt'}"])
    (tmp_path / "runs").mkdir()
    with FileLock(str(tmp_path / "runs" / ".lock")):
        with pytest.raises(TrainingError, match="in use by another training"):
            Trainer(recipe, progress=False, only=("deepjscc",)).run()


@pytest.mark.skipif(sys.platform != "linux", reason="reads process trees the Linux way")
def test_sweep_workers_exit_when_the_sweep_is_killed_with_sigkill(tmp_path):
    path = _sweep_file(tmp_path, 2_000_000)  # minutes of work per point
    parent = subprocess.Popen([sys.executable, "-m", "sdjscc_phy.cli.main", "sweep", str(path), "--jobs", "2",
                               "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        workers: list[psutil.Process] = []
        while time.time() < deadline and len(workers) < 2:
            time.sleep(0.5)
            workers = [c for c in psutil.Process(parent.pid).children(recursive=True)
                       if "spawn_main" in " ".join(c.cmdline())]
        assert len(workers) == 2, "the sweep did not start its two workers"
        time.sleep(3)  # the workers are computing points now
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    gone, alive = psutil.wait_procs(workers, timeout=15)
    for proc in alive:
        proc.kill()
    assert not alive, f"{len(alive)} worker(s) outlived the killed sweep"
