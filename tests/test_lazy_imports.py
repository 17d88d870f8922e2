"""Start-up cost: commands import torch, Numba and torchmetrics only when they need them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sdjscc_phy.errors import MissingExtraError
from sdjscc_phy.lazy import lazy_import, require

from conftest import REPO

HEAVY = ("torch", "numba", "torchmetrics", "sionna", "scipy", "matplotlib", "pandas", "dask")


def modules_loaded_by(argv: list[str]) -> tuple[int, list[str]]:
    """Run ``jsccflow ARGV`` in a fresh interpreter; (exit code, which HEAVY modules it imported)."""
    code = (
        "import json, sys\n"
        "from sdjscc_phy.cli.main import main\n"
        f"rc = main({argv!r})\n"
        f"print(json.dumps([rc, [m for m in {HEAVY!r} if m in sys.modules]]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    rc, loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    return rc, loaded


def test_help_imports_no_heavy_package():
    assert modules_loaded_by(["--help"]) == (0, [])


def test_validating_a_link_level_flowgraph_imports_no_heavy_package():
    # Blocks without a model declare their ports and infer shapes without torch.
    assert modules_loaded_by(["validate", "flowgraphs/qam16_awgn_ber.yaml"]) == (0, [])


@pytest.mark.parametrize("command", ["blocks", "metrics"])
def test_listing_blocks_or_metrics_imports_no_heavy_package(command):
    assert modules_loaded_by([command, "--json"]) == (0, [])


def test_running_imports_what_it_needs():
    rc, loaded = modules_loaded_by(["run", "flowgraphs/qam16_awgn_ber.yaml", "--set", "options.max_items=256",
                                    "--no-progress"])
    assert rc == 0 and {"torch", "numba"} <= set(loaded)


def test_deferred_module_imports_on_first_use_and_caches():
    json_module = lazy_import("json")
    assert "dumps" not in vars(json_module)
    assert json_module.dumps([1]) == "[1]"
    assert vars(json_module)["dumps"] is json.dumps


def test_missing_extra_names_the_extra_in_one_line():
    missing = lazy_import("jsccflow_no_such_package.sub", extra="heif")
    with pytest.raises(MissingExtraError, match=r"^this needs the optional package 'jsccflow_no_such_package': "
                                                r"pip install 'jsccflow\[heif\]'$"):
        missing.anything


def test_missing_module_without_extra_is_a_plain_import_error():
    with pytest.raises(ModuleNotFoundError):
        require("jsccflow_no_such_package")
