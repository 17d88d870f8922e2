"""Running a sweep: validate every point, train the models it needs, run the points in parallel.

Executors (no scheduler of our own): ``local`` runs points in this process (``jobs=1``) or in a
``concurrent.futures.ProcessPoolExecutor``; ``dask`` submits them to Dask distributed, on a
``LocalCluster`` of ``jobs`` worker processes or on the cluster whose scheduler is at ``scheduler``.
Only this process writes results (see :mod:`sdjscc_phy.sweep.store`).
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout
from tqdm import tqdm

import sdjscc_phy
from sdjscc_phy.errors import FlowgraphError, JsccflowError
from sdjscc_phy.io.paths import check_output_folder
from sdjscc_phy.io.results import write_json_atomic
from sdjscc_phy.lazy import require
from sdjscc_phy.sweep.models import ModelPlan, StagePlan, plan_model, train_stage, write_standin
from sdjscc_phy.sweep.spec import Point, Sweep, SweepError, TrainSpec, file_digest
from sdjscc_phy.sweep.store import ITEMS_DIR, SWEEP_JSON, ResultStore

EXECUTORS = ("local", "dask")

# on_point(record) runs in this process after each finished point is stored (tests interrupt with it).
PointCallback = Callable[[dict], None]


@dataclass
class SweepSummary:
    total: int
    skipped: int
    ran: int
    trained: int
    csv_path: str


@functools.cache
def code_version() -> str:
    """``git describe --always --dirty`` of the source tree, else ``jsccflow <version>``."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], capture_output=True, text=True,
                             cwd=Path(sdjscc_phy.__file__).resolve().parent, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return f"jsccflow {sdjscc_phy.__version__}"


# -- validation --------------------------------------------------------------------------------------
def plan_models(sweep: Sweep) -> dict[TrainSpec, ModelPlan]:
    """A model plan per distinct training spec; SweepError (``file:line:`` lines) for bad recipes."""
    plans, errors = {}, []
    for point in sweep.points:
        if point.train is None or point.train in plans:
            continue
        try:
            plans[point.train] = plan_model(point.train, sweep.models)
        except JsccflowError as err:
            line = f"{sweep.path}:{point.line}: method '{point.method}': {err}"
            if line not in errors:
                errors.append(line)
    if errors:
        raise SweepError(errors)
    return plans


def point_overrides(point: Point, plans: dict[TrainSpec, ModelPlan], checkpoint: str | None = None) -> list[str]:
    """The point's overrides plus the trained checkpoint (``checkpoint`` replaces it, e.g. a stand-in)."""
    overrides = list(point.overrides)
    if point.train is not None:
        path = checkpoint or plans[point.train].checkpoint
        overrides += [f"{param}={path}" for param in point.train.checkpoint_params]
    return overrides


def item_files(point: Point, output: str) -> dict[str, str]:
    """``{metric_sink id: CSV path}`` of the point's per-item rows under ``<output>/items/``."""
    return {sink: str(Path(output) / ITEMS_DIR / f"{point.key}_{sink}.csv") for sink in point.item_sinks}


def validate_points(sweep: Sweep, plans: dict[TrainSpec, ModelPlan]) -> None:
    """Load every point's flowgraph with its overrides (a model not trained yet is stood in for by an
    untrained one of the same shape); SweepError with one ``file:line:`` line per distinct problem."""
    from sdjscc_phy.core.flowgraph import load_flowgraph

    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="jsccflow-standin-") as tmp:
        standins: dict[TrainSpec, str | None] = {}
        for point in sweep.points:
            checkpoint = None
            if point.train is not None and not Path(plans[point.train].checkpoint).is_file():
                if point.train not in standins:
                    path = Path(tmp) / f"{len(standins)}.pt"
                    standins[point.train] = str(path) if write_standin(plans[point.train], path) else None
                checkpoint = standins[point.train]
            overrides = point_overrides(point, plans, checkpoint)
            if point.train is not None and checkpoint is None and not Path(plans[point.train].checkpoint).is_file():
                overrides = list(point.overrides)  # no stand-in: the flowgraph's own checkpoint validates
            try:
                load_flowgraph(point.flowgraph, overrides)
            except FlowgraphError as err:
                problems = err.errors
            except JsccflowError as err:
                problems = [str(err)]
            else:
                continue
            for problem in problems:
                if checkpoint:
                    problem = problem.replace(checkpoint, f"<untrained stand-in for stage '{point.train.stage}'>")
                line = f"{sweep.path}:{point.line}: method '{point.method}': {problem}"
                if line not in errors:
                    errors.append(line)
    if errors:
        raise SweepError(errors)


