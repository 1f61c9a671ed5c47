"""The end-of-run plot: return against env steps and against wall time."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed

import matplotlib.pyplot as plt

from services.launcher.progress import read_progress


def plot_progress(
    progress_csv: Path, png: Path, *, target: float | None = None, title: str = ""
) -> Path:
    """Draws ``return_mean_100`` and ``eval_return_mean`` from ``progress_csv`` into ``png``."""
    rows = read_progress(progress_csv)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, x_key, x_label in (
        (axes[0], "actor_steps", "env steps"),
        (axes[1], "wall_s", "wall time (s)"),
    ):
        for y_key, label, marker in (
            ("return_mean_100", "training return (mean of last 100 episodes)", ""),
            ("eval_return_mean", "evaluation return (greedy)", "."),
        ):
            points = [(r[x_key], r[y_key]) for r in rows if r[y_key] is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, label=label, marker=marker, markersize=3)
        if target is not None:
            ax.axhline(
                target, color="grey", linestyle="--", linewidth=1, label=f"target {target:g}"
            )
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("return")
    axes[0].set_ylim(bottom=0)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(loc="upper left", fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png
