"""The block model: typed ports and parameters declared once, two processing paths.

A block subclass declares ``type_name``, ``inputs``, ``outputs`` and ``params`` as class attributes and
implements ``process_host`` (numpy/Numba, fast, for running) and/or ``process_torch`` (differentiable,
for training). Both take and return ``{port name: batch tensor}``; the scheduler picks the path by the
flowgraph's ``options.path`` and falls back to the one a block has. Blocks never mutate their inputs:
one output may feed several inputs (fan-out).

Where a block computes follows from its path: the torch path on the flowgraph's device, the host path
on the CPU unless the block declares ``host_path_on_device``. The scheduler hands every block its
inputs on that device, so on a GPU only blocks without a torch path cost host copies.

Training (:mod:`sdjscc_phy.training`) runs the torch path with autograd. A block takes part through
a few declarations: ``differentiable`` (does its torch path pass gradients from outputs to inputs),
``modules()`` (the torch modules it could train), ``train(mode)``, ``parameter_groups()``,
``calibration_items()``/``calibrate()`` (statistics fitted on training items, e.g. GSW weights or class
subspaces) and the classmethod ``export()`` (writes the inference checkpoint of trained blocks).
"""

from __future__ import annotations

import inspect
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from types import SimpleNamespace
from typing import Any, ClassVar, TypeVar

import numpy as np

from sdjscc_phy.core.params import Param, resolve_params
from sdjscc_phy.core.ports import Port, Shape, bind_shape, substitute_shape
from sdjscc_phy.errors import ParameterError, PortError
from sdjscc_phy.lazy import lazy_import

torch = lazy_import("torch")

Batch = dict[str, "torch.Tensor"]
T = TypeVar("T")


def derive_key(seed: int, block_id: str, batch_index: int | None = None, epoch: int | None = None,
               share: int | None = None) -> int:
    """A 63-bit key for one block's random stream (in one batch, or for the whole run), from the seed.

    Keys depend on the block id (not on block order), so adding a block does not change the noise
    another block draws. ``epoch`` (training only; -1 = the calibration pass) adds one more level, so
    every (seed, epoch, batch) of a training run draws its own noise and a resume draws it again;
    ``share`` (the first row of a data-parallel share) one more, so that every rank's stream differs.
    """
    spawn_key = (zlib.crc32(block_id.encode()),) + (() if batch_index is None else (batch_index,))
    spawn_key += () if epoch is None else (epoch + 1,)
    spawn_key += () if share is None else (share + 1,)
    seq = np.random.SeedSequence(entropy=seed, spawn_key=spawn_key)
    return int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1))


def share_rows(draw: Callable[[int], T], rows: int, share: tuple[int, int] | None) -> T:
    """``draw(rows)``, or, for a share ``(offset, size)`` of a larger batch, rows ``[offset, offset + rows)``
    of ``draw(size)`` (see :attr:`BatchContext.share`)."""
    if share is None:
        return draw(rows)
    offset, size = share
    return draw(size)[offset:offset + rows]


@dataclass
class BatchContext:
    """What a block knows about the batch it processes.

    Attributes:
        batch_index: 0-based index of this batch.
        start: index of the batch's first item in the stream.
        batch_size: number of items in this batch (the last one may be short).
        path: ``host`` or ``torch``.
        device: torch device the flowgraph runs on.
        seed: the flowgraph seed.
        block_id: id of the block processing the batch.
        run_key: seed-derived key for this block over the whole run; counter-based kernels use it with
            ``start`` as row offset, so their draws do not depend on the batch size.
        epoch: training epoch (None outside training; -1 for the calibration pass).
        training: the trainer's training mode: augmentation on, gradients flow.
        share: in data-parallel training, ``(offset, size)``: this process holds rows ``[offset, offset +
            batch_size)`` of a batch of ``size`` items (``start`` is then its first row's item); None when
            the batch is whole. Per-item random values drawn through :meth:`own_rows` are those of one
            process; ``key``, ``generator`` and ``rng`` then give each share a stream of its own.
    """

    batch_index: int
    start: int
    batch_size: int
    path: str
    device: torch.device
    seed: int
    block_id: str
    run_key: int
    epoch: int | None = None
    training: bool = False
    share: tuple[int, int] | None = None

    @cached_property
    def key(self) -> int:
        """Seed-derived 63-bit key for this block and batch (derived only when a block asks for it); in a
        share of a data-parallel batch, for this share (every rank draws its own stream)."""
        share = None if self.share is None else self.share[0]
        return derive_key(self.seed, self.block_id, self.batch_index, self.epoch, share)

    @cached_property
    def batch_key(self) -> int:
        """The key of the whole batch's stream, whatever the share (what :meth:`own_rows` draws from)."""
        return derive_key(self.seed, self.block_id, self.batch_index, self.epoch)

    @cached_property
    def generator(self) -> torch.Generator:
        """A torch generator seeded from ``key``, on ``device`` (torch-path RNGs)."""
        return torch.Generator(device=self.device).manual_seed(self.key)

    @property
    def rng(self) -> np.random.Generator:
        """A numpy generator seeded from ``key``."""
        return np.random.default_rng(self.key)

    @cached_property
    def batch_generator(self) -> torch.Generator:
        """A torch generator seeded from ``batch_key``, on ``device``."""
        return torch.Generator(device=self.device).manual_seed(self.batch_key)

    @property
    def batch_rng(self) -> np.random.Generator:
        """A numpy generator seeded from ``batch_key``."""
        return np.random.default_rng(self.batch_key)

    def own_rows(self, draw: Callable[[int], T]) -> T:
        """This process's rows of ``draw(n)``: random values for ``n`` items (items along the first axis)
        drawn from ``batch_generator`` or ``batch_rng``. In a share of a data-parallel batch it draws
        for the whole batch and keeps this process's rows, so every item gets the values it gets in one
        process, whatever the number of processes."""
        return share_rows(draw, self.batch_size, self.share)


