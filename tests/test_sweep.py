"""jsccflow sweep: grid expansion, tidy results, resume, errors before any point runs, executors."""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import pytest

from conftest import REPO
from sdjscc_phy.cli.main import main
from sdjscc_phy.sweep import aggregate, load_sweep, mean_se, read_rows, run_sweep, verdict

BER_FLOWGRAPH = REPO / "flowgraphs" / "qam16_awgn_ber.yaml"

# Link-level points: ~0.1 s each, no dataset, no network.
BER_SWEEP = f"""\
output: out
set:
  options.max_items: 64
  options.batch_size: 32
  src.num_bits: 256
methods:
  qam16:
    flowgraph: {BER_FLOWGRAPH}
  qpsk:
    label: Gray QPSK
    flowgraph: {BER_FLOWGRAPH}
    set: {{map.constellation: qpsk, demap.constellation: qpsk}}
grid:
  product:
    snr_db: [0, 4, 8]
    seed: [0, 1]
"""


@pytest.fixture
def write_sweep(tmp_path):
    def write(text: str, name: str = "sweep.yaml") -> str:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return str(path)

    return write


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_product_and_zip_grids_expand_in_file_order(write_sweep):
    sweep = load_sweep(write_sweep(f"""\
        methods:
          m: {{flowgraph: {BER_FLOWGRAPH}, set: {{map.constellation: $const, demap.constellation: $const}}}}
        grid:
          - product: {{snr_db: [0, 5]}}
            zip: {{const: [qpsk, qam16], src.num_bits: [128, 256]}}
          - zip: {{snr_db: [20], const: [qam64], src.num_bits: [384]}}
        """))
    values = [p.values for p in sweep.points]
    assert values == [
        {"snr_db": 0, "const": "qpsk", "src.num_bits": 128}, {"snr_db": 0, "const": "qam16", "src.num_bits": 256},
        {"snr_db": 5, "const": "qpsk", "src.num_bits": 128}, {"snr_db": 5, "const": "qam16", "src.num_bits": 256},
        {"snr_db": 20, "const": "qam64", "src.num_bits": 384},
    ]
    assert sweep.grid_columns == ["snr_db", "const", "src.num_bits"]
    assert "map.constellation=qam64" in sweep.points[-1].overrides and "snr_db=20" in sweep.points[-1].overrides
    assert len({p.key for p in sweep.points}) == 5


def test_sweep_writes_one_tidy_row_per_point_and_a_full_json_record(write_sweep, tmp_path, capsys):
    path = write_sweep(BER_SWEEP)
    assert main(["sweep", path, "--no-progress"]) == 0
    assert "point 12/12 done: " in capsys.readouterr().err  # without a bar (a log file), one line per point
    rows = csv_rows(tmp_path / "out" / "results.csv")
    assert len(rows) == 12
    assert list(rows[0])[:5] == ["method", "snr_db", "seed", "items", "ber"]
    assert [(r["method"], r["snr_db"], r["seed"]) for r in rows[:3]] == [("qam16", "0", "0"), ("qam16", "0", "1"),
                                                                        ("qam16", "4", "0")]
    by = {(r["method"], r["snr_db"], r["seed"]): float(r["ber"]) for r in rows}
    assert by[("qpsk", "8", "0")] < by[("qam16", "8", "0")] < by[("qam16", "0", "0")]
    assert by[("qam16", "0", "0")] != by[("qam16", "0", "1")]  # the seed reaches the noise
    record = json.loads((tmp_path / "out" / "points" / f"{rows[5]['key']}.json").read_text())
    assert record["method"] == "qam16" and record["values"] == {"snr_db": 8, "seed": 1} and record["seed"] == 1
    assert record["options"]["max_items"] == 64 and record["variables"] == {"snr_db": 8}
    assert "options.seed=1" in record["overrides"] and "src.num_bits=256" in record["overrides"]
    assert record["code_version"] and record["metrics"]["ber"] == float(rows[5]["ber"])
    summary = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert summary["points"] == 12 and summary["labels"] == {"qpsk": "Gray QPSK"}  # plot legends read them


