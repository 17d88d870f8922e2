"""The streaming scheduler: moves whole batches from the sources through the graph to the sinks.

Each batch's tensors are dropped once every block has processed it, so memory stays bounded however
many items run; sinks accumulate statistics, not data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from sdjscc_phy.core.block import Batch, BatchContext, Block, SetupContext, derive_key
from sdjscc_phy.core.devices import device_problem
from sdjscc_phy.core.flowgraph import Flowgraph, batch_sizes, count_items
from sdjscc_phy.core.ports import format_shape, tensor_dtypes
from sdjscc_phy.errors import JsccflowError, PortError
from sdjscc_phy.lazy import lazy_import, require

if TYPE_CHECKING:
    import pandas

torch = lazy_import("torch")


@dataclass
class RunResult:
    """Metrics of a run and what it cost.

    Attributes:
        metrics: every sink's results by name (``accuracy``, ``accuracy_se``, ``ber``, ...).
        items: items processed.
        seconds: wall time of the run (set-up and every batch).
        variables: the flowgraph's variables after overrides (e.g. ``{"snr_db": 5.0}``).
        stopped_early: a sink's stopping rule (``metric_sink.max_errors``) ended the run before
            ``options.max_items``; ``items`` counts the items that ran.
    """

    metrics: dict[str, float]
    items: int
    seconds: float
    variables: dict[str, Any] = field(default_factory=dict)
    stopped_early: bool = False

    def to_frame(self) -> pandas.DataFrame:
        """One row: the variables, then the metrics, ``items`` and ``seconds`` (needs pandas: extra ``[frames]``).

        Rows of several runs concatenate into one table: ``pandas.concat([r.to_frame() for r in results])``.
        """
        pandas = require("pandas", extra="frames")
        return pandas.DataFrame([{**self.variables, **self.metrics, "items": self.items, "seconds": self.seconds}])


def resolve_device(name: str, where: str = "options: parameter 'device'") -> torch.device:
    """``auto`` -> the GPU when present, else the CPU; ``where`` names the setting in the error."""
    problem = device_problem(name)
    if problem:
        raise JsccflowError(f"{where}: {problem}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_path(requested: str, device: torch.device) -> str:
    """``auto`` -> ``torch`` on a GPU (batches stay on it), ``host`` on the CPU (the Numba kernels are the
    fast ones there); ``host`` and ``torch`` as given."""
    if requested != "auto":
        return requested
    return "host" if device.type == "cpu" else "torch"


def block_devices(fg: Flowgraph, path: str, device: torch.device) -> dict[str, torch.device]:
    """Where each block computes in a run on ``device`` with block paths ``path`` (host or torch): on
    ``device``, or on the CPU for a host path in numpy/Numba (:meth:`Block.runs_on_device`)."""
    host = torch.device("cpu")
    return {block_id: device if type(block).runs_on_device(type(block).path_for(path)) else host
            for block_id, block in fg.blocks.items()}


class Scheduler:
    """Runs a validated flowgraph batch by batch.

    Each block computes on its own device (:meth:`Block.runs_on_device`): the flowgraph's, or the CPU for
    a host path in numpy/Numba. A tensor stays where its block made it; the scheduler copies it to a
    reading block's device once per batch and device, so on a GPU batches cross to the host only at
    blocks that have no torch path, and only once per such stretch of blocks.
    """

    def __init__(self, fg: Flowgraph):
        self.fg = fg
        self.device = resolve_device(fg.options.device)
        self.path = resolve_path(fg.options.path, self.device)
        self.block_devices = block_devices(fg, self.path, self.device)
        self._inputs_of = {block_id: fg.upstream(block_id) for block_id in fg.blocks}
        self._item_shapes = dict(fg.output_shapes)
        self._run_keys = {block_id: derive_key(fg.options.seed, block_id) for block_id in fg.blocks}
        self._connected_outputs: dict[str, set[str]] = {block_id: set() for block_id in fg.blocks}
        for conn in fg.connections:
            self._connected_outputs[conn.src].add(conn.src_port)

    def setup(self, batch_sizes: tuple[int, ...] = ()) -> None:
        """Set every block up; ``batch_sizes``: the distinct batch sizes the run will process."""
        for block_id, block in self.fg.blocks.items():
            outputs = {p.name: self._item_shapes[(block_id, p.name)] for p in type(block).outputs}
            block.setup(SetupContext(self.block_devices[block_id], self.path, self.fg.options.seed,
                                     self.fg.input_shapes.get(block_id, {}), outputs,
                                     frozenset(self._connected_outputs[block_id]), batch_sizes))

    def run_batch(self, batch_index: int, start: int, batch_size: int, epoch: int | None = None,
                  training: bool = False, only: set[str] | None = None,
                  share: tuple[int, int] | None = None) -> dict[tuple[str, str], torch.Tensor]:
        """Process items ``[start, start + batch_size)`` through every block (or the blocks in ``only``), in
        topological order; returns every port's tensor of this batch by ``(block id, port)`` (figures read
        them; the run drops them). ``epoch``, ``training`` and ``share``: see :class:`BatchContext`."""
        values: dict[tuple[str, str], torch.Tensor] = {}
        copies: dict[tuple[tuple[str, str], str], torch.Tensor] = {}  # (source port, device type) -> copy
        seed = self.fg.options.seed
        for block_id, block in self.fg.blocks.items():
            if only is not None and block_id not in only:
                continue
            device = self.block_devices[block_id]
            inputs = {port: _on_device(values, copies, src, device) for port, src in self._inputs_of[block_id].items()}
            ctx = BatchContext(batch_index, start, batch_size, self.path, device, seed, block_id,
                               self._run_keys[block_id], epoch, training, share)
            outputs = block.process(inputs, ctx)
            self._check_outputs(block, outputs, batch_size)
            for port, tensor in outputs.items():
                values[(block_id, port)] = tensor
        return values

    def _check_outputs(self, block: Block, outputs: Batch, batch_size: int) -> None:
        """A block must return every connected output with the declared dtype and item shape."""
        for port in type(block).outputs:
            if port.name not in self._connected_outputs[block.id]:
                continue
            tensor = outputs.get(port.name)
            where = f"block '{block.id}' output port '{port.name}'"
            if not isinstance(tensor, torch.Tensor):
                raise PortError(f"{where}: block returned no tensor")
            if tensor.dtype not in tensor_dtypes(port.dtype):
                raise PortError(f"{where}: declared {port.dtype} but returned {tensor.dtype}")
            declared = self._item_shapes[(block.id, port.name)]
            actual = tuple(tensor.shape)
            fits = len(actual) == len(declared) + 1 and actual[0] == batch_size and all(
                isinstance(d, str) or d == a for d, a in zip(declared, actual[1:]))
            if not fits:
                raise PortError(f"{where}: declared item shape {format_shape(declared)} for a batch of "
                                f"{batch_size} but returned {list(actual)}")
            if any(isinstance(d, str) for d in declared):
                # Symbols left open at validation bind on the first batch; later batches must agree.
                self._item_shapes[(block.id, port.name)] = actual[1:]

    def stop_requested(self) -> bool:
        """Whether every block with a stopping rule asks to stop (False when no block has one)."""
        votes = [vote for vote in (block.stop_requested() for block in self.fg.blocks.values()) if vote is not None]
        return bool(votes) and all(votes)

    def abort(self) -> None:
        """Discard partial outputs after a failed run."""
        for block in self.fg.blocks.values():
            block.close(completed=False)

    def close(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for block in self.fg.blocks.values():
            block.close(completed=True)
        for block in self.fg.blocks.values():
            for name, value in block.results().items():
                if name in metrics:
                    raise JsccflowError(f"metric '{name}' is produced by two blocks; give one a 'prefix'")
                metrics[name] = value
        return metrics


def _on_device(values: dict, copies: dict, src: tuple[str, str], device: torch.device) -> torch.Tensor:
    """The tensor of output port ``src`` on ``device``, copied there once per batch. A flowgraph uses one
    accelerator at most, so the device type tells the CPU from it."""
    tensor = values[src]
    if tensor.device.type == device.type:
        return tensor
    key = (src, device.type)
    if key not in copies:
        copies[key] = tensor.to(device)
    return copies[key]


def run_flowgraph(fg: Flowgraph, progress: bool = False) -> RunResult:
    """Run a validated flowgraph to the end, or until its sinks' stopping rules are met, and collect the
    sinks' metrics; ``items`` of the result counts the items that ran."""
    scheduler = Scheduler(fg)
    total = count_items(fg)
    batch_size = fg.options.batch_size
    began = time.perf_counter()
    done = 0
    stopped = False
    # A run never needs gradients (training drives the scheduler itself): inference mode skips autograd
    # bookkeeping on both paths, and the classifier predicts as it does on the host path (flip TTA).
    # Set-up stays outside it: modules moved or converted there must remain usable by autograd.
    try:
        scheduler.setup(batch_sizes(total, batch_size))
        with torch.inference_mode(), tqdm(total=total, unit="item", disable=not progress,
                                          desc=fg.options.id or "run") as bar:
            for batch_index, start in enumerate(range(0, total, batch_size)):
                size = min(batch_size, total - start)
                scheduler.run_batch(batch_index, start, size)
                bar.update(size)
                done += size
                if done < total and scheduler.stop_requested():
                    stopped = True
                    break
    except BaseException:
        scheduler.abort()
        raise
    with torch.inference_mode():  # the sinks' states were made in inference mode
        metrics = scheduler.close()
    return RunResult(metrics, done, time.perf_counter() - began, dict(fg.variables), stopped)
