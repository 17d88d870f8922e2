"""Generated bad inputs: mutated shipped flowgraphs, sweep files, recipes and ``--set`` values.

A seeded mutation generator rewrites the shipped files as a careless or hostile user might (typos,
wrong types, NaN/inf, huge and deep values, YAML aliases, invalid UTF-8, control characters, unsupported
tags, paths that climb out or point at devices) and drives the command line in-process:
``jsccflow validate`` for flowgraphs and ``--set``, ``jsccflow sweep --dry-run`` for sweep files, and
``load_recipe`` for recipes (the loader ``jsccflow train`` uses; ``train`` has no validate-only mode).
Every case must end within the time limit with exit 0, or exit 2 and only ``error:`` lines on stderr:
never a traceback, never a hang.

``JSCCFLOW_FUZZ_CASES`` (default 240) sets the number of cases, ``JSCCFLOW_FUZZ_SEED`` the seed and
``JSCCFLOW_FUZZ_TIME_LIMIT`` the CPU seconds one case may take (default 2; five times that in wall time).
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import random
import shutil
import signal
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import pytest
import yaml

from sdjscc_phy.cli.main import main
from sdjscc_phy.errors import JsccflowError
from sdjscc_phy.training import load_recipe

REPO = Path(__file__).resolve().parents[1]
CASES = int(os.environ.get("JSCCFLOW_FUZZ_CASES", "240"))
SEED = int(os.environ.get("JSCCFLOW_FUZZ_SEED", "0"))
TIME_LIMIT_S = float(os.environ.get("JSCCFLOW_FUZZ_TIME_LIMIT", "2"))
# The limit is on the CPU time of this process, so other work on a shared machine cannot fail a case; a
# case blocked without using the CPU (reading a pipe) is stopped by the wall-clock limit.
WALL_LIMIT_S = 5 * TIME_LIMIT_S
# Shipped sweep files are cut to their first two methods and one value per grid variable before they are
# mutated (a dry run validates every point, and the full files take longer than one case may), and read
# the flowgraphs' own data (the builtin sample) instead of the CIFAR-10 folder they name.
SWEEP_METHODS, SWEEP_VALUES = 2, 1
# A sweep method that trains is validated through its recipe's training flowgraphs, whose image source reads
# the CIFAR-10 folder; without it (a clone outside this workspace) only the methods that train nothing are fuzzed.
CIFAR10_TRAIN = REPO.parent / "shared" / "data" / "cifar10" / "train"

LAUGHS = "\n".join(["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
                   + [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 10)])
# YAML snippets a value can be replaced with.
VALUES = [
    ".nan", ".inf", "-.inf", "-1.2e21", "1e-3", "'0.05'", "[32]", "[[0]]", "{a: 1}", "true", "null", "~", "''",
    "-1", "0", "1", "3", "99999999999999999999999999", "9" * 5000, "0x1F", "1:30", "2024-01-01", "=",
    "!!python/object/apply:os.system ['touch /tmp/jsccflow-fuzz-pwned']", "!!binary aGVsbG8=", "!!set {a, b}",
    "'../../../x'", "/tmp", "/proc/version", "/dev/zero", "/dev/stdin", "/", "x" * 20000, "cuda", "cuda:7",
    "[" * 1200 + "]" * 1200, "&r [*r]", "*nowhere", "{" * 50 + "}" * 50, "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]",
    "qam16", "awgn", "builtin", "folder", "$snr_db", "${snr_db}", "'$nope'", "'a.b -> c.d'", "[a, b]",
    "'\u00e9\u20ac\U0001f600'", "'\\x00'", "{id: x, type: awgn_channel}", "-0.0", "1e309", "[.nan]",
]
RAW_BYTES = [b"\x00", b"\xff\xfe", b"\xc3\x28", b"\x1b[31m", b"\t", b"\r", b"\x85", b"\xef\xbb\xbf", b"%", b"&a",
             b"*a", b"!!", b"{", b"]", b":", b"- ", b"'", b'"', b"\\", b"#", b"---\n", b"...\n", b"<<: *a\n"]


class Hang(BaseException):
    """Raised by the timers when one case runs past its time limit."""


def _alarm(signum, frame):
    raise Hang()


def run_case(call) -> tuple[str, int | None, str, float]:
    """Run ``call()`` (returns an exit code) under the time limits; (outcome, code, stderr, CPU seconds).

    outcome: ok (exit 0), error (exit 2, only ``error:`` lines), traceback (an exception escaped), hang,
    or bad-output (any other exit code, or exit 2 with lines that are not ``error:`` lines or a warning,
    which the command line would print).
    """
    out, err = io.StringIO(), io.StringIO()
    previous = {sig: signal.signal(sig, _alarm) for sig in (signal.SIGALRM, signal.SIGPROF)}
    began = time.process_time()
    code = None
    try:
        signal.setitimer(signal.ITIMER_PROF, TIME_LIMIT_S)
        signal.setitimer(signal.ITIMER_REAL, WALL_LIMIT_S)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = call()
        for warning in caught:
            err.write(f"warning: {warning.message}\n")
        outcome = "ok" if code == 0 else "error" if code == 2 else "bad-output"
    except Hang:
        outcome = "hang"
    except Exception as exc:  # what the suite is looking for
        outcome = "traceback"
        err.write(f"{type(exc).__name__}: {str(exc)[:300]}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.setitimer(signal.ITIMER_PROF, 0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    seconds = time.process_time() - began
    text = err.getvalue()
    if outcome == "error" and not all(line.startswith("error: ") for line in text.strip().splitlines() or [""]):
        outcome = "bad-output"
    return outcome, code, text, seconds


def recipe_call(path: str, overrides: list[str]):
    """``load_recipe`` as the CLI reports it: exit 2 with ``error:`` lines for a JsccflowError."""
    def call() -> int:
        try:
            load_recipe(path, overrides)
        except JsccflowError as err:
            for line in getattr(err, "errors", [str(err)]):
                print(f"error: {line}", file=sys.stderr)
            return 2
        return 0

    return call


# -- mutations ---------------------------------------------------------------------------------------
def _paths(node, prefix=()):
    """Every (path, value) in a parsed YAML tree."""
    yield prefix, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _set(tree, path, value):
    node = tree
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def _typed_value(rng: random.Random):
    return rng.choice([float("nan"), float("inf"), -1e21, 1e-3, "0.05", [32], [[0]], {"a": 1}, True, None, "", -1,
                       0, 10**30, "x" * 5000, "../../../x", "/tmp", "/dev/zero", [], {}, 1.5, "cuda", 7])


def mutate_tree(rng: random.Random, tree):
    """One structural change: drop, rename, retype or add a key; move or duplicate a value."""
    tree = copy.deepcopy(tree)
    spots = [(p, v) for p, v in _paths(tree) if p]
    if not spots:
        return _typed_value(rng)
    path, value = rng.choice(spots)
    parent = tree
    for part in path[:-1]:
        parent = parent[part]
    kind = rng.randrange(6)
    if kind == 0:
        del parent[path[-1]]
    elif kind == 1 and isinstance(parent, dict):
        key = path[-1]
        new = rng.choice([f"{key}x", str(key)[:-1] or "k", True, 5, None, "../x", f"{key}.{key}"])
        parent[new] = parent.pop(key)
    elif kind == 2:
        _set(tree, path, _typed_value(rng))
    elif kind == 3 and isinstance(value, dict):
        value[rng.choice(["bogus", "id", "type", "params", "set", "grid", "1", "stages"])] = _typed_value(rng)
    elif kind == 4:
        other_path, other = rng.choice(spots)
        _set(tree, path, copy.deepcopy(other))
    elif isinstance(parent, list):
        parent.insert(rng.randrange(len(parent) + 1), copy.deepcopy(value))
    else:
        _set(tree, path, [value, value])
    return tree


def mutate_text(rng: random.Random, text: str) -> bytes:
    """One textual change: a hostile value, raw bytes, deleted/duplicated/swapped lines, truncation,
    aliases that expand exponentially, or another encoding."""
    lines = text.splitlines(keepends=True) or ["\n"]
    kind = rng.randrange(9)
    if kind <= 2:  # replace the value of a 'key: value' line
        candidates = [i for i, line in enumerate(lines) if ":" in line and not line.lstrip().startswith("#")]
        if candidates:
            i = rng.choice(candidates)
            head = lines[i].split(":", 1)[0]
            lines[i] = f"{head}: {rng.choice(VALUES)}\n"
        return "".join(lines).encode("utf-8", "surrogatepass")
    data = "".join(lines).encode()
    if kind == 3:
        at = rng.randrange(len(data) + 1)
        return data[:at] + rng.choice(RAW_BYTES) + data[at:]
    if kind == 4:
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        if rng.random() < 0.5:
            del lines[rng.randrange(len(lines))]
        return "".join(lines).encode()
    if kind == 5:
        return data[: rng.randrange(len(data) + 1)]
    if kind == 6:
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
        return "".join(lines).encode()
    if kind == 7:  # billion laughs: anchors at the top, an alias in place of one value
        candidates = [i for i, line in enumerate(lines) if ": " in line and not line.lstrip().startswith("#")]
        if candidates:
            i = rng.choice(candidates)
            lines[i] = lines[i].split(":", 1)[0] + ": *l9\n"
        return (LAUGHS + "\n" + "".join(lines)).encode()
    return "".join(lines).encode(rng.choice(["utf-16", "latin-1", "utf-32"]), "replace")


def mutate(rng: random.Random, text: str) -> bytes:
    """One to three mutations in a row (structural ones while the text still parses)."""
    data = text.encode()
    for _ in range(rng.choice([1, 1, 2, 3])):
        try:  # (aliases could expand exponentially in the generator's own walk: text mutations only)
            tree = yaml.safe_load(data) if rng.random() < 0.5 and b"&" not in data else None
        except (yaml.YAMLError, ValueError, RecursionError):
            tree = None
        if isinstance(tree, (dict, list)):
            data = yaml.safe_dump(mutate_tree(rng, tree), sort_keys=False, allow_unicode=True).encode()
        else:
            data = mutate_text(rng, data.decode("utf-8", "replace"))
    return data


def set_values(rng: random.Random, keys: list[str]) -> list[str]:
    """One to three ``KEY=VALUE`` overrides: a real key (or a near miss) with a hostile value."""
    out = []
    for _ in range(rng.randint(1, 3)):
        key = rng.choice(keys)
        if rng.random() < 0.2:
            key = rng.choice([f"{key}x", f"{key}.{key}", key.upper(), f".{key}", f"{key}.", "options", "", "a.b.c"])
        value = rng.choice(VALUES) if rng.random() < 0.8 else rng.choice(["", "=", "a=b", "[", "{", "'"])
        out.append(f"{key}={value}")
    return out


# -- the shipped inputs ------------------------------------------------------------------------------
def _absolute(node, base: Path):
    """Relative paths (``../x``) made absolute against ``base``, so a copy elsewhere reads the same files."""
    if isinstance(node, dict):
        return {k: _absolute(v, base) for k, v in node.items()}
    if isinstance(node, list):
        return [_absolute(v, base) for v in node]
    if isinstance(node, str) and node.startswith("../"):
        return str((base / node).resolve())
    return node


def shipped_sweep(path: Path) -> str | None:
    """The sweep file cut to a few points (None when nothing is left to validate without the data)."""
    data = _absolute(yaml.safe_load(path.read_text()), path.parent)
    methods = {k: v for k, v in data["methods"].items() if CIFAR10_TRAIN.is_dir() or "train" not in (v or {})}
    if not methods:
        return None
    data["methods"] = dict(list(methods.items())[:SWEEP_METHODS])
    data["set"] = {k: v for k, v in (data.get("set") or {}).items() if not k.startswith("src.")}
    grids = data.get("grid") or []
    for part in grids if isinstance(grids, list) else [grids]:
        for kind in ("product", "zip"):
            for name, values in (part.get(kind) or {}).items():
                part[kind][name] = values[:SWEEP_VALUES]
    return yaml.safe_dump(data, sort_keys=False)


def flowgraph_keys(text: str) -> list[str]:
    data = yaml.safe_load(text)
    keys = list(data.get("variables") or {}) + [f"options.{k}" for k in data.get("options") or {}]
    for block in data["blocks"]:
        keys += [f"{block['id']}.{p}" for p in block.get("params") or {}] or [f"{block['id']}.x"]
    return keys


def recipe_keys(text: str) -> list[str]:
    return [".".join(str(p) for p in path) for path, value in _paths(yaml.safe_load(text))
            if path and not isinstance(value, (dict, list))]


def cases(count: int, seed: int, work: Path):
    """``count`` (label, call) pairs; the first ones are the shipped inputs unchanged."""
    flowgraphs = {p.name: p.read_text() for p in sorted((REPO / "flowgraphs").glob("*.yaml"))}
    sweeps = {p.name: text for p in sorted((REPO / "sweeps").glob("*.yaml")) if (text := shipped_sweep(p))}
    recipes = {p.name: p.read_text() for p in sorted((REPO / "recipes").glob("*.yaml"))}
    for sub in ("flowgraphs", "sweeps", "recipes", "out"):
        (work / sub).mkdir(exist_ok=True)
    shutil.copytree(REPO / "flowgraphs" / "train", work / "flowgraphs" / "train")  # what the recipes train
    rng = random.Random(seed)
    for index in range(count):
        kind = rng.choices(["flowgraph", "set", "sweep", "recipe", "recipe_set"], weights=[40, 20, 15, 15, 10])[0]
        if kind in ("flowgraph", "set"):
            name = rng.choice(list(flowgraphs))
            path = work / "flowgraphs" / f"case{index}_{name}"
            text = flowgraphs[name]
            if kind == "flowgraph":
                path.write_bytes(mutate(rng, text))
                argv = ["validate", str(path)]
            else:
                path.write_text(text)
                overrides = set_values(rng, flowgraph_keys(text))
                argv = ["validate", str(path)] + [a for s in overrides for a in ("--set", s)]
            yield f"{kind} {name}", argv, (lambda argv=argv: main(argv))
        elif kind == "sweep":
            name = rng.choice(list(sweeps))
            path = work / "sweeps" / f"case{index}_{name}"
            path.write_bytes(mutate(rng, sweeps[name]))
            argv = ["sweep", "--dry-run", str(path), "--output", str(work / "out" / f"case{index}")]
            yield f"{kind} {name}", argv, (lambda argv=argv: main(argv))
        else:
            name = rng.choice(list(recipes))
            path = work / "recipes" / f"case{index}_{name}"
            if kind == "recipe":
                path.write_bytes(mutate(rng, recipes[name]))
                overrides = []
            else:
                path.write_text(recipes[name])
                overrides = set_values(rng, recipe_keys(recipes[name]))
            yield f"{kind} {name}", [str(path), *overrides], recipe_call(str(path), overrides)


def test_shipped_inputs_pass_and_generated_bad_inputs_fail_cleanly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JSCCFLOW_CACHE", str(tmp_path / "cache"))
    pwned = Path("/tmp/jsccflow-fuzz-pwned")
    pwned.unlink(missing_ok=True)
    # The unchanged inputs first, untimed (imports, first checkpoint loads): each must pass.
    for path in sorted((REPO / "flowgraphs").glob("*.yaml")):
        assert main(["validate", str(path)]) == 0, path
    for path in sorted((REPO / "recipes").glob("*.yaml")):
        load_recipe(path)
    (tmp_path / "sweeps").mkdir()
    for path in sorted((REPO / "sweeps").glob("*.yaml")):
        if (text := shipped_sweep(path)) is None:
            continue
        cut = tmp_path / "sweeps" / path.name
        cut.write_text(text)
        assert main(["sweep", "--dry-run", str(cut), "--output", str(tmp_path / "base")]) == 0, path
    capsys.readouterr()

    began = time.perf_counter()
    counts: Counter = Counter()
    failures = []
    slowest = (0.0, "")
    for label, argv, call in cases(CASES, SEED, tmp_path):
        outcome, code, err, seconds = run_case(call)
        counts[outcome] += 1
        slowest = max(slowest, (seconds, label))
        if outcome not in ("ok", "error"):
            failures.append(f"{outcome} ({label}, exit {code}): {' '.join(a[:80] for a in argv)}\n    "
                            + err.strip()[-600:].replace("\n", "\n    "))
    elapsed = time.perf_counter() - began
    summary = (f"{CASES} generated cases in {elapsed:.1f} s (slowest {slowest[0]:.2f} CPU s: {slowest[1]}): "
               f"exit 0 {counts['ok']}, exit 2 {counts['error']}, tracebacks {counts['traceback']}, "
               f"hangs {counts['hang']}, other output {counts['bad-output']}")
    with capsys.disabled():
        print("\n" + summary)
    assert not pwned.exists(), "a YAML tag ran a command"
    assert not failures, summary + "\n" + "\n".join(failures[:15])
    assert counts["error"] > CASES // 3, summary  # the generator does produce bad inputs


@pytest.mark.parametrize("value", ["[" * 1200 + "]" * 1200, "9" * 5000, "&a [*a]", "!!python/name:os.system"])
def test_a_hostile_set_value_is_one_error_line(value, tmp_path, capsys):
    outcome, code, err, _ = run_case(lambda: main(["validate", str(REPO / "flowgraphs" / "qam16_awgn_ber.yaml"),
                                                   "--set", f"snr_db={value}"]))
    assert (outcome, code) == ("error", 2), err
    assert len(err.strip().splitlines()) == 1 and len(err) < 400