# -- work done in workers ----------------------------------------------------------------------------
def run_point(flowgraph: str, overrides: list[str], threads: int | None) -> dict:
    """Load and run one point's flowgraph (in a worker); its options, variables, metrics and cost."""
    import torch

    from sdjscc_phy.core.flowgraph import load_flowgraph
    from sdjscc_phy.core.scheduler import run_flowgraph

    if threads:
        torch.set_num_threads(threads)
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    fg = load_flowgraph(flowgraph, overrides)
    inputs = {path: file_digest(path) for path in input_files(fg)}
    result = run_flowgraph(fg)
    return {"options": vars(fg.options), "variables": fg.variables, "metrics": result.metrics,
            "items": result.items, "seconds": round(result.seconds, 3), "inputs": inputs}


def input_files(fg) -> list[str]:
    """The files a point's result depends on besides its key (which holds the flowgraph as overridden):
    every checkpoint its blocks load (a shipped name resolved to its file), so retraining a checkpoint
    reruns its points."""
    from sdjscc_phy.models.checkpoints import resolve_checkpoint

    return sorted({str(resolve_checkpoint(b.p.checkpoint).resolve()) for b in fg.blocks.values()
                   if isinstance(getattr(b.p, "checkpoint", None), str)})


def train_model_stage(plan: ModelPlan, stage: StagePlan, threads: int | None) -> str:
    """Train one cached stage (in a worker)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
        plan.recipe["num_threads"] = threads
    return train_stage(plan, stage)


# -- executors ---------------------------------------------------------------------------------------
class _Deferred:
    """A task of :class:`_Inline`: runs when its result is first asked for."""

    def __init__(self, fn, args):
        self._call, self._future = (fn, args), None

    def result(self):
        if self._future is None:
            fn, args = self._call
            self._future = cf.Future()
            try:
                self._future.set_result(fn(*args))
            except BaseException as exc:  # handed to the caller through the future, as a pool would
                self._future.set_exception(exc)
        return self._future.result()


class _Inline:
    """jobs=1: run each task here, one at a time, when the caller collects its result (so every finished
    point is stored before the next one starts)."""

    def submit(self, fn, *args):
        return _Deferred(fn, args)

    @staticmethod
    def as_completed(futures):
        return iter(futures)

    def close(self, cancel: bool = False) -> None:
        pass


def _watch_parent(parent: int) -> None:
    """In a worker: exit as soon as ``parent`` (the sweep) is gone, even when it was killed with SIGKILL and
    could not shut its pool down; otherwise workers would keep computing points nobody collects."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="jsccflow-parent-watch", daemon=True).start()


class _Local:
    def __init__(self, jobs: int):
        self.pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=_watch_parent, initargs=(os.getpid(),))

    def submit(self, fn, *args):
        return self.pool.submit(fn, *args)

    @staticmethod
    def as_completed(futures):
        return cf.as_completed(futures)

    def close(self, cancel: bool = False) -> None:
        self.pool.shutdown(wait=True, cancel_futures=cancel)


