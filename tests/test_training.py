"""Recipes, the trainer (checkpoints, exact resume, NaN guard), the classifier and its export."""

from __future__ import annotations

import csv
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from conftest import make_image_folder
from sdjscc_phy.cli.main import main as jsccflow_main
from sdjscc_phy.errors import CheckpointError, RecipeError, TrainingError
from sdjscc_phy.models.classifier import FEATURE_LAYERS, CifarClassifier, VggClassifier, export_classifier, load_classifier
from sdjscc_phy.training import Trainer, load_checkpoint, load_recipe, train
from sdjscc_phy.training.checkpoint import atomic_torch_save

REPO = Path(__file__).resolve().parents[1]
CLASSIFIER_FLOWGRAPH = REPO / "flowgraphs" / "train" / "classifier.yaml"


class StopRun(Exception):
    """Raised by a callback to kill a run between two steps."""


def data_overrides(tmp_path: Path) -> list[str]:
    """Flowgraph overrides that point the image source at the tiny data in ``tmp_path``."""
    return [f"data_root={tmp_path / 'images'}", f"src.split_file={tmp_path / 'val.txt'}"]


@pytest.fixture
def recipe_path(tmp_path) -> Path:
    """A 2-epoch classifier recipe (flowgraphs/train/classifier.yaml) on 3 classes x 10 random 16x16 JPEGs
    (2 per class held out), tiny network."""
    make_image_folder(tmp_path / "images", ("a", "b", "c"), 10, 16)
    (tmp_path / "val.txt").write_text("# held out\na/0.jpg\na/1.jpg\nb/0.jpg\nb/1.jpg\nc/0.jpg\nc/1.jpg\n")
    recipe = {
        "seed": 7,
        "output_dir": "runs",
        "set": data_overrides(tmp_path),
        "stages": [{
            "name": "clf", "flowgraph": str(CLASSIFIER_FLOWGRAPH), "train": ["clf"],
            "set": ["clf.widths=[8, 16, 16]", "clf.num_classes=3", "clf.whitening_images=16"],
            "epochs": 2, "batch_size": 8, "precision": "fp32",
            "optimizer": {"name": "SGD", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
                          "group_scales": {"norm_bias": {"lr": 4.0}}},
            "schedule": {"kind": "linear_warmup_decay", "warmup_fraction": 0.25, "start_factor": 0.2},
            "checkpoint_every_steps": 2,
            "export": "export/clf.pt",
            "validation": {"set": ["src.split=val"]},
        }],
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def run(recipe_path, *overrides, resume=False, callbacks=()):
    """Train; runs of one test share the recipe's export path, so each may replace the last one's export."""
    trainer = Trainer(load_recipe(recipe_path, list(overrides)), resume=resume, progress=False, callbacks=callbacks,
                      force=True)
    return trainer, trainer.run()


def stop_after(step):
    def callback(trainer, stage, global_step, loss):
        if global_step == step:
            raise StopRun

    return callback


def test_run_writes_checkpoint_csv_and_export(recipe_path):
    results = train(recipe_path, progress=False)
    out = recipe_path.parent / "runs" / "clf"
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["state"]["finished"] and ckpt["state"]["global_step"] == 6  # 24 images / 8 x 2 epochs
    assert set(ckpt["rng"]) == {"torch", "numpy", "python"} and ckpt["recipe"]["seed"] == 7
    assert ckpt["code_version"]["jsccflow"]
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"train_loss", "val_accuracy", "val_loss_ce", "val_loss", "lr", "epoch_time_s"} <= set(rows[0])
    model = load_classifier(recipe_path.parent / "export" / "clf.pt")
    assert model.class_names == ("a", "b", "c") and model.metadata["metrics"] == results["clf"]
    x = torch.rand(4, 3, 16, 16)
    assert torch.allclose(model.predict(x), trained_model(recipe_path).predict(x), atol=2e-2)


