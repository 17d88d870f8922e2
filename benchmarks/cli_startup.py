"""Start-up cost of the ``jsccflow`` command line against a bare ``python -c "import torch"``, in the same run.

Each command runs ``--repeats`` times as a fresh process (after one untimed run that warms the file
cache); the figure is the median CPU time (user + system) of the child process, read from
``getrusage(RUSAGE_CHILDREN)``, with the median wall time beside it. Targets: ``jsccflow --help`` <= 0.5 s of CPU, and
validating ``flowgraphs/qam16_awgn_ber.yaml`` <= 0.4 x the bare torch import. The last line printed is
one JSON object.

    python benchmarks/cli_startup.py --repeats 5
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HELP_TARGET_CPU_S = 0.5
VALIDATE_TARGET_RATIO = 0.4


def jsccflow_command() -> list[str]:
    """The installed console script next to this interpreter, else the module entry point."""
    script = Path(sys.executable).with_name("jsccflow")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sdjscc_phy.cli.main"]


def run_once(argv: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one run of ``argv``; fails loudly on a non-zero exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} exited with {proc.returncode}: {proc.stderr.strip()}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def measure(argv: list[str], repeats: int) -> tuple[float, float]:
    """Median (CPU seconds, wall seconds) over ``repeats`` runs after one warm-up run."""
    run_once(argv)
    runs = [run_once(argv) for _ in range(repeats)]
    return statistics.median(c for c, _ in runs), statistics.median(w for _, w in runs)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per command (median reported)")
    args = parser.parse_args(argv)

    jsccflow = jsccflow_command()
    commands = {
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        "jsccflow --help": [*jsccflow, "--help"],
        "jsccflow validate qam16_awgn_ber.yaml": [*jsccflow, "validate", "flowgraphs/qam16_awgn_ber.yaml"],
    }
    print(f"{'command':42s} {'cpu [s]':>8s} {'wall [s]':>9s}  (median of {args.repeats})")
    cpu = {}
    for name, command in commands.items():
        cpu[name], wall = measure(command, args.repeats)
        print(f"{name:42s} {cpu[name]:8.3f} {wall:9.3f}")

    torch_cpu = cpu["python -c 'import torch'"]
    help_cpu = cpu["jsccflow --help"]
    validate_cpu = cpu["jsccflow validate qam16_awgn_ber.yaml"]
    validate_ratio = validate_cpu / torch_cpu
    print(f"\njsccflow --help: {help_cpu:.3f} s CPU (target <= {HELP_TARGET_CPU_S} s)")
    print(f"validate / import torch: {validate_ratio:.2f} (target <= {VALIDATE_TARGET_RATIO})")
    result = {
        "torch_import_cpu_s": round(torch_cpu, 3),
        "help_cpu_s": round(help_cpu, 3),
        "validate_cpu_s": round(validate_cpu, 3),
        "help_vs_torch_import_ratio": round(help_cpu / torch_cpu, 3),
        "validate_vs_torch_import_ratio": round(validate_ratio, 3),
        "help_within_target": help_cpu <= HELP_TARGET_CPU_S,
        "validate_within_target": validate_ratio <= VALIDATE_TARGET_RATIO,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
