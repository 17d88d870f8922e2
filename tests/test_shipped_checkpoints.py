"""Every shipped checkpoint was trained by a recipe in recipes/ as that recipe reads now.

A checkpoint export keeps the resolved stage configuration it was trained with; if a recipe is edited
without retraining (or a checkpoint is replaced by one from other settings), this fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sdjscc_phy.models.checkpoints import CHECKPOINT_DIR
from sdjscc_phy.training.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]

# The shipped SD-JSCC codecs are stage sdjscc's warm restart: 8 more epochs from its own 32-epoch export.
RESTART = ("stages.sdjscc.epochs=8",)

# checkpoint name -> (recipe file, stage, overrides it was trained with: the recipe header's command; "off"
# quoted as the stage stores it, unquoted YAML would read false)
SHIPPED = {
    "classifier_cifar10": ("classifier_cifar10.yaml", "classifier", ()),
    "deepjscc_awgn": ("sdjscc_cifar10.yaml", "deepjscc", ()),
    "sdjscc_awgn": ("sdjscc_cifar10.yaml", "sdjscc", RESTART + (
        "stages.sdjscc.init_from=../sdjscc_phy/checkpoints/sdjscc_awgn.pt",)),
    "sdjscc_nogsw_awgn": ("sdjscc_cifar10.yaml", "sdjscc", RESTART + (
        'stages.sdjscc.loss.gsw.mode="off"', "stages.sdjscc.init_from=../sdjscc_phy/checkpoints/sdjscc_nogsw_awgn.pt")),
    "cl_awgn": ("cl_cifar10.yaml", "cl", ()),
    "multitask_awgn": ("multitask_cifar10.yaml", "multitask", ()),
    "multitask_gated_awgn": ("multitask_cifar10.yaml", "multitask_gated", ()),
}

# recipe keys added after some checkpoints were trained: (section, key) -> default. A checkpoint without the
# key was trained as the default behaves (tests/test_jscc_training.py checks that the default is the old code).
ADDED_KEYS = {("model", "logit_scale"): 1.0}


def comparable(node):
    """Paths reduced to their file names (the training machine's absolute paths differ from ours); without
    ``export`` (a run may export elsewhere, the file is then copied into sdjscc_phy/checkpoints/)."""
    if isinstance(node, dict):
        return {k: comparable(v) for k, v in node.items() if k != "export"}
    if isinstance(node, str) and "/" in node:
        return Path(node).name
    return node


def test_every_shipped_checkpoint_has_a_recipe():
    assert sorted(p.stem for p in CHECKPOINT_DIR.glob("*.pt")) == sorted(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_checkpoint_matches_its_recipe(name):
    recipe_file, stage_name, overrides = SHIPPED[name]
    recipe = load_recipe(REPO / "recipes" / recipe_file, overrides)
    index, stage = next((i, s) for i, s in enumerate(recipe["stages"]) if s["name"] == stage_name)
    payload = torch.load(CHECKPOINT_DIR / f"{name}.pt", map_location="cpu", weights_only=True)
    for (section, key), default in ADDED_KEYS.items():
        if key not in payload["recipe"].get(section, {}) and stage.get(section, {}).get(key) == default:
            del stage[section][key]
    assert comparable(payload["recipe"]) == comparable(stage)
    assert payload["seed"] == recipe["seed"] + index  # the trainer seeds stage i with seed + i
