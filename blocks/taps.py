"""Taps: sinks that let a user look at the signals of a run (GNU Radio's QT sinks, written to files).

Each keeps the first ``max_items`` items it receives and writes its file(s) only when the run completes
(temporary file renamed into place), so a failed or interrupted run leaves nothing half-written. Output
paths are checked when the flowgraph is validated, before any work.
"""

from __future__ import annotations

import glob
import io
import os

from sdjscc_phy.core import tags
from sdjscc_phy.core.block import Batch, BatchContext, Block
from sdjscc_phy.core.params import Param
from sdjscc_phy.core.ports import ANY_DTYPE, ANY_SHAPE, Port, Shape
from sdjscc_phy.errors import JsccflowError
from sdjscc_phy.io.paths import check_output_file, check_output_folder
from sdjscc_phy.io.results import write_bytes_atomic
from sdjscc_phy.lazy import lazy_import
from sdjscc_phy.phy.choices import CONSTELLATIONS

np = lazy_import("numpy")
torch = lazy_import("torch")
mapping = lazy_import("sdjscc_phy.kernels.mapping")
image = lazy_import("PIL.Image")

_OVERWRITE = Param("overwrite", "bool", False, doc="replace existing output files")


def _max_items(default: int) -> Param:
    return Param("max_items", "int", default, low=1, unit="items", doc="record the first N items of the run")


class _Tap(Block):
    """Keeps the first ``max_items`` items of every connected input; ``write`` gets them at the end."""

    def check_params(self) -> list[str]:
        try:
            self.check_output()
        except JsccflowError as err:
            return [f"parameter 'path': {err}"]
        return []

    def check_output(self) -> None:
        """Raise JsccflowError unless ``path`` can take this tap's output (see ``sdjscc_phy.io.paths``)."""
        check_output_file(self.p.path, "path", force=self.p.overwrite, force_hint="set overwrite: true")

    def setup(self, ctx) -> None:
        self._kept: dict[str, list[torch.Tensor]] = {}
        self._count = 0

    def process_host(self, inputs: Batch, ctx: BatchContext) -> Batch:
        take = min(ctx.batch_size, self.p.max_items - self._count)
        if take > 0:
            for port, tensor in inputs.items():
                self._kept.setdefault(port, []).append(tensor[:take].detach().cpu())
            self._count += take
        return {}

    def close(self, completed: bool) -> None:
        if completed and getattr(self, "_count", 0):
            self.write({port: torch.cat(parts) for port, parts in self._kept.items()})

    def write(self, kept: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError


class ImageSink(_Tap):
    """Writes received images as PNG: one labelled grid of the first N (`mode: grid`) or one file per image."""

    type_name = "image_sink"
    inputs = (
        Port("image", "float32", (3, "H", "W"), "RGB image in [0, 1] (values outside are clipped)"),
        Port("label", "int64", (), "true class: the caption (with label_hat: its colour)", optional=True),
        Port("label_hat", "int64", (), "predicted class: the caption, green when right, red when wrong",
             optional=True),
    )
    params = (
        Param("path", "path", doc="mode grid: the PNG file; mode files: a directory for item_NNNNN.png"),
        Param("mode", "str", "grid", choices=("grid", "files"), doc="one labelled grid, or one PNG per image"),
        _max_items(16),
        Param("columns", "int", 8, low=1, doc="grid: images per row"),
        Param("class_names", "list[str]", [], doc="captions: names of classes 0, 1, ... (default: the index)"),
        _OVERWRITE,
    )

    def check_output(self) -> None:
        if self.p.mode == "grid":
            super().check_output()
            return
        check_output_folder(self.p.path, "path")
        existing = glob.glob(os.path.join(glob.escape(self.p.path), "item_*.png"))
        if existing and not self.p.overwrite:
            raise JsccflowError(f"path '{self.p.path}' already holds item_*.png files ({len(existing)}); "
                                f"set overwrite: true to replace them")

    def write(self, kept: dict[str, torch.Tensor]) -> None:
        images = kept["image"].float().clamp(0, 1)
        if self.p.mode == "files":
            pixels = images.mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            for index, array in enumerate(pixels):
                buffer = io.BytesIO()
                image.fromarray(array).save(buffer, format="PNG")
                write_bytes_atomic(os.path.join(self.p.path, f"item_{index:05d}.png"), buffer.getvalue())
            return
        from sdjscc_phy.plots.image_grid import labelled_grid_png

        captions, colors = self._captions(kept, len(images))
        write_bytes_atomic(self.p.path, labelled_grid_png(images, captions, colors, self.p.columns))

    def _captions(self, kept: dict[str, torch.Tensor], n: int) -> tuple[list[str], list[str]]:
        names = self.p.class_names

        def name(index: int) -> str:
            return names[index] if 0 <= index < len(names) else str(index)

        label, label_hat = kept.get("label"), kept.get("label_hat")
        if label_hat is not None:
            colors = (["black"] * n if label is None else
                      ["green" if right else "red" for right in (label_hat == label).tolist()])
            return [name(i) for i in label_hat.tolist()], colors
        if label is not None:
            return [name(i) for i in label.tolist()], ["black"] * n
        return [f"item {i}" for i in range(n)], ["black"] * n


class ConstellationSink(_Tap):
    """Writes a constellation diagram (PNG): the received symbols of the first N items over the reference points."""

    type_name = "constellation_sink"
    inputs = (Port("symbols", "complex64", ("S",), "complex baseband symbols (e.g. the channel's y)"),)
    params = (
        Param("path", "path", doc="PNG file"),
        Param("constellation", "str", "auto", choices=("auto", "none", *CONSTELLATIONS),
              doc="reference points; auto: the symbol_mapper's upstream, none: no reference"),
        _max_items(64),
        Param("title", "str", "", doc="figure title"),
        _OVERWRITE,
    )
    _mapped: str | None = None  # the upstream mapper's constellation, read from its tag at validation

    def propagate_tags(self, input_tags: dict[str, dict], input_shapes: dict[str, Shape]) -> dict[str, dict]:
        mapped = input_tags.get("symbols", {}).get(tags.MAPPED_BITS)
        self._mapped = mapped[1] if mapped else None
        return {}

    def write(self, kept: dict[str, torch.Tensor]) -> None:
        from sdjscc_phy.plots.constellation import constellation_png

        name = self._mapped if self.p.constellation == "auto" else self.p.constellation
        reference = mapping.constellation(CONSTELLATIONS[name]) if name not in (None, "none") else None
        png = constellation_png(kept["symbols"].numpy(), reference, self.p.title)
        write_bytes_atomic(self.p.path, png)


class TensorSink(_Tap):
    """Writes any port's first N items to a NumPy .npz file (array `x`, and `item`: their indices in the run)."""

    type_name = "tensor_sink"
    inputs = (Port("x", ANY_DTYPE, ANY_SHAPE, "any tensor; bits are saved as uint8 (host path) or float32"),)
    params = (Param("path", "path", doc=".npz file"), _max_items(16), _OVERWRITE)

    def write(self, kept: dict[str, torch.Tensor]) -> None:
        x = kept["x"]
        buffer = io.BytesIO()
        np.savez_compressed(buffer, x=x.numpy(), item=np.arange(x.shape[0]))
        write_bytes_atomic(self.p.path, buffer.getvalue())
