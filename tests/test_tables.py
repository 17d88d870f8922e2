"""jsccflow table: mean ± standard error by method × grid value, differences with 'n.s.' below 2 SE."""

import pytest

from sdjscc_phy.cli.main import main
from sdjscc_phy.sweep.tables import tabulate, to_csv, to_markdown

CSV = """method,snr_db,seed,items,accuracy,accuracy_se,f1,key
sd,0,0,100,0.40,0.01,0.40,a
sd,0,1,100,0.44,0.01,0.50,b
sd,5,0,100,0.50,0.01,0.45,c
deep,0,0,100,0.20,0.01,0.20,d
deep,0,1,100,0.20,0.01,0.20,e
deep,5,0,100,0.49,0.01,0.49,f
"""


@pytest.fixture
def results(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text(CSV)
    return path


def test_cells_average_seeds_and_differences_mark_no_significant_difference(results):
    from sdjscc_phy.sweep import read_rows

    table = tabulate(read_rows(str(results)), ["accuracy"])
    assert table.rows == ["sd", "deep"] and table.columns == [0, 5]
    sd0 = table.cells[("sd", 0)]
    assert sd0.mean == pytest.approx(0.42) and sd0.se == pytest.approx((0.01**2 + 0.02**2) ** 0.5)
    diff = table.minus("deep")
    d0, d5 = diff.cells[("sd − deep", 0)], diff.cells[("sd − deep", 5)]
    assert d0.mean == pytest.approx(0.22) and d5.mean == pytest.approx(0.01)
    assert d5.se == pytest.approx(2**0.5 * 0.01)
    text = to_markdown(diff, differences=True)
    assert "+22.00 ±" in text and "+1.00 ± 1.41 (n.s.)" in text  # percent points; 1.00 < 2 × 1.41
    assert "(n.s.)" not in text.split("|")[-4]  # the significant cell carries no mark
    assert to_csv(table).splitlines()[1].startswith("sd,0,accuracy,0.42")


def test_cli_writes_markdown_and_rejects_unknown_names(results, tmp_path, capsys):
    out = tmp_path / "t.md"
    assert main(["table", str(results), "--versus", "deep", "-o", str(out)]) == 0
    assert "| sd − deep |" in out.read_text()
    assert main(["table", str(results), "--versus", "nope"]) == 2
    assert capsys.readouterr().err.strip() == "error: table: --versus 'nope' is not a method (have: sd, deep)"
    assert main(["table", str(results), "--y", "psnr"]) == 2
    assert "no column 'psnr'" in capsys.readouterr().err
    assert main(["table", str(results), "--versus", "deep", "--versus", "sd"]) == 2  # not the last one silently
    assert capsys.readouterr().err.strip() == ("error: table: --versus takes one reference row, got 2 (deep, sd); "
                                               "make one table per reference")


def test_several_metrics_are_the_columns(results, capsys):
    assert main(["table", str(results), "--where", "snr_db=0", "--y", "accuracy", "--y", "f1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "| method \\ metric | accuracy (%) | f1 |"
    assert out[2].startswith("| sd | 42.00 ± ") and out[2].endswith(" | 0.45 |")  # f1 has no SE: none shown
    assert main(["table", str(results), "--y", "accuracy", "--y", "f1", "--cols", "snr_db"]) == 2


def _qam_sweep(tmp_path, items: int, seeds: list[int], figures: str = ""):
    """A sweep of 16-QAM against QPSK at 6 dB that keeps per-item rows; its path."""
    from conftest import REPO

    flowgraph = REPO / "flowgraphs" / "qam16_awgn_ber.yaml"
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"""\
output: out
items: true
set: {{options.max_items: {items}, options.batch_size: 20, src.num_bits: 64}}
methods:
  qam16: {{flowgraph: {flowgraph}}}
  qpsk: {{flowgraph: {flowgraph}, set: {{map.constellation: qpsk, demap.constellation: qpsk}}}}
grid:
  product: {{snr_db: [6], seed: {seeds}}}
""" + (f"figures:\n  - {figures}\n" if figures else ""))
    return sweep


def test_paired_differences_per_item_and_per_seed(tmp_path):
    import csv as csv_module
    import statistics

    from sdjscc_phy.sweep import read_rows

    sweep = _qam_sweep(tmp_path, items=40, seeds=[0, 1])
    assert main(["sweep", str(sweep), "--no-progress"]) == 0
    results = tmp_path / "out" / "results.csv"
    rows = read_rows(str(results))

    def per_item(method):
        runs = []
        for row in rows:
            if row["method"] == method:
                with open(tmp_path / "out" / "items" / f"{row['key']}_sink.csv", newline="") as fh:
                    runs.append([float(r["ber"]) for r in csv_module.DictReader(fh)])
        return [sum(values) / len(values) for values in zip(*runs)]  # each item's BER over the 2 seeds

    d = [a - b for a, b in zip(per_item("qam16"), per_item("qpsk"))]
    assert len(d) == 40
    out = tmp_path / "paired.csv"
    assert main(["table", str(results), "--y", "ber", "--versus", "qpsk", "--paired", "-o", str(out)]) == 0
    table = {(r["method"], r["snr_db"]): r for r in csv_module.DictReader(open(out))}
    diff = table[("qam16 − qpsk", "6")]
    assert float(diff["mean"]) == pytest.approx(statistics.mean(d))
    assert float(diff["se"]) == pytest.approx(statistics.stdev(d) / len(d) ** 0.5)

    # Without per-item rows (they are not committed) the points stay done, and the units are the noise
    # seeds both methods ran; --item-rows reruns them.
    for path in (tmp_path / "out" / "items").iterdir():
        path.unlink()
    assert main(["sweep", str(sweep), "--no-progress"]) == 0 and not any((tmp_path / "out" / "items").iterdir())
    assert main(["table", str(results), "--y", "ber", "--versus", "qpsk", "--paired", "-o", str(out), "--force"]) == 0
    by_seed = [a["ber"] - b["ber"] for a in rows for b in rows
               if a["method"] == "qam16" and b["method"] == "qpsk" and a["seed"] == b["seed"]]
    diff = {(r["method"], r["snr_db"]): r for r in csv_module.DictReader(open(out))}[("qam16 − qpsk", "6")]
    assert float(diff["mean"]) == pytest.approx(statistics.mean(by_seed))
    assert float(diff["se"]) == pytest.approx(statistics.stdev(by_seed) / 2 ** 0.5)
    assert main(["sweep", str(sweep), "--no-progress", "--item-rows"]) == 0
    assert len(list((tmp_path / "out" / "items").iterdir())) == 4


def test_a_prefixed_sink_pairs_per_item_on_its_own_columns(tmp_path):
    """A second sink with ``prefix: rx_`` writes rx_-prefixed per-item columns, and ``--y rx_ber --paired``
    pairs per item on them: the same numbers as the unprefixed sink fed the same ports."""
    import csv as csv_module

    from conftest import REPO

    graph = (REPO / "flowgraphs" / "qam16_awgn_ber.yaml").read_text()
    graph = graph.replace("connections:\n", "  - {id: rx, type: metric_sink, params: {metrics: [ber], prefix: rx_}}\n"
                                             "connections:\n  - demap.llr -> rx.llr\n  - src.bits -> rx.bits\n")
    (tmp_path / "fg.yaml").write_text(graph)
    (tmp_path / "sweep.yaml").write_text("""\
output: out
items: true
set: {options.max_items: 40, options.batch_size: 20, src.num_bits: 64}
methods:
  qam16: {flowgraph: fg.yaml}
  qpsk: {flowgraph: fg.yaml, set: {map.constellation: qpsk, demap.constellation: qpsk}}
grid:
  product: {snr_db: [6], seed: [0, 1]}
""")
    assert main(["sweep", str(tmp_path / "sweep.yaml"), "--no-progress"]) == 0
    items = next(p for p in (tmp_path / "out" / "items").iterdir() if p.name.endswith("_rx.csv"))
    assert csv_module.DictReader(open(items)).fieldnames == ["item", "rx_ber"]
    results = str(tmp_path / "out" / "results.csv")
    tables = {}
    for y in ("ber", "rx_ber"):
        out = tmp_path / f"{y}.csv"
        assert main(["table", results, "--y", y, "--versus", "qpsk", "--paired", "-o", str(out)]) == 0
        tables[y] = [(r["method"], r["mean"], r["se"]) for r in csv_module.DictReader(open(out))]
    assert tables["rx_ber"] == tables["ber"] and len(tables["ber"]) == 3


def test_one_seed_without_item_rows_is_nothing_to_pair_and_figures_keep_the_committed_table(tmp_path, capsys):
    sweep = _qam_sweep(tmp_path, items=20, seeds=[0], figures="table --y ber --versus qpsk --paired -o paired.md")
    assert main(["sweep", str(sweep), "--no-progress"]) == 0
    paired = tmp_path / "out" / "paired.md"
    committed = paired.read_text()
    for path in (tmp_path / "out" / "items").iterdir():
        path.unlink()
    capsys.readouterr()
    assert main(["table", str(tmp_path / "out" / "results.csv"), "--y", "ber", "--versus", "qpsk", "--paired"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "one noise seed and no per-item rows" in line and "--item-rows" in line
    assert main(["figures", str(sweep)]) == 0
    assert "skipped" in capsys.readouterr().err and paired.read_text() == committed