def test_interrupted_sweep_restarts_with_every_row_exactly_once(write_sweep, tmp_path):
    sweep = load_sweep(write_sweep(BER_SWEEP))

    def stop_after_5(record):
        if len(list((tmp_path / "out" / "points").glob("*.json"))) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(sweep, progress=False, callbacks=[stop_after_5])
    first = csv_rows(tmp_path / "out" / "results.csv")
    assert len(first) == 5
    summary = run_sweep(load_sweep(sweep.path), progress=False)
    assert (summary.skipped, summary.ran) == (5, 7)
    rows = csv_rows(tmp_path / "out" / "results.csv")
    assert sorted(r["key"] for r in rows) == sorted(p.key for p in sweep.points)
    assert rows[:5] == first  # finished rows kept as they were (inline: the first five points)
    again = run_sweep(load_sweep(sweep.path), progress=False)
    assert (again.skipped, again.ran) == (12, 0) and csv_rows(tmp_path / "out" / "results.csv") == rows


def test_inline_sweep_stores_each_point_before_running_the_next(write_sweep, tmp_path, monkeypatch):
    from sdjscc_phy.sweep import runner

    sweep, calls, real = load_sweep(write_sweep(BER_SWEEP)), [], runner.run_point

    def killed_at_fourth(*args):
        calls.append(args)
        if len(calls) == 4:
            raise KeyboardInterrupt  # the process is killed while the fourth point runs
        return real(*args)

    monkeypatch.setattr(runner, "run_point", killed_at_fourth)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(sweep, progress=False)
    assert len(calls) == 4 and len(csv_rows(tmp_path / "out" / "results.csv")) == 3


def test_changing_a_point_reruns_only_that_point(write_sweep, tmp_path):
    path = write_sweep(BER_SWEEP)
    run_sweep(load_sweep(path), progress=False)
    changed = Path(path).read_text().replace("snr_db: [0, 4, 8]", "snr_db: [0, 4, 9]")
    Path(path).write_text(changed)
    summary = run_sweep(load_sweep(path), progress=False)
    assert (summary.skipped, summary.ran) == (8, 4)
    rows = csv_rows(tmp_path / "out" / "results.csv")  # the replaced points' rows are gone from the table
    assert len(rows) == 12 and {r["snr_db"] for r in rows} == {"0", "4", "9"}


def test_retrained_checkpoint_or_edited_flowgraph_reruns_the_points_that_read_it(write_sweep, tmp_path):
    """A point is keyed by its flowgraph as its overrides leave it: a comment, or a default the point
    overrides, keeps its record; a change to what it computes reruns it."""
    import torch

    from sdjscc_phy.models.classifier import CifarClassifier, export_classifier
    from sdjscc_phy.models.jscc import JsccCodec, JsccConfig, export_codec

    def export(seed: int, name: str) -> str:
        torch.manual_seed(seed)
        export_codec(JsccCodec(JsccConfig(code_channels=4, width=16)), tmp_path / name, {})
        return str(tmp_path / name)

    export_classifier(CifarClassifier(widths=(8, 8, 8)), tmp_path / "clf.pt", [f"c{i}" for i in range(10)], {})
    codec_a, codec_b = export(0, "a.pt"), export(1, "b.pt")
    ber_flowgraph = tmp_path / "ber.yaml"
    ber_flowgraph.write_text(BER_FLOWGRAPH.read_text())
    path = write_sweep(f"""\
        output: out
        set: {{options.max_items: 8, options.batch_size: 8}}
        methods:
          a: {{flowgraph: {REPO / "flowgraphs" / "sdjscc_awgn.yaml"},
              set: {{enc.checkpoint: {codec_a}, dec.checkpoint: {codec_a}, task.checkpoint: {tmp_path / "clf.pt"}}}}}
          b: {{flowgraph: {REPO / "flowgraphs" / "sdjscc_awgn.yaml"},
              set: {{enc.checkpoint: {codec_b}, dec.checkpoint: {codec_b}, task.checkpoint: {tmp_path / "clf.pt"}}}}}
          ber: {{flowgraph: {ber_flowgraph}}}
        grid: {{product: {{snr_db: [5]}}}}
        """)
    assert run_sweep(load_sweep(path), progress=False).ran == 3
    records = {r["method"]: r for r in map(json.loads, map(Path.read_text, (tmp_path / "out" / "points").glob("*")))}
    assert "../a.pt" in records["a"]["inputs"] and records["ber"]["inputs"] == {}  # relative to out/
    counts = lambda: (lambda s: (s.skipped, s.ran))(run_sweep(load_sweep(path), progress=False))  # noqa: E731
    export(2, "a.pt")  # codec a retrained: only its point reruns
    assert counts() == (2, 1)
    text = ber_flowgraph.read_text()
    ber_flowgraph.write_text("# a comment\n" + text.replace("snr_db: 10.0", "snr_db: 12.0"))  # the grid sets 5
    assert counts() == (3, 0)
    ber_flowgraph.write_text(text.replace("num_bits: 1024", "num_bits: 512"))
    assert counts() == (2, 1)
    assert counts() == (3, 0)


