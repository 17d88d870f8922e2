"""Sweep points that need a trained model: trained once through the recipe, cached by hash, stage 1 reused."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, make_image_folder
from sdjscc_phy.cli.main import main
from sdjscc_phy.models.classifier import CifarClassifier, export_classifier
from sdjscc_phy.sweep import load_sweep, read_rows, run_sweep
from sdjscc_phy.sweep.models import plan_model


@pytest.fixture
def smoke(tmp_path) -> Path:
    """A two-stage smoke recipe (MSE, then semantic with GSW) on 3 classes x 12 random 32x32 JPEGs, and a
    sweep over tau whose points run the SD-JSCC flowgraph with the trained codec on the 6 held-out images."""
    make_image_folder(tmp_path / "images", ("a", "b", "c"), 12, 32)
    (tmp_path / "val.txt").write_text("a/0.jpg\nb/0.jpg\nc/0.jpg\na/1.jpg\nb/1.jpg\nc/1.jpg\n")
    torch.manual_seed(0)
    export_classifier(CifarClassifier(widths=(8, 8, 8), num_classes=3), tmp_path / "clf.pt", ["a", "b", "c"], {})
    common = {"epochs": 1, "batch_size": 10, "optimizer": {"name": "Adam", "lr": 1e-3}, "train": ["enc", "dec"],
              "validation": {"set": ["src.split=val"]}}
    train = REPO / "flowgraphs" / "train"
    recipe = {"seed": 0, "output_dir": "runs", "variables": {"bpp": 0.25},
              "set": [f"data_root={tmp_path / 'images'}", f"src.split_file={tmp_path / 'val.txt'}"], "stages": [
        {**common, "name": "mse", "flowgraph": str(train / "deepjscc_awgn.yaml"), "export": "export/mse.pt",
         "set": ["enc.width=8", "dec.width=8"]},
        {**common, "name": "sem", "flowgraph": str(train / "sdjscc_awgn.yaml"), "export": "export/sem.pt",
         "variables": {"codec": "export/mse.pt", "classifier": str(tmp_path / "clf.pt"), "layer": "block1", "tau": 1.0},
         "set": ["semantic.gsw_images=20"]},
    ]}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(f"""\
        output: out
        models: models
        set:
          src.dataset: folder
          src.root: images
          src.split: val
          src.split_file: val.txt
          task.checkpoint: {tmp_path / 'clf.pt'}
          options.batch_size: 6
        methods:
          sd:
            flowgraph: {REPO / 'flowgraphs' / 'sdjscc_awgn.yaml'}
            train:
              recipe: recipe.yaml
              stage: sem
              set: {{stages.sem.variables.tau: $tau}}
              checkpoint: [enc.checkpoint, dec.checkpoint]
        grid:
          product: {{tau: [1, 100], snr_db: [5]}}
        """))
    return tmp_path


def test_trained_points_train_each_model_once_and_share_stage_1(smoke, capsys):
    sweep_path = str(smoke / "sweep.yaml")
    assert main(["sweep", sweep_path, "--dry-run"]) == 0  # validated against untrained stand-ins
    listing = capsys.readouterr().out
    assert listing.count("(to train)") == 2 and not (smoke / "models").exists()

    summary = run_sweep(load_sweep(sweep_path), progress=False)
    assert (summary.ran, summary.trained) == (2, 3)  # stage mse once, stage sem per tau
    assert len(list((smoke / "models").glob("mse-*/mse.pt"))) == 1
    assert len(list((smoke / "models").glob("sem-*/sem.pt"))) == 2
    rows = read_rows(str(smoke / "out" / "results.csv"))
    assert [(r["tau"], r["snr_db"], r["items"]) for r in rows] == [(1, 5, 6), (100, 5, 6)]

    # A checkout without the model cache (runs/ is not committed) keeps the finished points; a changed
    # input of the recipe (here its classifier) makes new model keys: the points retrain and rerun.
    shutil.rmtree(smoke / "models")
    assert (lambda s: (s.skipped, s.ran, s.trained))(run_sweep(load_sweep(sweep_path), progress=False)) == (2, 0, 0)
    record_path = next((smoke / "out" / "points").glob("*.json"))
    record = json.loads(record_path.read_text())
    record["train"]["checkpoint"] = str(smoke / "models" / "sem-0000000000000000" / "sem.pt")  # another model key
    record_path.write_text(json.dumps(record))
    assert (lambda s: (s.skipped, s.ran, s.trained))(run_sweep(load_sweep(sweep_path), progress=False)) == (1, 1, 2)
    torch.manual_seed(1)
    export_classifier(CifarClassifier(widths=(8, 8, 8), num_classes=3), smoke / "clf.pt", ["a", "b", "c"], {})
    assert (lambda s: (s.skipped, s.ran, s.trained))(run_sweep(load_sweep(sweep_path), progress=False)) == (0, 2, 2)  # mse: no classifier
    rows = read_rows(str(smoke / "out" / "results.csv"))  # with the new classifier

    # Another sweep (another output) with one of these taus reuses the cached model: nothing trains.
    text = (smoke / "sweep.yaml").read_text().replace("tau: [1, 100]", "tau: [100]").replace("output: out", "output: out2")
    (smoke / "sweep2.yaml").write_text(text)
    again = run_sweep(load_sweep(str(smoke / "sweep2.yaml")), progress=False)
    assert (again.ran, again.trained) == (1, 0)
    assert read_rows(str(smoke / "out2" / "results.csv"))[0]["accuracy"] == rows[1]["accuracy"]

    # Where the recipe's own stage-1 export exists and the overrides leave stage 1 alone, it is used as is.
    (smoke / "export").mkdir()
    shutil.copy(next((smoke / "models").glob("mse-*/mse.pt")), smoke / "export" / "mse.pt")
    point = load_sweep(sweep_path).points[0]
    plan = plan_model(point.train, str(smoke / "models"))
    assert plan.stages[0].reused and plan.stages[0].export == str(smoke / "export" / "mse.pt")
    assert not plan.stages[1].reused and plan.recipe["stages"][1]["variables"]["codec"] == plan.stages[0].export
    # A stage-1 change (another rate) retrains both stages.
    bpp = plan_model(point.train.__class__(point.train.recipe, "sem", ("variables.bpp=0.5",), ()), "m")
    assert not bpp.stages[0].reused and bpp.stages[0].key != plan.stages[0].key
    # Another training seed retrains both stages too (the recipe's export was trained with its own seed).
    seeded = plan_model(point.train.__class__(point.train.recipe, "sem", ("seed=1",), ()), "m")
    assert not seeded.stages[0].reused and seeded.stages[0].key != plan.stages[0].key
    # A stage's own seed retrains that stage alone, as `jsccflow train --stage sem --set seed=1` would;
    # given the seed the stage already trains with, it is the same model.
    own = plan_model(point.train.__class__(point.train.recipe, "sem", ("stages.sem.seed=1",), ()), "m")
    assert own.stages[0].reused and not own.stages[1].reused
    assert own.stages[1].key != plan.stages[1].key
    assert plan_model(point.train.__class__(point.train.recipe, "sem", ("stages.sem.seed=0",), ()), "m").stages[1].key \
        == plan.stages[1].key
    # A variable given the value it already takes (tau 1 as int, the recipe's snr_db in the stage) trains
    # the same model; another value does not.
    def key(*overrides):
        return plan_model(point.train.__class__(point.train.recipe, "sem", overrides, ()), "m").stages[1].key
    same = key("stages.sem.variables.tau=1.0")
    assert key("stages.sem.variables.tau=1") == key("stages.sem.variables.snr_db=5") == key() == same
    assert key("stages.sem.variables.tau=10") != same and key("stages.sem.variables.snr_db=10") != same
    # Checkpoints named inside a list enter the key by content: a retrained file under the same name is
    # another model.
    listed = f"stages.sem.set=semantic.more_classifiers=[{smoke / 'clf2.pt'}]"
    keys = []
    for seed in (2, 3):
        torch.manual_seed(seed)
        export_classifier(CifarClassifier(widths=(8, 8, 8), num_classes=3), smoke / "clf2.pt", ["a", "b", "c"], {})
        keys.append(key(listed))
    assert same != keys[0] != keys[1]


def test_recipe_and_model_problems_are_sweep_errors_before_training(smoke, capsys):
    text = (smoke / "sweep.yaml").read_text()
    (smoke / "bad.yaml").write_text(text.replace("stages.sem.variables.tau", "stages.sem.variables.tauu"))
    assert main(["sweep", str(smoke / "bad.yaml")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {smoke / 'bad.yaml'}:11: method 'sd': ") and "tauu" in line
    # A rate the flowgraph does not expect is found by validating against the stand-in codec.
    (smoke / "rate.yaml").write_text(text.replace("{stages.sem.variables.tau: $tau}",
                                                  "{stages.sem.variables.tau: $tau, variables.bpp: 0.5}"))
    assert main(["sweep", str(smoke / "rate.yaml")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "parameter 'bpp' is 0.25 but checkpoint" in line and "codes 0.5 bpp" in line
    assert not (smoke / "models").exists() and not (smoke / "out" / "results.csv").exists()


def test_a_stage_another_process_is_training_is_waited_for_not_trained_twice(smoke, monkeypatch):
    import threading

    from filelock import FileLock

    import sdjscc_phy.training
    from sdjscc_phy.sweep.models import train_stage

    point = load_sweep(str(smoke / "sweep.yaml")).points[0]
    plan = plan_model(point.train, str(smoke / "models"))
    stage = plan.stages[0]
    Path(stage.export).parent.mkdir(parents=True)
    lock = FileLock(str(Path(stage.export).parent / ".lock"))
    lock.acquire()  # another sweep is training this stage

    def no_second_training(*args, **kwargs):
        raise AssertionError("trained a stage that another process was training")

    monkeypatch.setattr(sdjscc_phy.training, "Trainer", no_second_training)
    result = {}
    waiter = threading.Thread(target=lambda: result.setdefault("path", train_stage(plan, stage)))
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive()  # waits for the lock
    Path(stage.export).write_bytes(b"trained")  # the other process finishes and releases
    lock.release()
    waiter.join(10)
    assert result["path"] == stage.export


def test_model_keys_hold_in_another_checkout_and_follow_the_training_flowgraph(smoke):
    """Keys hash paths relative to the recipe, so a clone elsewhere finds the models and points recorded
    here; the training flowgraph counts by content: a comment leaves the key, a parameter changes it."""
    from sdjscc_phy.sweep.spec import TrainSpec

    recipe = yaml.safe_load((smoke / "recipe.yaml").read_text())
    recipe["set"] = ["data_root=./images", "src.split_file=./val.txt"]
    for stage in recipe["stages"]:
        stage["flowgraph"] = f"./flowgraphs/{Path(stage['flowgraph']).name}"
    recipe["stages"][1]["variables"]["classifier"] = "./clf.pt"

    def sem_key(root: Path) -> str:
        return plan_model(TrainSpec(str(root / "recipe.yaml"), "sem", (), ()), str(root / "m")).stages[1].key

    roots = [smoke / "a", smoke / "b" / "c"]  # two checkouts at different places
    for root in roots:
        shutil.copytree(REPO / "flowgraphs" / "train", root / "flowgraphs")
        shutil.copytree(smoke / "images", root / "images")
        for name in ("val.txt", "clf.pt"):
            shutil.copy(smoke / name, root / name)
        (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    assert sem_key(roots[0]) == sem_key(roots[1])
    flowgraph = roots[1] / "flowgraphs" / "sdjscc_awgn.yaml"
    text = flowgraph.read_text()
    flowgraph.write_text("# a comment\n" + text)
    assert sem_key(roots[1]) == sem_key(roots[0])
    flowgraph.write_text(text.replace("flip: random", "flip: none"))
    assert sem_key(roots[1]) != sem_key(roots[0])
