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


def test_several_metrics_are_the_columns(results, capsys):
    assert main(["table", str(results), "--where", "snr_db=0", "--y", "accuracy", "--y", "f1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "| method \\ metric | accuracy (%) | f1 |"
    assert out[2].startswith("| sd | 42.00 ± ") and out[2].endswith(" | 0.45 |")  # f1 has no SE: none shown
    assert main(["table", str(results), "--y", "accuracy", "--y", "f1", "--cols", "snr_db"]) == 2