def test_a_vgg_classifier_trains_through_the_same_flowgraph_and_loads_as_one(recipe_path):
    """The unseen receiver's recipe: the classifier flowgraph with architecture vgg; no whitening calibration."""
    _, results = run(recipe_path, "stages.clf.set=[clf.architecture=vgg, 'clf.widths=[4, 8, 8]', clf.num_classes=3, "
                                  "clf.logit_scale=1.0]", "stages.clf.optimizer.group_scales={}")
    model = load_classifier(recipe_path.parent / "export" / "clf.pt")
    assert isinstance(model, VggClassifier) and model.arch["widths"] == [4, 8, 8]
    assert model.metadata["architecture"] == "VggClassifier" and model.metadata["metrics"] == results["clf"]
    ckpt = load_checkpoint(recipe_path.parent / "runs" / "clf" / "last.pt")
    rebuilt = VggClassifier(widths=[4, 8, 8], num_classes=3, logit_scale=1.0)
    rebuilt.load_state_dict(ckpt["modules"]["clf.model"])
    x = torch.rand(4, 3, 16, 16)
    assert torch.allclose(model.predict(x), rebuilt.eval().predict(x), atol=2e-2)


def test_vgg_classifier_export_round_trip_and_unknown_architecture(tmp_path):
    model = VggClassifier(widths=(4, 8, 16), num_classes=5, tta_flip=False).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that a lost buffer shows
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    export_classifier(model, tmp_path / "vgg.pt", list("abcde"), {})
    loaded = load_classifier(tmp_path / "vgg.pt")
    x = torch.rand(3, 3, 32, 32)
    assert type(loaded) is VggClassifier and not loaded.tta_flip and loaded.class_names == tuple("abcde")
    assert torch.allclose(loaded.predict(x), model.predict(x), atol=2e-2)
    payload = torch.load(tmp_path / "vgg.pt", weights_only=True)
    atomic_torch_save({**payload, "architecture": "ResNet"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="unknown architecture 'ResNet'"):
        load_classifier(tmp_path / "other.pt")


def trained_model(recipe_path):
    """The trained fp32 model, rebuilt from the stage checkpoint."""
    ckpt = load_checkpoint(recipe_path.parent / "runs" / "clf" / "last.pt")
    model = CifarClassifier(widths=[8, 16, 16], num_classes=3)
    model.load_state_dict(ckpt["modules"]["clf.model"])
    return model.eval()


def test_resume_after_a_kill_reproduces_the_uninterrupted_loss_trajectory(recipe_path):
    full, _ = run(recipe_path, "output_dir=full")
    with pytest.raises(StopRun):
        run(recipe_path, "output_dir=killed", callbacks=[stop_after(5)])
    resumed, _ = run(recipe_path, "output_dir=killed", resume=True)
    # the last checkpoint was taken after step 4 (checkpoint_every_steps=2), so steps 5 and 6 run again
    assert resumed.step_losses == full.step_losses[4:]
    a = load_checkpoint(recipe_path.parent / "full" / "clf" / "last.pt")["modules"]["clf.model"]
    b = load_checkpoint(recipe_path.parent / "killed" / "clf" / "last.pt")["modules"]["clf.model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_existing_checkpoint_without_resume_is_refused(recipe_path):
    run(recipe_path, "stages.clf.epochs=1")
    with pytest.raises(TrainingError, match="--resume"):
        run(recipe_path, "stages.clf.epochs=1")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "mismatched"])
def test_corrupt_or_mismatched_checkpoint_is_a_checkpoint_error(recipe_path, damage):
    run(recipe_path, "stages.clf.epochs=1", "stages.clf.export=null")
    ckpt = recipe_path.parent / "runs" / "clf" / "last.pt"
    overrides = ["stages.clf.epochs=2"]
    if damage == "garbage":
        ckpt.write_bytes(b"not a checkpoint")
    elif damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
    else:
        overrides.append("stages.clf.set=clf.widths=[8, 16, 32]")
    with pytest.raises(CheckpointError, match="last.pt") as info:
        run(recipe_path, *overrides, resume=True)
    assert "\n" not in str(info.value)