class _Dask:
    def __init__(self, jobs: int, scheduler: str | None):
        distributed = require("distributed", extra="dask")
        self.cluster = None
        if scheduler:
            self.client = distributed.Client(scheduler)
        else:
            self.cluster = distributed.LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                                    dashboard_address=None)
            self.client = distributed.Client(self.cluster)

    def submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False)

    @staticmethod
    def as_completed(futures):
        from distributed import as_completed

        return as_completed(futures)

    def close(self, cancel: bool = False) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _executor(kind: str, jobs: int, scheduler: str | None):
    if kind not in EXECUTORS:
        raise JsccflowError(f"--executor must be one of {EXECUTORS}; got '{kind}'")
    if jobs < 1:
        raise JsccflowError(f"--jobs must be at least 1; got {jobs}")
    if kind == "dask":
        return _Dask(jobs, scheduler)
    if scheduler:
        raise JsccflowError("--scheduler needs --executor dask")
    return _Inline() if jobs == 1 else _Local(jobs)


# -- the sweep ---------------------------------------------------------------------------------------
def prepare(sweep: Sweep) -> tuple[dict[TrainSpec, ModelPlan], ResultStore]:
    """Check everything that can be checked before running: recipes, then every point's flowgraph."""
    plans = plan_models(sweep)
    validate_points(sweep, plans)
    return plans, ResultStore(sweep.output, sweep.grid_columns)


def run_sweep(sweep: Sweep, *, jobs: int = 1, executor: str = "local", scheduler: str | None = None,
              progress: bool = True, callbacks: list[PointCallback] | tuple[PointCallback, ...] = (),
              report: bool | None = None, item_rows: bool = False) -> SweepSummary:
    """Run every point of ``sweep`` not finished yet (training the models they need first).

    ``progress``: a bar over points; ``report`` (default: as ``progress``): one stderr line per trained
    model and, without a bar, per finished point (a log file then shows how the sweep goes).
    ``item_rows``: also rerun finished points of an ``items: true`` sweep whose per-item rows are missing
    (they are not committed; ``table --paired`` pairs per noise seed without them).
    """
    report = progress if report is None else report
    check_output_folder(sweep.output, "sweep output")
    Path(sweep.output).mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(Path(sweep.output) / ".lock"), timeout=0)
    try:  # a second sweep on the same folder would run every point again and race on results.csv
        lock.acquire()
    except Timeout:
        raise JsccflowError(f"sweep output '{sweep.output}' is in use by another sweep; wait for it to finish "
                            "(finished points are then skipped) or give another --output") from None
    try:
        return _run_locked(sweep, jobs, executor, scheduler, progress, callbacks, report, item_rows)
    finally:
        lock.release()


def _run_locked(sweep: Sweep, jobs: int, executor: str, scheduler: str | None, progress: bool,
                callbacks, report: bool, item_rows: bool) -> SweepSummary:
    plans, store = prepare(sweep)
    pending = [p for p in sweep.points if not is_done(p, plans, store)
               or (item_rows and sweep.items and not all(map(os.path.isfile, item_files(p, sweep.output).values())))]
    order = [p.key for p in sweep.points]
    write_json_atomic(str(Path(sweep.output) / SWEEP_JSON), {
        "sweep": os.path.abspath(sweep.path), "description": sweep.description, "code_version": code_version(),
        "models": sweep.models, "grid_columns": sweep.grid_columns, "points": len(sweep.points),
        "labels": sweep.labels,
    })
    stages = _stages_to_train(pending, plans)
    if not pending:
        store.write_csv(order)
        return SweepSummary(len(sweep.points), len(sweep.points), 0, 0, str(store.csv_path))
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    pool = _executor(executor, jobs, scheduler)
    cancel = True
    try:
        _train_waves(pool, stages, threads, report)
        with tqdm(total=len(sweep.points), initial=len(sweep.points) - len(pending), unit="point", desc="sweep",
                  disable=not progress, dynamic_ncols=True) as bar:
            futures, finished = {}, len(sweep.points) - len(pending)
            for point in pending:
                # A rerun point (its record was stale) replaces its per-item rows.
                items = [f"{sink}.{param}" for sink, path in item_files(point, sweep.output).items() if sweep.items
                         for param in (f"items_csv={path}", "overwrite=true")]
                future = pool.submit(run_point, point.flowgraph, [*point_overrides(point, plans), *items], threads)
                futures[future] = point
            for future in pool.as_completed(list(futures)):
                point = futures[future]
                result = future.result()
                record = _record(point, plans, result)
                store.add(record, order)
                bar.update(1)
                bar.set_postfix_str(point.label(), refresh=False)
                finished += 1
                if report and not progress:
                    print(f"point {finished}/{len(sweep.points)} done: {point.label()}", file=sys.stderr, flush=True)
                for callback in callbacks:
                    callback(record)
        cancel = False
    finally:
        pool.close(cancel=cancel)
    return SweepSummary(len(sweep.points), len(sweep.points) - len(pending), len(pending), len(stages),
                        str(store.csv_path))