def test_checkpoint_files_and_path_variables_resolve_against_the_sweep_file(write_sweep, tmp_path, monkeypatch):
    """As in recipes: a string written as a path is relative to the file that says it, not to the working
    directory; a bare name stays a shipped checkpoint's name."""
    (tmp_path / "sweeps").mkdir()
    path = write_sweep(f"""\
        methods:
          m: {{flowgraph: {REPO / "flowgraphs" / "multitask_awgn.yaml"},
              set: {{codec: ../ckpt/mt.pt, src.limit: 4}}}}
          n: {{flowgraph: {REPO / "flowgraphs" / "sdjscc_awgn.yaml"},
              set: {{enc.checkpoint: ~/a.pt, dec.checkpoint: ../ckpt/b.pt, task.checkpoint: classifier_cifar10}}}}
        grid: {{product: {{snr_db: [5]}}}}
        """, name="sweeps/s.yaml")
    monkeypatch.chdir(tmp_path / "sweeps")  # the working directory plays no part
    overrides = {p.method: p.overrides for p in load_sweep(path).points}
    assert f"codec={tmp_path / 'ckpt' / 'mt.pt'}" in overrides["m"]
    assert f"dec.checkpoint={tmp_path / 'ckpt' / 'b.pt'}" in overrides["n"]
    assert f"enc.checkpoint={Path('~/a.pt').expanduser()}" in overrides["n"]
    assert "task.checkpoint=classifier_cifar10" in overrides["n"]


def test_sweep_file_errors_are_one_line_each_with_file_and_line_and_exit_2(write_sweep, tmp_path, capsys):
    path = write_sweep(f"""\
        output: out
        colour: red
        methods:
          a:
            flowgraph: {BER_FLOWGRAPH}
            sett: {{}}
          b:
            flowgraph: nowhere.yaml
          c:
            flowgraph: {BER_FLOWGRAPH}
            set: {{map.constelation: qpsk}}
        grid:
          product: {{snr_db: [0, 5], snrdb: [1]}}
          zip: {{seed: [0, 1], options.max_items: [10]}}
        """)
    assert main(["sweep", path]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith(f"error: {path}:") for line in err), err
    text = "\n".join(err)
    assert f"{path}:2: unknown top-level key 'colour'" in text
    assert f"{path}:6: method 'a': unknown key 'sett'" in text
    assert f"{path}:8: method 'b': flowgraph 'nowhere.yaml' does not exist" in text
    assert f"{path}:14: grid.zip: lists must have equal lengths" in text
    assert "Traceback" not in text and not (tmp_path / "out").exists()


def test_a_method_label_must_be_text(write_sweep, tmp_path, capsys):
    path = write_sweep(f"""\
        methods:
          a:
            flowgraph: {BER_FLOWGRAPH}
            label: [A]
        """)
    assert main(["sweep", path, "--dry-run"]) == 2
    assert f"{path}:4: method 'a': key 'label': must be a str" in capsys.readouterr().err