def test_nan_loss_raises_training_error_and_keeps_the_last_good_checkpoint(recipe_path):
    def poison(trainer, stage, global_step, loss):
        if global_step == 3:
            with torch.no_grad():
                stage.fg.blocks["clf"].model.head.weight.fill_(float("nan"))

    with pytest.raises(TrainingError, match="nan.*last good checkpoint kept") as info:
        run(recipe_path, callbacks=[poison])
    assert "\n" not in str(info.value)
    ckpt = load_checkpoint(recipe_path.parent / "runs" / "clf" / "last.pt")
    assert ckpt["state"]["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["modules"]["clf.model"].values() if v.is_floating_point())


def test_nan_loss_mid_epoch_names_the_step(recipe_path):
    def poison(trainer, stage, global_step, loss):
        if global_step == 5:
            with torch.no_grad():
                stage.fg.blocks["clf"].model.head.weight.fill_(float("inf"))

    with pytest.raises(TrainingError, match="epoch 2 step 6: loss is nan"):
        run(recipe_path, callbacks=[poison])
    assert load_checkpoint(recipe_path.parent / "runs" / "clf" / "last.pt")["state"]["global_step"] == 4


def test_atomic_save_leaves_no_temporary_files(tmp_path):
    atomic_torch_save({"x": torch.ones(3)}, tmp_path / "a" / "b.pt")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.pt"]


@pytest.mark.parametrize("override, message", [
    ("stages.clf.bogus=1", "stage 'clf': key 'bogus': unknown parameter"),
    ("stages.clf.validation.bogus=1", "stage 'clf': validation: key 'bogus': unknown parameter"),
    ("stages.clf.epochs=0", "key 'epochs': must be in \\[1, inf\\]; got 0"),
    ("stages.clf.precision=fp8", "key 'precision': must be one of"),
    ("stages.clf.flowgraph=nope.yaml", "key 'flowgraph': file .*nope.yaml' does not exist"),
    ("stages.nope.epochs=1", "no element 'nope'"),
    ("seed=abc", "key 'seed': must be a int"),
    ("device=tpu", "key 'device': must be auto, cpu, cuda or cuda:N; got 'tpu'"),
    ("stages.clf.optimizer.name=Nope", "torch.optim optimiser"),
    ("stages.clf.optimizer.bogus=1", "SGD has no argument 'bogus'"),
    ("stages.clf.schedule.kind=nope", "schedule.kind must be one of"),
    ("stages.clf.schedule.bogus=1", "schedule 'linear_warmup_decay': parameter 'bogus': unknown parameter"),
    ("stages.clf.schedule.warmup_fraction='0.05'", "parameter 'warmup_fraction': must be a float; got str"),
    ("stages.clf.schedule.end_factor=.nan", "parameter 'end_factor': must be a finite number"),
    ("stages.clf.optimizer.lr='0.1'", "SGD argument 'lr' must be like its default"),
    ("stages.clf.optimizer.nesterov=1", "SGD argument 'nesterov' must be like its default False"),
    ("stages.clf.optimizer.clip_grad_norm=-1", "clip_grad_norm must be a positive number"),
])
def test_recipe_errors_are_one_line_recipe_errors_with_file_and_line(recipe_path, override, message):
    with pytest.raises(RecipeError, match=message) as info:
        load_recipe(recipe_path, [override])
    assert "\n" not in str(info.value) and str(info.value).startswith(str(recipe_path))


def test_every_recipe_error_is_reported_at_once_with_its_line(recipe_path):
    text = recipe_path.read_text().replace("epochs: 2", "epochs: 0").replace("precision: fp32", "precision: fp8")
    recipe_path.write_text(text)
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe_path, ["stages.clf.batch_size=-1"])
    lines = str(info.value).splitlines()
    assert len(lines) == 3 and {"epochs", "precision", "batch_size"} == {l.split("'")[3] for l in lines}
    epochs_line = next(i for i, l in enumerate(text.splitlines(), 1) if "epochs: 0" in l)
    assert any(l.startswith(f"{recipe_path}:{epochs_line}: ") and "epochs" in l for l in lines)


@pytest.mark.parametrize("overrides, message", [
    (["stages.clf.train=[src]"], "train: block 'src' \\(image_source\\) has no torch path"),
    (["stages.clf.train=[ce]"], "train: block 'ce' \\(cross_entropy\\) has no trainable parameters"),
    (["stages.clf.train=[nope]"], "train: no block 'nope' in the flowgraph"),
    (["stages.clf.set=ce.weight=-1"], "block 'ce': parameter 'weight': must be in"),
    (["stages.clf.validation.set=[clf.logit_scale=0.5]"], "validation: set changes trained block 'clf'"),
])
def test_training_graph_errors_name_the_block(recipe_path, overrides, message):
    with pytest.raises(RecipeError, match=message) as info:
        load_recipe(recipe_path, overrides, check_flowgraphs=True)
    assert not (recipe_path.parent / "runs").exists()
    assert all(line.startswith(str(recipe_path)) for line in str(info.value).splitlines())


