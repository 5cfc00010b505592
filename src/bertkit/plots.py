"""PNG figures: annotated heat-maps (single or a grid of panels) and learning curves
(matplotlib).

Figures are ``matplotlib.figure.Figure`` objects drawn on their own Agg canvas, never
through pyplot: nothing here changes matplotlib's global backend or pyplot's figure list,
so plotting from a notebook leaves the notebook's own backend alone.
"""

from __future__ import annotations

from typing import Sequence

from .io import atomic_path


def _figure(figsize):
    """A stand-alone Figure (no pyplot state, no global backend switch)."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def heatmap(matrix, row_labels: Sequence[str], col_labels: Sequence[str], path, *,
            title: str = "", cmap: str = "viridis", vmin=None, vmax=None,
            annotate: bool | None = None, fmt: str = "{:.2f}", xlabel: str = "",
            ylabel: str = "", colorbar_label: str = "") -> str:
    """Draw ``matrix`` (shape (n_rows, n_cols)) as a labelled heat-map PNG at ``path``.

    Cells are annotated with their values when the matrix is small (<= 20 x 20, or as
    ``annotate`` says). Long labels are shortened to 40 characters. Returns the path.
    """
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    n_rows, n_cols = m.shape
    if annotate is None:
        annotate = n_rows <= 20 and n_cols <= 20
    short = lambda s: (s if len(s) <= 40 else s[:37] + "...")  # noqa: E731
    rows, cols = [short(str(r)) for r in row_labels], [short(str(c)) for c in col_labels]
    longest = max([len(x) for x in rows + cols] + [1])
    w = min(2 + 0.55 * n_cols + 0.07 * longest, 40)
    h = min(1.5 + 0.45 * n_rows + 0.07 * longest, 40)
    fig = _figure((max(w, 4), max(h, 3)))
    ax = fig.subplots()
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if colorbar_label:
        cbar.set_label(colorbar_label)
    fontsize = 9 if max(n_rows, n_cols) <= 30 else 6
    ax.set_xticks(range(n_cols), labels=cols, rotation=60, ha="right", rotation_mode="anchor",
                  fontsize=fontsize)
    ax.set_yticks(range(n_rows), labels=rows, fontsize=fontsize)
    if annotate:
        lo, hi = np.nanmin(m), np.nanmax(m)
        mid = (lo + hi) / 2
        for i in range(n_rows):
            for j in range(n_cols):
                ax.text(j, i, fmt.format(m[i, j]), ha="center", va="center", fontsize=8,
                        color="black" if m[i, j] > mid else "white")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def heatmap_grid(matrices, row_labels: Sequence[str], col_labels: Sequence[str], path, *,
                 titles: Sequence[str] = (), title: str = "", ncols: int | None = None,
                 cmap: str = "viridis", vmin=None, vmax=None, xlabel: str = "",
                 ylabel: str = "", colorbar_label: str = "") -> str:
    """Draw several same-shaped matrices (shape (n_panels, n_rows, n_cols)) as a grid of
    heat-maps sharing one colour scale, e.g. every attention head of a layer.

    Labels appear on every panel (smaller when there are many); values are not annotated.
    Returns the path.
    """
    import math

    import numpy as np

    ms = np.asarray(matrices, dtype=float)
    n_panels, n_rows, n_cols = ms.shape
    ncols = ncols or min(4, n_panels)
    nrows = math.ceil(n_panels / ncols)
    short = lambda s: (s if len(s) <= 20 else s[:17] + "...")  # noqa: E731
    rows, cols = [short(str(r)) for r in row_labels], [short(str(c)) for c in col_labels]
    longest = max([len(x) for x in rows + cols] + [1])
    panel = min(max(2.5, 0.22 * max(n_rows, n_cols) + 0.06 * longest + 0.8), 7)
    fig = _figure((panel * ncols + 1.2, panel * nrows + 0.8))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    vmin = np.nanmin(ms) if vmin is None else vmin
    vmax = np.nanmax(ms) if vmax is None else vmax
    fontsize = 7 if max(n_rows, n_cols) <= 25 else 5
    im = None
    for k, ax in enumerate(axes.flat):
        if k >= n_panels:
            ax.axis("off")
            continue
        im = ax.imshow(ms[k], cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_xticks(range(n_cols), labels=cols, rotation=90, fontsize=fontsize)
        ax.set_yticks(range(n_rows), labels=rows, fontsize=fontsize)
        if k < len(titles):
            ax.set_title(titles[k], fontsize=9)
        if k % ncols == 0 and ylabel:
            ax.set_ylabel(ylabel, fontsize=8)
        if k >= n_panels - ncols and xlabel:
            ax.set_xlabel(xlabel, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 0.93, 0.97 if title else 1))
    cax = fig.add_axes((0.945, 0.15, 0.015, 0.7))
    cbar = fig.colorbar(im, cax=cax)
    if colorbar_label:
        cbar.set_label(colorbar_label)
    return _save(fig, path)


def learning_curves(epochs: Sequence[int], series: dict, path, *, metric_series: dict | None = None,
                    title: str = "Learning curves", metric_label: str = "metric") -> str:
    """Plot loss curves (``series``: name -> values by epoch) and, on a second panel, metric
    curves (``metric_series``). Returns the path of the PNG written."""
    n_panels = 2 if metric_series else 1
    fig = _figure((6 * n_panels, 4.2))
    axes = fig.subplots(1, n_panels, squeeze=False)
    ax = axes[0][0]
    for name, values in series.items():
        ax.plot(list(epochs)[: len(values)], values, marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    if metric_series:
        ax2 = axes[0][1]
        for name, values in metric_series.items():
            ax2.plot(list(epochs)[: len(values)], values, marker="o", label=name)
        ax2.set_xlabel("epoch")
        ax2.set_ylabel(metric_label)
        ax2.set_title(f"Validation {metric_label}")
        ax2.grid(alpha=0.3)
        ax2.legend()
    for a in axes[0]:
        a.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path) -> str:
    # Figure.savefig draws on the figure's own Agg canvas (matplotlib >= 3.1 attaches one)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return str(path)


def training_curves(steps: Sequence[dict], epochs: Sequence[dict], path, *, metric: str = "accuracy",
                    best_step: int | None = None) -> str:
    """A training run's curves by optimizer step, as a PNG at ``path``.

    Left panel: the training loss of each ``steps`` row (mean over its window of
    ``--log-steps`` steps), the per-epoch mean training loss and every validation loss
    (inside epochs with ``--eval-steps``, and at each epoch's end) on the same axes, the
    learning rate on a second y axis, dotted lines at epoch ends. Right panel (with
    validation): the validation ``metric``, the kept point (``best_step``) marked.

    ``steps``: rows of steps.csv (``step``, ``epoch``, optional ``train_loss``, ``lr``,
    ``val_loss``, ``val_<metric>``); ``epochs``: the per-epoch history rows (``epoch``,
    ``step``, ``train_loss``). Drawn on a ``matplotlib.figure.Figure`` of its own (no
    pyplot state). Returns the path.
    """
    from matplotlib.figure import Figure

    train = [r for r in steps if r.get("train_loss") is not None]
    val = [r for r in steps if r.get("val_loss") is not None]
    fig = Figure(figsize=(12 if val else 6.5, 4.4))
    ax = fig.add_subplot(1, 2 if val else 1, 1)
    if train:
        ax.plot([r["step"] for r in train], [r["train_loss"] for r in train], lw=1.2,
                color="tab:blue", label="train loss (per window)",
                marker="s" if len(train) == 1 else None)  # one window: a line would not show
    ends = [r for r in epochs if r.get("step") is not None]
    if ends:
        ax.plot([r["step"] for r in ends], [r["train_loss"] for r in ends], "o", color="tab:blue",
                mfc="white", label="train loss (epoch mean)")
    if val:
        ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", color="tab:orange",
                ms=4, lw=0.8, label="validation loss")
    for r in ends[:-1]:
        ax.axvline(r["step"], color="grey", ls=":", lw=0.8)
    ax.set_xlabel("optimizer step (dotted: epoch ends)")
    ax.set_ylabel("loss")
    ax.set_title("Training and validation loss")
    ax.grid(alpha=0.3)
    lines, labels = ax.get_legend_handles_labels()
    lr_rows = [r for r in train if r.get("lr") is not None]
    if lr_rows:
        ax_lr = ax.twinx()
        ax_lr.plot([r["step"] for r in lr_rows], [r["lr"] for r in lr_rows], "--", color="grey",
                   lw=0.9, label="learning rate", marker="x" if len(lr_rows) == 1 else None)
        ax_lr.set_ylabel("learning rate")
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        more = ax_lr.get_legend_handles_labels()
        lines, labels = lines + more[0], labels + more[1]
    if lines:
        ax.legend(lines, labels, fontsize=8)
    if val:
        ax2 = fig.add_subplot(1, 2, 2)
        key = f"val_{metric}"
        pts = [r for r in val if r.get(key) is not None]
        ax2.plot([r["step"] for r in pts], [r[key] for r in pts], "o-", color="tab:green", ms=4,
                 label=f"validation {metric}")
        kept = [r for r in pts if r["step"] == best_step]
        if kept:
            ax2.plot([kept[0]["step"]], [kept[0][key]], "*", color="tab:red", ms=14, label="kept")
        for r in ends[:-1]:
            ax2.axvline(r["step"], color="grey", ls=":", lw=0.8)
        ax2.set_xlabel("optimizer step")
        ax2.set_ylabel(metric)
        ax2.set_title(f"Validation {metric}")
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=8)
    for a in fig.axes:
        a.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return str(path)