def test_every_point_is_validated_with_its_overrides_before_any_runs(write_sweep, tmp_path, capsys):
    path = write_sweep(f"""\
        output: out
        methods:
          ok: {{flowgraph: {BER_FLOWGRAPH}, set: {{options.max_items: 8}}}}
          bad:
            flowgraph: {BER_FLOWGRAPH}
            set: {{map.constelation: qpsk, options.max_items: 8}}
        grid:
          product: {{snr_db: [0, 5], snrdb: [1]}}
        """)
    assert main(["sweep", path]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(f"error: {path}:8: grid variable 'snrdb': not a variable of" in e for e in err)
    assert err[0].endswith("not used as $snrdb by method 'ok'")
    Path(path).write_text(Path(path).read_text().replace(", snrdb: [1]", ""))
    assert main(["sweep", path]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()  # the same problem at both SNRs: said once
    assert line.startswith(f"error: {path}:4: method 'bad': {BER_FLOWGRAPH}:")
    assert "parameter 'constelation': unknown parameter; did you mean 'constellation'?" in line
    assert not (tmp_path / "out" / "results.csv").exists()


def test_dry_run_lists_points_and_what_is_done(write_sweep, tmp_path, capsys):
    path = write_sweep(BER_SWEEP.replace("[0, 4, 8]", "[0]"))
    assert main(["sweep", path, "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 5 and all("pending" in line for line in out[:4])
    assert out[-1].endswith(f"OK, 4 points (4 pending) -> {tmp_path / 'out'}")
    assert not (tmp_path / "out").exists()
    assert main(["sweep", path, "--no-progress", "--output", str(tmp_path / "elsewhere")]) == 0
    assert main(["sweep", path, "--dry-run", "--output", str(tmp_path / "elsewhere")]) == 0
    assert "OK, 4 points (0 pending)" in capsys.readouterr().out


def test_declared_figures_are_made_from_the_results_by_sweep_and_by_figures(write_sweep, tmp_path, capsys):
    path = write_sweep(BER_SWEEP.replace("[0, 4, 8]", "[0, 8]") + textwrap.dedent("""\
        figures:
          - plot --x snr_db --y ber --out ber
          - table --y ber -o tables/ber.md
        """))
    (tmp_path / "out" / "tables").mkdir(parents=True)
    assert main(["sweep", path, "--no-progress"]) == 0
    table = (tmp_path / "out" / "tables" / "ber.md").read_text()
    assert table.splitlines()[0] == "| method \\ snr_db | 0 | 8 |"
    assert [line.split(" |")[0] for line in table.splitlines()[2:4]] == ["| qam16", "| qpsk"]
    assert (tmp_path / "out" / "ber.png").stat().st_size > 1000 and (tmp_path / "out" / "ber.svg").is_file()
    before = (tmp_path / "out" / "ber.png").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["figures", path]) == 0  # made again: existing files are replaced
    assert str(tmp_path / "out" / "ber.png") in capsys.readouterr().out
    assert (tmp_path / "out" / "ber.png").stat().st_mtime_ns >= before


def test_bad_figure_lines_are_file_line_errors_before_any_point_runs(write_sweep, tmp_path, capsys):
    path = write_sweep(BER_SWEEP + textwrap.dedent("""\
        figures:
          - plot --x snr_db --colour red
          - draw --x snr_db
          - table --y ber
        """))
    assert main(["sweep", path, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {path}:19: figures: 'draw --x snr_db': must start with one of plot, table, plot-grid"]
    Path(path).write_text(Path(path).read_text().replace("  - draw --x snr_db\n", ""))
    assert main(["sweep", path, "--no-progress"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {path}:18: figures: plot --x snr_db --colour red: No such option")
    assert not (tmp_path / "out").exists()
    Path(path).write_text(Path(path).read_text().replace(" --colour red", ""))
    assert main(["figures", path]) == 2  # valid lines, but nothing to draw yet
    assert capsys.readouterr().err.startswith(f"error: {path}: no results yet")
    done = write_sweep(BER_SWEEP.replace("output: out", "output: done").replace("[0, 4, 8]", "[8]")
                       + "figures:\n  - table --y ber -o ber.md\n", "done.yaml")
    assert main(["sweep", done, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["figures", path, done]) == 0  # one with results: the other is skipped with a note
    assert capsys.readouterr().err.startswith(f"{path}: no results yet; skipped")
    assert (tmp_path / "done" / "ber.md").is_file() and not (tmp_path / "out").exists()


def test_figure_outputs_stay_in_the_results_folder_and_failures_name_their_line(write_sweep, tmp_path, capsys):
    path = write_sweep(BER_SWEEP.replace("[0, 4, 8]", "[8]") + textwrap.dedent("""\
        figures:
          - plot --x snr_db --y ber --out ../../climbed
          - table --y ber --out=/tmp/elsewhere.md
        """))
    assert main(["sweep", path, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == (f"error: {path}:18: figures: 'plot --x snr_db --y ber --out ../../climbed': output "
                      "'../../climbed' must stay inside the results folder (a relative path without '..')")
    assert err[1].startswith(f"error: {path}:19: figures: ") and "'/tmp/elsewhere.md' must stay inside" in err[1]
    assert not (tmp_path / "out").exists()
    Path(path).write_text(Path(path).read_text().replace("--out ../../climbed", "--out ber")
                          .replace("table --y ber --out=/tmp/elsewhere.md", "table --y nosuch -o t.md"))
    assert main(["sweep", path, "--no-progress"]) == 2  # the points ran; the bad column names its line
    line = capsys.readouterr().err.strip().splitlines()[-1]  # after the points' progress lines
    assert line.startswith(f"error: {path}:19: figures: table --y nosuch -o t.md: ") and "nosuch" in line
    assert (tmp_path / "out" / "ber.png").is_file() and not (tmp_path / "out" / "t.md").exists()


def test_local_process_pool_and_inline_give_identical_rows(write_sweep, tmp_path):
    path = write_sweep(BER_SWEEP.replace("[0, 4, 8]", "[4]"))
    run_sweep(load_sweep(path), progress=False)
    run_sweep(load_sweep(path, output=str(tmp_path / "pool")), jobs=2, progress=False)
    inline, pool = csv_rows(tmp_path / "out" / "results.csv"), csv_rows(tmp_path / "pool" / "results.csv")
    assert [r["ber"] for r in inline] == [r["ber"] for r in pool]


def test_dask_local_cluster_with_two_worker_processes(write_sweep, tmp_path):
    pytest.importorskip("distributed")
    path = write_sweep(BER_SWEEP.replace("[0, 4, 8]", "[4]"))
    run_sweep(load_sweep(path), progress=False)
    summary = run_sweep(load_sweep(path, output=str(tmp_path / "dask")), jobs=2, executor="dask", progress=False)
    assert summary.ran == 4
    local, dask = csv_rows(tmp_path / "out" / "results.csv"), csv_rows(tmp_path / "dask" / "results.csv")
    assert [r["ber"] for r in local] == [r["ber"] for r in dask]


def test_aggregate_over_seeds_keeps_image_error_and_adds_seed_spread():
    rows = [{"method": "a", "snr_db": 5, "seed": s, "items": 100, "accuracy": acc, "accuracy_se": 0.03, "key": str(s)}
            for s, acc in enumerate([0.40, 0.44, 0.42])]
    rows.append({"method": "a", "snr_db": 10, "seed": 0, "items": 100, "accuracy": 0.5, "accuracy_se": 0.05, "key": "x"})
    out = aggregate(rows)
    assert [(r["method"], r["snr_db"], r["n"]) for r in out] == [("a", 5, 3), ("a", 10, 1)]
    mean, se_seeds = mean_se([0.40, 0.44, 0.42])
    assert out[0]["accuracy"] == pytest.approx(0.42) and se_seeds == pytest.approx(0.02 / 3**0.5)
    assert out[0]["accuracy_se"] == pytest.approx((0.03**2 + se_seeds**2) ** 0.5)
    assert out[1]["accuracy_se"] == pytest.approx(0.05) and out[1]["accuracy_se_seeds"] == 0
    assert verdict(0.05, 0.02) == "significant" and verdict(0.03, 0.02) == "no significant difference"


def test_read_rows_parses_numbers(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("method,snr_db,seed,items,accuracy,key\nm,5.5,1,10,0.25,k\nm,,2,10,,k2\n")
    assert read_rows(str(path)) == [
        {"method": "m", "snr_db": 5.5, "seed": 1, "items": 10, "accuracy": 0.25, "key": "k"},
        {"method": "m", "snr_db": None, "seed": 2, "items": 10, "accuracy": None, "key": "k2"},
    ]


def test_shipped_sweep_files_load():
    files = sorted((REPO / "sweeps").glob("*.yaml"))
    assert len(files) >= 6
    for path in files:
        sweep = load_sweep(str(path))
        assert sweep.points and sweep.output.startswith(str(REPO))


def test_missing_sweep_file_is_a_one_line_error(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "none.yaml")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "cannot read file" in line