def test_clip_grad_norm_clips_the_global_gradient_norm_before_each_step(recipe_path):
    plain, _ = run(recipe_path, "output_dir=plain")
    loose, _ = run(recipe_path, "output_dir=loose", "stages.clf.optimizer.clip_grad_norm=1e9")
    tight, _ = run(recipe_path, "output_dir=tight", "stages.clf.optimizer.clip_grad_norm=1e-6")
    assert loose.step_losses == plain.step_losses  # a bound above every gradient norm changes nothing
    assert tight.step_losses[0] == plain.step_losses[0] and tight.step_losses[1:] != plain.step_losses[1:]


def test_overrides_parse_yaml_address_stages_by_name_or_index_and_append_to_set(recipe_path):
    recipe = load_recipe(recipe_path, ["stages.0.batch_size=4", "stages.clf.set=clf.widths=[4, 8, 8]"])
    stage = recipe["stages"][0]
    assert stage["batch_size"] == 4 and stage["set"][-1] == "clf.widths=[4, 8, 8]" and len(stage["set"]) == 4
    assert Path(stage["flowgraph"]).is_absolute() and Path(stage["export"]).is_absolute()
    assert load_recipe(recipe_path, ["stages.clf.set=[]"])["stages"][0]["set"] == []  # a list replaces


def test_a_stage_seed_replaces_the_recipe_seed_for_that_stage_only(recipe_path):
    from sdjscc_phy.training.recipe import flowgraph_overrides

    def seed(*overrides):
        recipe = load_recipe(recipe_path, list(overrides))
        return [o for o in flowgraph_overrides(recipe, recipe["stages"][0], False) if o.startswith("options.seed=")]

    assert seed() == seed("stages.clf.seed=7") == ["options.seed=7"]  # the recipe's seed 7, stage index 0
    assert seed("stages.clf.seed=2") == seed("seed=2") == ["options.seed=2"]
    assert seed("seed=2", "stages.clf.seed=7") == ["options.seed=7"]
    with pytest.raises(RecipeError, match="stage 'clf': .*seed"):
        load_recipe(recipe_path, ["stages.clf.seed=-1"])


def test_train_command_returns_2_with_one_line_on_user_error(tmp_path, capsys):
    assert jsccflow_main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"error: recipe '{tmp_path / 'missing.yaml'}' does not exist"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_device_without_a_gpu_is_a_one_line_error_before_anything_is_written(recipe_path, capsys):
    assert jsccflow_main(["train", str(recipe_path), "--no-progress", "--set=device=cuda"]) == 2
    assert "'cuda' requested but no CUDA device is available" in capsys.readouterr().err
    assert not (recipe_path.parent / "runs").exists()


def all_tensors_on_cpu(payload) -> bool:
    if isinstance(payload, torch.Tensor):
        return payload.device.type == "cpu"
    if isinstance(payload, dict):
        return all(all_tensors_on_cpu(v) for v in payload.values())
    return all(all_tensors_on_cpu(v) for v in payload) if isinstance(payload, (list, tuple)) else True


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_classifier_trains_on_the_gpu_resumes_there_and_exports_cpu_tensors(recipe_path):
    with pytest.raises(StopRun):
        run(recipe_path, "device=cuda", callbacks=[stop_after(3)])
    resumed, results = run(recipe_path, "device=cuda", resume=True)
    assert [step for step, _ in resumed.step_losses] == [3, 4, 5, 6]  # checkpointed after step 2
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in resumed.step_losses)
    export = recipe_path.parent / "export" / "clf.pt"
    assert all_tensors_on_cpu(torch.load(export, weights_only=True))
    assert load_classifier(export).metadata["metrics"] == results["clf"]


def test_classifier_features_and_logits_contract():
    model = CifarClassifier(widths=[8, 16, 24], num_classes=5).eval()
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    shapes = {layer: tuple(model.features(x, layer).shape) for layer in FEATURE_LAYERS}
    assert shapes == {"stem": (2, 24, 31, 31), "block1": (2, 8, 15, 15), "block2": (2, 16, 7, 7),
                      "block3": (2, 24, 3, 3), "pool": (2, 24, 1, 1), "logits": (2, 5, 1, 1)}
    assert torch.equal(model.features(x, "pool"), model.features(x, "block3").amax(dim=(2, 3), keepdim=True))
    for layer in FEATURE_LAYERS:
        feature, logits = model.forward_features(x, layer)
        assert torch.allclose(logits, model(x), atol=1e-5) and logits.shape == (2, 5)
    grad = torch.autograd.grad(logits[:, 0].sum(), feature)[0]  # GSW needs d y^c / d f_k (eq. 9)
    assert grad.shape == feature.shape and grad.abs().sum() > 0
    assert torch.allclose(model.predict(x), 0.5 * (model(x) + model(x.flip(-1))), atol=1e-5)
    with pytest.raises(ValueError, match="layer must be one of"):
        model.features(x, "block9")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_loaded_classifier_lives_on_its_map_location():
    model = load_classifier(map_location="cuda")  # the shipped one
    assert {p.device.type for p in model.parameters()} == {"cuda"} and not model.training