def is_done(point: Point, plans: dict[TrainSpec, ModelPlan], store: ResultStore) -> bool:
    """Recorded with unchanged input files and, for a point with a model trained into the cache, the same
    model key (its folder ``<stage>-<key>``): the key, not the file, identifies it, so a checkout without
    ``runs/`` keeps its finished points while a changed recipe input reruns them."""
    if not store.done(point.key):
        return False
    if point.train is None or plans[point.train].stages[-1].reused:
        return True
    recorded = Path(store.records[point.key]["train"]["checkpoint"])
    return recorded.parent.name == Path(plans[point.train].checkpoint).parent.name


def _stages_to_train(points: list[Point], plans: dict[TrainSpec, ModelPlan]) -> list[tuple[ModelPlan, StagePlan]]:
    """Distinct cached stages the pending points need that are not trained yet, upstream first."""
    seen, out = set(), []
    for point in points:
        if point.train is None:
            continue
        plan = plans[point.train]
        for stage in plan.stages:
            if not stage.reused and not stage.ready and stage.key not in seen:
                seen.add(stage.key)
                out.append((plan, stage))
    return sorted(out, key=lambda item: item[1].index)


def _train_waves(pool, stages: list[tuple[ModelPlan, StagePlan]], threads: int | None, report: bool) -> None:
    """Train stages wave by wave (a wave = one recipe position), each wave's stages in parallel."""
    waves: dict[int, list] = {}
    for plan, stage in stages:
        waves.setdefault(stage.index, []).append((plan, stage))
    for index in sorted(waves):
        began = time.perf_counter()
        futures = [pool.submit(train_model_stage, plan, stage, threads) for plan, stage in waves[index]]
        for future in pool.as_completed(futures):
            path = future.result()
            if report:
                tqdm.write(f"trained {path} ({time.perf_counter() - began:.0f} s)", file=sys.stderr)


def _record(point: Point, plans: dict[TrainSpec, ModelPlan], result: dict) -> dict:
    train = None
    if point.train is not None:
        plan = plans[point.train]
        if not plan.stages[-1].reused:  # a cached model is identified by its key (see is_done), not its file
            result = {**result, "inputs": {path: digest for path, digest in result["inputs"].items()
                                            if path != str(Path(plan.checkpoint).resolve())}}
        train = {"recipe": point.train.recipe, "stage": point.train.stage, "overrides": list(point.train.overrides),
                 "checkpoint": plan.checkpoint,
                 "stages": [{"name": s.name, "key": s.key, "export": s.export, "reused": s.reused}
                            for s in plan.stages]}
    return {
        "key": point.key, "method": point.method, "values": point.values, "flowgraph": point.flowgraph,
        "overrides": point_overrides(point, plans), "train": train, "seed": result["options"]["seed"],
        "code_version": code_version(), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **result,
    }


def describe_points(sweep: Sweep, plans: dict[TrainSpec, ModelPlan], store: ResultStore) -> list[dict]:
    """What ``--dry-run`` lists: each point, whether it is done, and the model it needs."""
    out = []
    for point in sweep.points:
        model = None
        if point.train is not None:
            plan = plans[point.train]
            state = "ready" if Path(plan.checkpoint).is_file() else "to train"
            model = f"{plan.checkpoint} ({state})"
        out.append({"key": point.key, "method": point.method, "values": point.values,
                    "status": "done" if is_done(point, plans, store) else "pending", "model": model})
    return out
