"""Tables and figures of multi-seed runs, in one format for every game.

A *run* is the history a learner's ``learn`` returns on a vector env: ``{key: (rounds,
seeds)}``. :func:`summarize` turns runs into table rows; :func:`write_table` writes them
as Markdown and CSV; the ``plot_*`` functions need matplotlib (``pip install
fpo-envs[plot]``). :func:`plot_curves` and :func:`plot_phase_portrait` draw the benchmark's
figures too, in its :class:`FigureStyle`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COLUMNS = (
    ("peak_true_utility", "peak U"),
    ("final_true_utility", "final U"),
    ("final_proxy_reward", "final proxy"),
    ("final_signal_norm", "final signal"),
    ("final_noise_norm", "final noise"),
)
"""The table's columns after the learner and seed count: each a row key (its ``_mean``, ``_std``
and ``_median`` are shown) and its heading."""


def summarize(label: str, history: dict[str, np.ndarray], optimum: float) -> dict[str, float | str | int]:
    """One table row: mean, spread (std) and median over seeds of each column, and the
    collapse rate (fraction of seeds whose final true utility is below half the optimum)."""
    u = history["true_utility"]
    per_seed = {
        "peak_true_utility": u.max(0),
        "final_true_utility": u[-1],
        "final_proxy_reward": history["proxy_reward"][-1],
        "final_signal_norm": history["signal_norm"][-1],
        "final_noise_norm": history["noise_norm"][-1],
    }
    row: dict[str, float | str | int] = {"learner": label, "seeds": u.shape[1], "rounds": u.shape[0]}
    for key, values in per_seed.items():
        row[f"{key}_mean"] = float(values.mean())
        row[f"{key}_std"] = float(values.std())
        row[f"{key}_median"] = float(np.median(values))
    row["collapse_rate"] = float((u[-1] < 0.5 * optimum).mean())
    return row


def write_table(rows: list[dict], path: Path, title: str) -> tuple[Path, Path]:
    """Write ``rows`` to ``path.with_suffix('.csv')`` and ``.md``; return both paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = path.with_suffix(".csv"), path.with_suffix(".md")
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    md_path.write_text(markdown_table(rows, title))
    return csv_path, md_path


def markdown_table(rows: list[dict], title: str) -> str:
    """Markdown: ``mean ± std (median)`` per column over seeds, and the collapse rate."""
    head = ["learner", "seeds"] + [name for _, name in COLUMNS] + ["collapse rate"]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row["learner"]), str(row["seeds"])]
        cells += [f"{row[k + '_mean']:.3f} ± {row[k + '_std']:.3f} ({row[k + '_median']:.3f})" for k, _ in COLUMNS]
        cells.append(f"{row['collapse_rate']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        from gymnasium.error import DependencyNotInstalled

        raise DependencyNotInstalled('plotting needs matplotlib: pip install "fpo-envs[plot]"') from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass(frozen=True)
class FigureStyle:
    """How :func:`plot_curves` and :func:`plot_phase_portrait` draw. ``FigureStyle()`` is the
    compact look of the experiment scripts; the benchmark's (:data:`agents.bench.plots.STYLE`)
    gives every figure a title that says what its lines, bands and markers are, and puts the
    legend beside the data.

    Attributes:
        colors: the learners' colours in order (``None``: matplotlib's colour cycle).
        captions: titles that explain the figure, seed counts in the curves' legend, and the
            legend beside the panels; otherwise the legend sits inside the first panel.
        panel_width: inches per curve panel; legend_width: inches right of them for the legend
            (with ``captions``).
        curve_width: the curves' line width (``None``: matplotlib's); band_alpha: their band's.
        portrait_size: the phase portrait's size in inches; background: its colormap.
        path_width, star_size: the portrait's median paths and end markers.
        dpi: of the saved PNG.
    """

    colors: tuple[str, ...] | None = None
    captions: bool = False
    panel_width: float = 5.5
    legend_width: float = 0.0
    curve_width: float | None = None
    band_alpha: float = 0.25
    portrait_size: tuple[float, float] = (6.0, 5.0)
    background: str = "viridis"
    path_width: float = 2.0
    star_size: float = 14.0
    dpi: int = 120

    def colors_for(self, labels: list[str]) -> dict[str, str]:
        """Each label's colour, in order, the palette repeating past its end."""
        palette = self.colors or tuple(_pyplot().rcParams["axes.prop_cycle"].by_key()["color"])
        return {label: palette[i % len(palette)] for i, label in enumerate(labels)}


def plot_curves(
    runs: dict[str, dict[str, np.ndarray]],
    keys: tuple[str, ...],
    path: Path,
    optimum: float | None = None,
    title: str = "",
    style: FigureStyle | None = None,
) -> Path:
    """Median and interquartile band over seeds of each ``key`` against rounds, one panel a
    key; ``runs[label][key]`` has shape ``(rounds, seeds)``. ``optimum`` is drawn on the
    ``true_utility`` panels; ``title`` heads the figure where ``style.captions``
    (``style``: :class:`FigureStyle`, ``None``: its defaults)."""
    style = style or FigureStyle()
    plt = _pyplot()
    color = style.colors_for(list(runs))
    legend_width = style.legend_width if style.captions else 0.0
    width = style.panel_width * len(keys) + legend_width
    fig, axes = plt.subplots(1, len(keys), figsize=(width, 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for label, history in runs.items():
            values = np.asarray(history[key], dtype=np.float64)
            lo, mid, hi = np.percentile(values, [25, 50, 75], axis=1)
            rounds = np.arange(len(mid))
            name = f"{label} ({values.shape[1]} seeds)" if style.captions else label
            ax.plot(rounds, mid, color=color[label], linewidth=style.curve_width, label=name)
            ax.fill_between(rounds, lo, hi, color=color[label], alpha=style.band_alpha, linewidth=0)
        if key.endswith("true_utility") and optimum is not None:
            ax.axhline(optimum, color="k", linestyle=":", linewidth=1, label="optimum U(y*)")
        name = key.removeprefix("theta_").replace("_", " ")
        ax.set_xlabel("round")
        ax.set_ylabel(name)
        if style.captions:
            ax.set_title(name + " over rounds", fontsize=10)
        ax.grid(alpha=0.3)
    if style.captions:
        handles, names = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, names, loc="center right", fontsize=8, frameon=False)
        fig.suptitle(title + "\nline: median over seeds; band: interquartile range (25th-75th percentile)", fontsize=10)
        fig.tight_layout(rect=(0, 0, 1 - legend_width / width, 1))
    else:
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
    fig.savefig(path, dpi=style.dpi)
    plt.close(fig)
    return Path(path)


def plot_phase_portrait(
    runs: dict[str, dict[str, np.ndarray]],
    oracle,
    signal_dims: int,
    path: Path,
    title: str = "",
    style: FigureStyle | None = None,
) -> Path:
    """Signal magnitude against noise magnitude over the contours of the best true utility at
    those magnitudes, with each learner's median trajectory over seeds (start: circle, end: star)."""
    from fpo_envs.render import best_utility

    style = style or FigureStyle()
    plt = _pyplot()
    color = style.colors_for(list(runs))
    s_all = np.concatenate([np.asarray(h["signal_norm"]).ravel() for h in runs.values()])
    n_all = np.concatenate([np.asarray(h["noise_norm"]).ravel() for h in runs.values()])
    s_star = float(np.linalg.norm(oracle.ideal[:signal_dims]))
    s = np.linspace(0, max(1.5 * s_star, 1.1 * s_all.max()), 200)
    n = np.linspace(0, max(1.0, 1.1 * n_all.max()), 200)
    fig, ax = plt.subplots(figsize=style.portrait_size)
    contour = ax.contourf(s, n, best_utility(oracle, signal_dims, s[None, :], n[:, None]), levels=20, cmap=style.background)
    fig.colorbar(contour, ax=ax, label="best true utility at these magnitudes")
    for label, history in runs.items():
        sig, noise = np.median(history["signal_norm"], 1), np.median(history["noise_norm"], 1)
        ax.plot(sig, noise, linewidth=style.path_width, color=color[label], label=label)
        ax.plot(sig[0], noise[0], "o", color=color[label])
        ax.plot(sig[-1], noise[-1], "*", markersize=style.star_size, color=color[label], markeredgecolor="k")
    ax.set_xlabel("signal magnitude ||y_signal||")
    ax.set_ylabel("noise magnitude ||y_noise||")
    if style.captions:
        ax.set_title(title + "\nmedian trajectory over seeds (circle: start, star: end)", fontsize=10)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.25, 1.0), frameon=False)
    else:
        ax.set_title(title)
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=style.dpi)
    plt.close(fig)
    return Path(path)