@dataclass
class SetupContext:
    """What a block knows before the first batch: device, path, seed, its resolved port shapes, which
    of its outputs are connected (a block may skip computing the others) and the distinct batch sizes
    the run will process (empty when not known), so a block that needs whole groups of items can
    refuse a run before it starts."""

    device: torch.device
    path: str
    seed: int
    input_shapes: dict[str, Shape]
    output_shapes: dict[str, Shape]
    connected_outputs: frozenset[str] = frozenset()
    batch_sizes: tuple[int, ...] = ()


class Block:
    """Base class of every flowgraph block (built-in or plugin).

    Subclasses set the class attributes below; ``__init__`` validates parameters against ``params``
    (unknown names are errors, never dropped) and stores them in ``self.p``.
    """

    type_name: ClassVar[str] = ""
    inputs: ClassVar[tuple[Port, ...]] = ()
    outputs: ClassVar[tuple[Port, ...]] = ()
    params: ClassVar[tuple[Param, ...]] = ()
    #: Whether the torch path passes gradients from its (float) outputs to its inputs. Training refuses
    #: a flowgraph with a non-differentiable block between a trained block and a loss.
    differentiable: ClassVar[bool] = True
    #: Whether :meth:`calibrate` runs again before every validation pass (statistics of a changing model).
    recalibrate: ClassVar[bool] = False
    #: Whether the host path is plain torch code that runs on any device (a source indexing its tensors).
    #: False (numpy, Numba, a library codec): the host path runs on the CPU, and on a GPU the scheduler
    #: copies the block's inputs to the host and its outputs to the GPU where a block there reads them.
    host_path_on_device: ClassVar[bool] = False

    def __init__(self, block_id: str = "", **params: Any):
        self.id = block_id or self.type_name
        self.p: SimpleNamespace
        self.p, errors = resolve_params(self.params, params)
        errors += [] if errors else self.check_params()
        if errors:
            raise ParameterError("; ".join(f"block '{self.id}': {e}" for e in errors))

    # -- declaration helpers -------------------------------------------------------------------
    @classmethod
    def doc(cls) -> str:
        """The first paragraph of the class docstring, on one line (a summary may wrap in the source)."""
        return " ".join(cls.description().split("\n\n")[0].split())

    @classmethod
    def description(cls) -> str:
        """The class's own docstring, dedented ('' if it has none: Block's is not inherited)."""
        return inspect.cleandoc(cls.__dict__.get("__doc__") or "")

    @classmethod
    def input_port(cls, name: str) -> Port | None:
        return next((p for p in cls.inputs if p.name == name), None)

    @classmethod
    def output_port(cls, name: str) -> Port | None:
        return next((p for p in cls.outputs if p.name == name), None)

    @classmethod
    def available_paths(cls) -> tuple[str, ...]:
        """Which processing paths this block implements (``host``, ``torch``)."""
        return tuple(
            path
            for path, method in (("host", "process_host"), ("torch", "process_torch"))
            if getattr(cls, method) is not getattr(Block, method)
        )

    @classmethod
    def path_for(cls, requested: str) -> str:
        """The path this block runs in a flowgraph that asks for ``requested`` (``host`` or ``torch``):
        that one when the block has it, else the one it has."""
        paths = cls.available_paths()
        return requested if requested in paths else paths[0]

    @classmethod
    def runs_on_device(cls, path: str) -> bool:
        """Whether the block, running ``path``, computes on the flowgraph's device (else on the CPU)."""
        return path == "torch" or cls.host_path_on_device

    # -- hooks a block may override ------------------------------------------------------------
    def check_params(self) -> list[str]:
        """Cross-parameter checks; return messages like ``parameter 'x': ...``."""
        return []

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        """Output item shapes given input item shapes.

        The default binds the symbols of the declared input shapes and substitutes them into the
        declared output shapes; blocks whose output size depends on parameters override this and
        raise PortError / ParameterError for impossible combinations.
        """
        bindings = self.bind_inputs(input_shapes)
        return {port.name: substitute_shape(port.shape, bindings) for port in self.outputs}

    def propagate_tags(self, input_tags: dict[str, dict], input_shapes: dict[str, Shape]) -> dict[str, dict]:
        """Tags of the output ports given the tags and item shapes of the connected inputs, at validation.

        Tags are facts about a port's items that a block further down may need and cannot see in the
        item shape (GNU Radio's stream tags), e.g. how many of the mapper's symbols' bits are padding.
        The default passes every input tag to every output (GNU Radio's all-to-all policy); a block
        that adds or consumes a tag overrides this. Called before ``infer_shapes``.
        """
        merged = {key: value for tags in input_tags.values() for key, value in tags.items()}
        return {port.name: dict(merged) for port in self.outputs}

    def bind_inputs(self, input_shapes: dict[str, Shape]) -> dict[str, int]:
        """Symbol values implied by the connected input shapes; PortError on a mismatch."""
        bindings: dict[str, int] = {}
        for port in self.inputs:
            if port.name in input_shapes:
                problem = bind_shape(port.shape, input_shapes[port.name], bindings)
                if problem:
                    raise PortError(f"input port '{port.name}' {problem}")
        return bindings

    def num_items(self) -> int | None:
        """For sources: how many items exist (None = unbounded)."""
        return None

    def caveats(self, items: int) -> list[str]:
        """For sources: what a user should know about a run of ``items`` items, one line each (e.g. that
        they are a class-sorted prefix of the dataset); ``jsccflow run`` prints them as warnings."""
        return []

    def check_batch_sizes(self, batch_sizes: tuple[int, ...], input_shapes: dict[str, Shape]) -> None:
        """Raise PortError if the run's distinct batch sizes do not suit this block (e.g. a block that
        packs items into whole codewords); called at validation and again by ``setup``."""

    def setup(self, ctx: SetupContext) -> None:
        """Prepare for running (load models, build tables). Called once, after validation."""

    def process(self, inputs: Batch, ctx: BatchContext) -> Batch:
        """Process one batch on the path ``ctx.path`` (falling back to the path the block has)."""
        if self.path_for(ctx.path) == "host":
            return self.process_host(inputs, ctx)
        return self.process_torch(inputs, ctx)

    def process_host(self, inputs: Batch, ctx: BatchContext) -> Batch:
        """Fast host path (numpy/Numba)."""
        raise NotImplementedError

    def process_torch(self, inputs: Batch, ctx: BatchContext) -> Batch:
        """Differentiable torch path."""
        raise NotImplementedError

    def stop_requested(self) -> bool | None:
        """For sinks with a stopping rule: True once they have seen enough (checked after every batch),
        False while not; None (the default) for blocks without a rule. A run stops early when every
        block with a rule asks for it."""
        return None

    def results(self) -> dict[str, float]:
        """For sinks: metrics accumulated over the run."""
        return {}

    # -- training hooks ------------------------------------------------------------------------
    def modules(self) -> dict[str, torch.nn.Module]:
        """The torch modules this block can train, by name (checkpoints store them under ``<id>.<name>``)."""
        return {}

    def train(self, mode: bool = True) -> None:
        """Put the modules in training (``True``) or evaluation mode."""
        for module in self.modules().values():
            module.train(mode)

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        """Trainable parameters by group name (``optimizer.group_scales`` in a recipe scales a group)."""
        return {"default": [p for m in self.modules().values() for p in m.parameters() if p.requires_grad]}

    def calibration_items(self) -> int:
        """Training items :meth:`calibrate` must see before training starts (0: no calibration)."""
        return 0

    def calibrate(self, batches: list[Batch]) -> None:
        """Fit statistics (not trained by gradients) from this block's inputs over the calibration items."""

    @classmethod
    def export(cls, blocks: list[Block], path: str, metadata: dict) -> None:
        """Write the inference checkpoint of ``blocks`` (blocks of this family, trained together) to ``path``."""
        from sdjscc_phy.errors import RecipeError

        raise RecipeError(f"block type '{cls.type_name}' has no export format")

    def close(self, completed: bool) -> None:
        """Release resources after the run: finalise outputs if ``completed``, else discard partial files."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r})"
