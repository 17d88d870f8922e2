"""jsccflow plot (metric vs variable, error bars, units) and plot-grid (originals vs reconstructions)."""

from __future__ import annotations

import textwrap

import pytest

from conftest import REPO
from sdjscc_phy.cli.main import main

RESULTS = """\
method,snr_db,seed,items,accuracy,accuracy_se,psnr_db,key
sdjscc,0,0,100,0.20,0.04,14.0,a
sdjscc,0,1,100,0.24,0.04,14.1,b
sdjscc,10,0,100,0.40,0.05,16.0,c
sdjscc,10,1,100,0.42,0.05,16.1,d
deepjscc,0,0,100,0.15,0.03,15.0,e
deepjscc,0,1,100,0.17,0.03,15.2,f
deepjscc,10,0,100,0.20,0.04,17.5,g
deepjscc,10,1,100,0.21,0.04,17.4,h
"""


@pytest.fixture
def results_csv(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text(RESULTS)
    return path


def test_plot_writes_png_and_svg_with_units_and_error_bars(results_csv, tmp_path, capsys):
    out = tmp_path / "figs" / "acc"
    assert main(["plot", str(results_csv), "--x", "snr_db", "--y", "accuracy", "--out", str(out)]) == 0
    assert capsys.readouterr().out.split() == [f"{out}.png", f"{out}.svg"]
    assert (tmp_path / "figs" / "acc.png").read_bytes()[:4] == b"\x89PNG"
    svg = (tmp_path / "figs" / "acc.svg").read_text()
    for text in ("top-1 accuracy (%)", "per complex symbol (dB)", "sdjscc", "deepjscc", "standard error"):
        assert text in svg, text


def test_a_redrawn_plot_is_byte_identical(results_csv, tmp_path):
    """Committed figures change only where their results do: no date, no random SVG element ids."""
    drawn = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert main(["plot", str(results_csv), "--x", "snr_db", "--y", "accuracy", "--out", str(out)]) == 0
        drawn.append([(tmp_path / f"{name}.{ext}").read_bytes() for ext in ("png", "svg")])
    assert drawn[0] == drawn[1] and b"<dc:date>" not in drawn[0][1]


def test_plot_default_prefix_and_selected_rows(results_csv, capsys):
    assert main(["plot", str(results_csv), "--x", "snr_db", "--y", "psnr_db", "--where", "method=sdjscc"]) == 0
    assert capsys.readouterr().out.split()[0] == str(results_csv.with_name("results_psnr_db_vs_snr_db.png"))


def test_plot_errors_are_one_line(results_csv, capsys):
    assert main(["plot", str(results_csv), "--x", "bpp"]) == 2
    assert "plot: no column 'bpp'" in capsys.readouterr().err
    assert main(["plot", str(results_csv), "--x", "snr_db", "--over", "method"]) == 2
    err = capsys.readouterr().err
    assert "several rows at one snr_db" in err and len(err.strip().splitlines()) == 1


def test_plot_grid_shows_originals_and_each_methods_reconstruction(tmp_path, capsys):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(textwrap.dedent(f"""\
        methods:
          sdjscc: {{flowgraph: {REPO / 'flowgraphs' / 'sdjscc_awgn.yaml'}}}
          deepjscc:
            flowgraph: {REPO / 'flowgraphs' / 'sdjscc_awgn.yaml'}
            set: {{enc.checkpoint: deepjscc_awgn, dec.checkpoint: deepjscc_awgn}}
        grid:
          product: {{snr_db: [5, 20]}}
        """))
    out = tmp_path / "grid"
    assert main(["plot-grid", str(sweep), "--at", "snr_db=20", "--images", "3", "--out", str(out)]) == 0
    assert capsys.readouterr().out.split() == [f"{out}.png", f"{out}.svg"]
    svg = (tmp_path / "grid.svg").read_text()
    assert "original" in svg and "deepjscc" in svg and "snr_db=20" in svg
    assert main(["plot-grid", str(sweep), "--at", "snr=20", "--out", str(out)]) == 2
    assert "--at snr: not a grid variable" in capsys.readouterr().err


def test_error_rates_get_a_log_axis_and_the_legend_sits_beside_the_axes(tmp_path, monkeypatch):
    from sdjscc_phy.plots import lines

    figures = []
    monkeypatch.setattr(lines.plt, "close", figures.append)
    rows = [{"method": "qpsk", "ebno_db": e, "items": 10, "ber": b, "ber_se": b / 10}
            for e, b in ((0, 0.08), (4, 0.012), (8, 2e-4))]
    lines.plot_lines(rows, "ebno_db", "ber", out=str(tmp_path / "ber"), labels={"qpsk": "Gray QPSK"})
    lines.plot_lines(rows, "ebno_db", "ber", out=str(tmp_path / "lin"), log_y=False)
    (log_ax,), (lin_ax,) = figures[0].axes, figures[1].axes
    assert log_ax.get_yscale() == "log" and lin_ax.get_yscale() == "linear"
    legend = log_ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["Gray QPSK"]
    figures[0].canvas.draw()
    renderer = figures[0].canvas.get_renderer()
    assert legend.get_window_extent(renderer).x0 > log_ax.get_window_extent(renderer).x1  # right of the data


def test_plot_names_methods_by_the_sweep_files_labels(results_csv, tmp_path):
    (tmp_path / "sweep.json").write_text('{"labels": {"sdjscc": "SD-JSCC"}}')
    out = tmp_path / "acc"
    assert main(["plot", str(results_csv), "--x", "snr_db", "--label", "deepjscc=deep JSCC", "--out", str(out)]) == 0
    svg = (tmp_path / "acc.svg").read_text()
    assert "SD-JSCC" in svg and "deep JSCC" in svg and "deepjscc" not in svg


def test_more_lines_than_colours_differ_by_marker(tmp_path, monkeypatch):
    from sdjscc_phy.plots import lines

    figures = []
    monkeypatch.setattr(lines.plt, "close", figures.append)
    colours = len(lines.plt.rcParams["axes.prop_cycle"].by_key()["color"])
    rows = [{"method": f"m{i}", "psnr_db": 14.0 + i / 10, "items": 10, "accuracy": 0.3, "accuracy_se": 0.01}
            for i in range(colours + 2)]
    lines.plot_lines(rows, "psnr_db", "accuracy", out=str(tmp_path / "many"))
    styles = [(line.get_color(), line.get_marker()) for line in (c.lines[0] for c in figures[0].axes[0].containers)]
    assert len(styles) == colours + 2 and len(set(styles)) == len(styles)