def plot_pca_portrait(runs: dict[str, dict[str, np.ndarray]], oracle, path: Path, title: str = "", key: str = "theta") -> Path:
    """The policy's mean trajectories projected on their first two principal components,
    over the true utility on that plane (``y = center + a pc1 + b pc2``).

    Each seed's trajectory is a thin line; the median over seeds a thick one (start:
    circle, end: star). The ideal ``y*`` is projected as a white cross. Directions off
    the plane are not shown, so the background is ``U`` on the plane, not a bound.
    """
    plt = _pyplot()
    trajectories = {label: np.asarray(h[key], dtype=np.float64) for label, h in runs.items()}  # (rounds, seeds, d)
    stacked = np.concatenate([t.reshape(-1, t.shape[-1]) for t in trajectories.values()] + [oracle.ideal[None, :]])
    center = stacked.mean(0)
    _, _, vt = np.linalg.svd(stacked - center, full_matrices=False)
    basis = vt[:2]  # (2, d)
    project = lambda y: (y - center) @ basis.T  # noqa: E731
    points = project(stacked)
    lo, hi = points.min(0), points.max(0)
    pad = 0.1 * (hi - lo) + 1e-9
    a = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 200)
    b = np.linspace(lo[1] - pad[1], hi[1] + pad[1], 200)
    plane = center + a[None, :, None] * basis[0] + b[:, None, None] * basis[1]
    fig, ax = plt.subplots(figsize=(6.5, 5))
    contour = ax.contourf(a, b, oracle.utility(plane), levels=20, cmap="viridis")
    fig.colorbar(contour, ax=ax, label="true utility U on the plane")
    for label, traj in trajectories.items():
        proj = project(traj)  # (rounds, seeds, 2)
        median = np.median(proj, axis=1)
        (line,) = ax.plot(median[:, 0], median[:, 1], linewidth=2.5, label=label)
        for s in range(proj.shape[1]):
            ax.plot(proj[:, s, 0], proj[:, s, 1], linewidth=0.6, alpha=0.3, color=line.get_color())
        ax.plot(*median[0], "o", color=line.get_color())
        ax.plot(*median[-1], "*", markersize=14, color=line.get_color(), markeredgecolor="k")
    ax.plot(*project(oracle.ideal), "x", color="white", markersize=12, markeredgewidth=3, label="ideal y*")
    return _save(fig, ax, path, "principal component 1", "principal component 2", title, "best")


def _save(fig, ax, path: Path, xlabel: str, ylabel: str, title: str, legend_loc: str) -> Path:
    plt = _pyplot()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc=legend_loc)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
