"""The documentation stays true: generated references match the declarations, examples run."""

from __future__ import annotations

import re

import pytest

from sdjscc_phy.blocks import BUILTIN_BLOCKS
from sdjscc_phy.cli.main import main
from sdjscc_phy.reference import blocks_markdown, describe_blocks, describe_metrics, metrics_markdown, options_markdown

from conftest import REPO

DOCS = REPO / "docs"
#: Pages the index already links but that are not written yet; drop a name once its page exists.
PENDING_PAGES = ()
REGENERATE = "regenerate it: jsccflow {} --markdown > docs/{}.md"


def test_block_reference_is_current():
    expected = blocks_markdown(describe_blocks(BUILTIN_BLOCKS))
    assert (DOCS / "blocks.md").read_text() == expected, REGENERATE.format("blocks", "blocks")


def test_metric_reference_is_current():
    assert (DOCS / "metrics.md").read_text() == metrics_markdown(describe_metrics()), \
        REGENERATE.format("metrics", "metrics")


def test_flowgraph_reference_lists_the_declared_options():
    assert options_markdown() in (DOCS / "flowgraphs.md").read_text(), \
        "paste sdjscc_phy.reference.options_markdown() into docs/flowgraphs.md"


def test_cli_prints_the_references(capsys):
    assert main(["blocks", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Block reference") and "## awgn_channel" in out and "## symbol_mapper" in out
    assert main(["metrics", "--markdown"]) == 0
    assert capsys.readouterr().out == (DOCS / "metrics.md").read_text()


def test_python_api_examples_run(monkeypatch, capsys):
    pytest.importorskip("pandas")
    monkeypatch.chdir(REPO)
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "python-api.md").read_text(), re.S)
    assert len(blocks) >= 5
    namespace: dict = {}
    for index, code in enumerate(blocks):
        exec(compile(code, f"docs/python-api.md, python block {index + 1}", "exec"), namespace)
    assert "uncoded BER" in capsys.readouterr().out


def test_relative_links_between_docs_resolve():
    broken = []
    for page in [REPO / "README.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not [b for b in broken if not b.endswith(PENDING_PAGES)], broken


def test_index_links_every_page():
    index = (DOCS / "index.md").read_text()
    unlinked = [p.name for p in DOCS.glob("*.md") if p.name != "index.md" and f"]({p.name})" not in index]
    assert not unlinked, f"docs/index.md does not link {unlinked}"