def test_load_classifier_rejects_foreign_files(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_classifier(tmp_path / "bad.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a jsccflow classifier"):
        load_classifier(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="is neither a file nor a shipped name"):
        load_classifier(tmp_path / "none.pt")


def test_click_train_command_runs_a_recipe(recipe_path):
    from click.testing import CliRunner

    from sdjscc_phy.cli.train import train as train_command

    result = CliRunner().invoke(train_command, [str(recipe_path), "--set", "stages.clf.epochs=1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "val_accuracy" in result.output
    assert "clf epoch 1/1: train_loss=" in result.stderr  # without a bar (e.g. a log file), one line per epoch
    result = CliRunner().invoke(train_command, [str(recipe_path), "--set", "stages.clf.bogus=1"])
    assert isinstance(result.exception, RecipeError)


def test_alternating_flip_mirrors_each_image_in_every_other_epoch_only_in_training(recipe_path):
    from sdjscc_phy.core.block import BatchContext
    from sdjscc_phy.training.recipe import stage_flowgraphs

    recipe = load_recipe(recipe_path)
    train_fg, _ = stage_flowgraphs(recipe, recipe["stages"][0])
    src = train_fg.blocks["src"]

    def plan(epoch, training=True):
        ctx = BatchContext(0, 0, 8, "torch", torch.device("cpu"), 7, "src", 0, epoch, training)
        src._plan_epoch = None
        return src._epoch_plan(ctx)

    flips = [plan(epoch)[1][0].clone() for epoch in range(3)]
    assert torch.equal(flips[1], ~flips[0]) and torch.equal(flips[2], flips[0])
    assert plan(0, training=False)[1] is None  # validation and calibration see the images as they are
    assert not torch.equal(plan(0)[0], plan(1)[0])  # a new order every epoch


def test_resume_with_a_changed_recipe_is_refused(recipe_path):
    with pytest.raises(StopRun):
        run(recipe_path, callbacks=[stop_after(3)])  # last checkpoint: step 2
    with pytest.raises(CheckpointError, match="epochs=2; the recipe now says 3"):
        run(recipe_path, "stages.clf.epochs=3", resume=True)
    run(recipe_path, "stages.clf.checkpoint_every_steps=1", resume=True)  # bookkeeping may change


def test_a_stage_with_its_own_seed_resumes_under_another_recipe_seed_but_not_another_stage_seed(recipe_path):
    """The stage never read the recipe's seed, so changing it does not change the run; its own seed does."""
    full, _ = run(recipe_path, "stages.clf.seed=5", "output_dir=full")
    with pytest.raises(StopRun):
        run(recipe_path, "stages.clf.seed=5", callbacks=[stop_after(5)])
    with pytest.raises(CheckpointError, match="stage or seed differs"):
        run(recipe_path, "stages.clf.seed=6", resume=True)
    with pytest.raises(CheckpointError, match="trained with seed=5; the recipe now says None"):
        run(recipe_path, "seed=5", resume=True)  # the same number, but as the recipe's seed: not how it trained
    resumed, _ = run(recipe_path, "stages.clf.seed=5", "seed=9", resume=True)
    assert resumed.step_losses == full.step_losses[4:]


def test_override_of_an_aliased_section_changes_one_stage_only(tmp_path):
    """Stages sharing a section through a YAML alias (variables: *v) get independent copies."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "output_dir: out\n"
        "stages:\n"
        f"  - {{name: a, flowgraph: {CLASSIFIER_FLOWGRAPH}, train: [clf], variables: &v {{label_smoothing: 0.1}}}}\n"
        f"  - {{name: b, flowgraph: {CLASSIFIER_FLOWGRAPH}, train: [clf], variables: *v}}\n"
    )
    loaded = load_recipe(recipe, ["stages.b.variables.label_smoothing=0.3"], check_flowgraphs=False)
    assert [s["variables"]["label_smoothing"] for s in loaded["stages"]] == [0.1, 0.3]


def test_only_the_stages_a_training_runs_are_checked_as_training_graphs(tmp_path):
    """Stage b's flowgraph override is broken; training stage a alone (--stage a) does not check it."""
    make_image_folder(tmp_path / "images", ("a", "b"), 4, 16)
    (tmp_path / "val.txt").write_text("a/0.jpg\nb/0.jpg\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "output_dir: out\n"
        f"set: [{', '.join(data_overrides(tmp_path))}]\n"
        "stages:\n"
        f"  - {{name: a, flowgraph: {CLASSIFIER_FLOWGRAPH}, train: [clf]}}\n"
        f"  - {{name: b, flowgraph: {CLASSIFIER_FLOWGRAPH}, train: [clf], set: [clf.nosuch=1]}}\n"
    )
    with pytest.raises(RecipeError, match="stage 'b'"):
        load_recipe(recipe, check_flowgraphs=True)
    assert [s["name"] for s in load_recipe(recipe, check_flowgraphs=True, only=["a"])["stages"]] == ["a", "b"]


def test_docs_describe_every_declared_recipe_key():
    from sdjscc_phy.training.recipe import RECIPE_KEYS, STAGE_KEYS, VALIDATION_KEYS

    text = (REPO / "docs" / "training.md").read_text()
    missing = [p.name for p in RECIPE_KEYS + STAGE_KEYS if f"| `{p.name}` |" not in text]
    missing += [p.name for p in VALIDATION_KEYS if f"`{p.name}`" not in text]
    assert not missing, f"docs/training.md does not describe recipe keys {missing}"


def test_variables_written_as_paths_are_relative_to_the_recipe_not_the_working_directory(tmp_path, monkeypatch):
    """The analog warm restart of docs/training.md, run from another folder: the codec variable names the
    shipped export relative to the recipe, as output_dir and export are."""
    from sdjscc_phy.models.checkpoints import CHECKPOINT_DIR

    make_image_folder(tmp_path / "images", ("a", "b"), 4, 32)
    (tmp_path / "val.txt").write_text("a/0.jpg\nb/0.jpg\n")
    monkeypatch.chdir(tmp_path)
    overrides = ["stages.0.variables.codec=../sdjscc_phy/checkpoints/deepjscc_analog_awgn.pt",
                 "variables.snr_db=7", f"set=[{', '.join(data_overrides(tmp_path))}]"]
    recipe = load_recipe(REPO / "recipes" / "deepjscc_analog_cifar10.yaml", overrides, check_flowgraphs=True)
    assert recipe["stages"][0]["variables"]["codec"] == str(CHECKPOINT_DIR / "deepjscc_analog_awgn.pt")
    assert recipe["variables"]["snr_db"] == 7
    shipped = load_recipe(REPO / "recipes" / "sdjscc_cifar10.yaml", check_flowgraphs=False)
    assert shipped["stages"][1]["variables"]["codec"] == "deepjscc_awgn"  # a shipped name stays a name
    with pytest.raises(RecipeError, match=f"'{REPO / 'recipes' / 'nope.pt'}' is neither a file"):
        load_recipe(REPO / "recipes" / "deepjscc_analog_cifar10.yaml", [
            "stages.0.variables.codec=./nope.pt", f"set=[{', '.join(data_overrides(tmp_path))}]"],
            check_flowgraphs=True)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc malloc setting")
def test_the_trainer_keeps_freed_memory_instead_of_page_faulting_it_back_every_step():
    """A step's activations (here 4 x 24 MB, freed together) come back without page faults once the trainer's
    heap setting is on; glibc's default returns them to the system and faults them in again every step."""
    script = textwrap.dedent("""
        import resource, sys
        from sdjscc_phy.training.trainer import keep_freed_heap
        if sys.argv[1] == "on":
            assert keep_freed_heap()
        def step():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            activations = [bytearray(24 << 20) for _ in range(4)]
            del activations
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        step()
        print(max(step(), step()))
    """)
    faults = {mode: int(subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True,
                                       check=True).stdout) for mode in ("off", "on")}
    assert faults["off"] > 20_000 and faults["on"] < 500, faults  # 96 MB = 24,576 pages of 4 KB
