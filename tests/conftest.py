"""Shared fixtures: a simulated third-party plugin distribution, and flowgraph files in tmp_path."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdjscc_phy.core.registry import reload_registry

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

PLUGIN_MODULE = '''
"""A tiny out-of-tree block package, as a user would write it."""
import torch
from sdjscc_phy.core.block import Block
from sdjscc_phy.core.params import Param
from sdjscc_phy.core.ports import Port


class Gain(Block):
    """Multiplies complex symbols by a real gain."""

    type_name = "test_gain"
    inputs = (Port("x", "complex64", ("N",), "input symbols"),)
    outputs = (Port("y", "complex64", ("N",), "scaled symbols"),)
    params = (Param("gain", "float", 1.0, low=0.0, doc="linear amplitude gain"),)

    def process_host(self, inputs, ctx):
        return {"y": inputs["x"] * self.p.gain}


class Counter(Block):
    """Counts items and sums |x|^2 (a sink)."""

    type_name = "test_counter"
    inputs = (Port("x", "complex64", ("N",), "symbols"),)

    def setup(self, ctx):
        self.items, self.energy = 0, 0.0

    def process_host(self, inputs, ctx):
        self.items += inputs["x"].shape[0]
        self.energy += float((inputs["x"].abs() ** 2).sum())
        return {}

    def results(self):
        return {"items": float(self.items), "energy": self.energy}


BLOCKS = [Gain, Counter]
'''


def write_plugin(root: Path, name: str = "jsccflow_test_plugin", entry: str = "BLOCKS",
                 module: str = PLUGIN_MODULE) -> None:
    """Write an importable module plus a ``*.dist-info`` declaring it in the jsccflow.blocks group."""
    (root / f"{name}.py").write_text(module)
    dist = root / f"{name}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[jsccflow.blocks]\n{name} = {name}:{entry}\n")


def installed_plugin(tmp_path_factory, monkeypatch, name: str = "jsccflow_test_plugin", module: str = PLUGIN_MODULE):
    """Install a plugin for one test (sys.path + registry reload), yield its directory, then remove it."""
    root = tmp_path_factory.mktemp(name)
    write_plugin(root, name, module=module)
    monkeypatch.syspath_prepend(str(root))
    reload_registry()
    yield root
    sys.modules.pop(name, None)
    reload_registry()


@pytest.fixture
def plugin(tmp_path_factory, monkeypatch):
    """Install the test plugin for this test; returns its directory."""
    yield from installed_plugin(tmp_path_factory, monkeypatch)


@pytest.fixture
def write_flowgraph(tmp_path):
    """Write YAML text (dedented) to a file and return its path."""

    def write(text: str, name: str = "fg.yaml") -> str:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return str(path)

    return write


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test decodes datasets into its own cache, never the user's ~/.cache/jsccflow."""
    monkeypatch.setenv("JSCCFLOW_CACHE", str(tmp_path / "cache"))


def make_image_folder(root: Path, classes: tuple[str, ...], per_class: int, size: int) -> Path:
    """An ImageFolder tree of random RGB JPEGs: ``root/<class>/<i>.jpg``."""
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / name / f"{i}.jpg")
    return root
