"""Image grid: originals and each method's reconstruction, with the classifier's label under each
(the SD-JSCC paper's Fig. 5)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from sdjscc_phy.errors import JsccflowError  # noqa: E402
from sdjscc_phy.plots.files import save_png_svg  # noqa: E402

SINK_TYPE = "metric_sink"


@dataclass
class Capture:
    """What one flowgraph run shows: originals, reconstructions, true and predicted labels."""

    images: torch.Tensor  # [N, 3, H, W] in [0, 1]
    reconstructions: torch.Tensor
    labels: torch.Tensor
    predicted: torch.Tensor
    class_names: tuple[str, ...]


def capture(flowgraph: str, overrides: list[str], images: int, pool: int | None = None) -> Capture:
    """Run ``pool`` items (default 10 x ``images``; image sources shuffled with the flowgraph's seed) of a
    flowgraph as one batch, read the ports that feed its metric sink (``image``, ``image_hat``,
    ``logits``/``label_hat``, ``label``) and keep ``images`` of them, taking the classes in turn (the
    same items for every flowgraph with the same source and seed)."""
    from sdjscc_phy.core.flowgraph import load_flowgraph
    from sdjscc_phy.core.scheduler import Scheduler

    pool = pool or 10 * images
    sizes = [f"options.max_items={pool}", f"options.batch_size={pool}"]
    fg = load_flowgraph(flowgraph, [*overrides, *sizes])
    shuffled = [f"{b.id}.shuffle=true" for b in fg.sources if type(b).type_name == "image_source"]
    if shuffled:
        fg = load_flowgraph(flowgraph, [*overrides, *sizes, *shuffled])
    sinks = [b for b in fg.blocks.values() if type(b).type_name == SINK_TYPE]
    feeds = fg.upstream(sinks[0].id) if sinks else {}
    missing = [p for p in ("image", "image_hat", "label") if p not in feeds]
    if "logits" not in feeds and "label_hat" not in feeds:
        missing.append("logits or label_hat")
    if missing:
        raise JsccflowError(f"{flowgraph}: plot-grid needs a {SINK_TYPE} fed with {', '.join(missing)}")
    sources = [b for b in fg.sources if hasattr(b, "data")]
    class_names = tuple(sources[0].data.class_names) if sources else ()
    scheduler = Scheduler(fg)
    with torch.inference_mode():
        scheduler.setup()
        try:
            values = scheduler.run_batch(0, 0, min(pool, _count(fg)))
        finally:
            scheduler.abort()
    labels = values[feeds["label"]].cpu()
    keep = torch.tensor(_classes_in_turn(labels.tolist(), images), dtype=torch.long)
    predicted = values[feeds["logits"]].argmax(dim=1) if "logits" in feeds else values[feeds["label_hat"]]
    return Capture(values[feeds["image"]].float().cpu()[keep], values[feeds["image_hat"]].float().clamp(0, 1).cpu()[keep],
                   labels[keep], predicted.cpu()[keep], class_names)


def _classes_in_turn(labels: list[int], count: int) -> list[int]:
    """Indices of ``count`` items: the first of each class, then the second of each class, ..."""
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    order = [i for rank in range(len(labels)) for c in sorted(by_class) if rank < len(by_class[c])
             for i in [by_class[c][rank]]]
    return order[:count]


def _count(fg) -> int:
    from sdjscc_phy.core.flowgraph import count_items

    return count_items(fg)


def plot_image_grid(captures: dict[str, Capture], out: str, title: str | None = None) -> list[str]:
    """Row 0: the originals (true label); one row per method: its reconstructions with the predicted
    label (green when right, red when wrong). Writes ``out.png`` and ``out.svg``."""
    if not captures:
        raise JsccflowError("plot-grid: no method to show")
    first = next(iter(captures.values()))
    for name, cap in captures.items():
        if cap.images.shape != first.images.shape or not torch.equal(cap.images, first.images):
            raise JsccflowError(f"plot-grid: method '{name}' shows other source images than the first method")
    n = first.images.shape[0]
    rows = 1 + len(captures)
    fig, axes = plt.subplots(rows, n, figsize=(1.3 * n + 1.2, 1.55 * rows), squeeze=False)
    names = first.class_names

    def name_of(index: int) -> str:
        return names[index] if 0 <= index < len(names) else str(index)

    for j in range(n):
        _show(axes[0][j], first.images[j], name_of(int(first.labels[j])), "black")
    for i, (method, cap) in enumerate(captures.items(), start=1):
        for j in range(n):
            right = int(cap.predicted[j]) == int(cap.labels[j])
            _show(axes[i][j], cap.reconstructions[j], name_of(int(cap.predicted[j])), "green" if right else "red")
    for i, label in enumerate(["original", *captures]):
        axes[i][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize="small")
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    paths = save_png_svg(fig, out, dpi=150)
    plt.close(fig)
    return paths


def labelled_grid_png(images: torch.Tensor, captions: list[str], colors: list[str], columns: int) -> bytes:
    """PNG bytes of ``images`` ``[N, 3, H, W]`` in [0, 1], ``columns`` per row, a caption under each."""
    n = images.shape[0]
    columns = min(columns, n)
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.3 * columns + 0.2, 1.55 * rows), squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index < n:
            _show(ax, images[index].clamp(0, 1), captions[index], colors[index])
        else:
            ax.axis("off")
    fig.tight_layout()
    return figure_png(fig)


def figure_png(fig) -> bytes:
    """The figure as PNG bytes (150 dpi); closes it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _show(ax, image: torch.Tensor, caption: str, color: str) -> None:
    ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(caption, color=color, fontsize="x-small", labelpad=2)
