"""PNG figures: annotated heat-maps and learning curves (matplotlib, headless Agg)."""

from __future__ import annotations

from typing import Sequence

from .io import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display needed; never opens a window
    import matplotlib.pyplot as plt

    return plt


def heatmap(matrix, row_labels: Sequence[str], col_labels: Sequence[str], path, *,
            title: str = "", cmap: str = "viridis", vmin=None, vmax=None,
            annotate: bool | None = None, fmt: str = "{:.2f}", xlabel: str = "",
            ylabel: str = "", colorbar_label: str = "") -> str:
    """Draw ``matrix`` (shape (n_rows, n_cols)) as a labelled heat-map PNG at ``path``.

    Cells are annotated with their values when the matrix is small (<= 20 x 20, or as
    ``annotate`` says). Long labels are shortened to 40 characters. Returns the path.
    """
    import numpy as np

    plt = _pyplot()
    m = np.asarray(matrix, dtype=float)
    n_rows, n_cols = m.shape
    if annotate is None:
        annotate = n_rows <= 20 and n_cols <= 20
    short = lambda s: (s if len(s) <= 40 else s[:37] + "...")  # noqa: E731
    rows, cols = [short(str(r)) for r in row_labels], [short(str(c)) for c in col_labels]
    longest = max([len(x) for x in rows + cols] + [1])
    w = min(2 + 0.55 * n_cols + 0.07 * longest, 40)
    h = min(1.5 + 0.45 * n_rows + 0.07 * longest, 40)
    fig, ax = plt.subplots(figsize=(max(w, 4), max(h, 3)))
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


def learning_curves(epochs: Sequence[int], series: dict, path, *, metric_series: dict | None = None,
                    title: str = "Learning curves", metric_label: str = "metric") -> str:
    """Plot loss curves (``series``: name -> values by epoch) and, on a second panel, metric
    curves (``metric_series``). Returns the path of the PNG written."""
    plt = _pyplot()
    n_panels = 2 if metric_series else 1
    fig, axes = plt.subplots(1, n_panels, figsize=(6 * n_panels, 4.2), squeeze=False)
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
    plt = _pyplot()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return str(path)
