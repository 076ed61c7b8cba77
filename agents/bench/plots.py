"""The benchmark's figures (matplotlib): interval estimates, curves, phase portraits,
performance profiles, and the token game's over-optimisation figure. Every figure has a
title, labelled axes and a legend placed off the data, and says what its lines and bands are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agents.tools import report
from agents.tools.report import _pyplot as pyplot

COLORS = ("#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#56b4e9", "#949494", "#ece133", "#fbafe4")
"""The learners' colours in order (seaborn's colour-blind palette)."""

STYLE = report.FigureStyle(
    colors=COLORS,
    captions=True,
    panel_width=5.2,
    legend_width=3.2,
    curve_width=1.8,
    band_alpha=0.2,
    portrait_size=(8.5, 5.0),
    background="Greys",
    path_width=2.2,
    star_size=15.0,
    dpi=110,
)
"""The benchmark's look of the curves and phase portraits (module docstring)."""


def colors_for(labels: list[str]) -> dict[str, str]:
    """Each learner's colour from :data:`COLORS`, in order, one colour per label across figures."""
    return STYLE.colors_for(labels)


def plot_interval_estimates(tables: dict[str, list[dict]], path: Path, title: str) -> Path:
    """Per game (and across games): IQM of the normalised final true utility and the collapse
    rate, each with its stratified-bootstrap 95% confidence interval."""
    plt = pyplot()
    games = list(tables)
    labels = list(dict.fromkeys(row["learner"] for rows in tables.values() for row in rows))
    color = colors_for(labels)  # one colour per learner across the games
    # Each game's panel lists only the learners that ran on it, in the suite's order.
    shown = {game: [label for label in labels if label in {row["learner"] for row in tables[game]}] for game in games}
    heights = [0.35 * len(shown[game]) + 0.9 for game in games]
    fig, axes = plt.subplots(
        len(games),
        2,
        figsize=(10, 0.8 + sum(heights)),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
        layout="constrained",  # keeps the two-line title clear of the panels' titles
    )
    for r, game in enumerate(games):
        rows = {row["learner"]: row for row in tables[game]}
        game_labels = shown[game]
        for c, (metric, xlabel) in enumerate([("iqm", "IQM of final U / U(y*)"), ("collapse_rate", "collapse rate")]):
            ax = axes[r][c]
            for y, label in enumerate(reversed(game_labels)):
                row = rows[label]
                ax.errorbar(
                    row[metric],
                    y,
                    xerr=[[row[metric] - row[f"{metric}_low"]], [row[f"{metric}_high"] - row[metric]]],
                    fmt="o",
                    color=color[label],
                    capsize=4,
                    linewidth=2,
                )
            ax.set_yticks(range(len(game_labels)))
            ax.set_yticklabels(list(reversed(game_labels)) if c == 0 else [])
            ax.set_ylim(-0.6, len(game_labels) - 0.4)
            ax.set_xlim(-0.03, 1.03)
            ax.set_xlabel(xlabel)
            ax.grid(axis="x", alpha=0.3)
            ax.set_title(f"{game}: {xlabel}", fontsize=10)
    fig.suptitle(title + "\npoint: estimate over seeds; bar: stratified-bootstrap 95% CI", fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_curves(
    runs: dict[str, dict[str, np.ndarray]], keys: tuple[str, ...], path: Path, title: str, optimum: float | None = None
) -> Path:
    """Median over seeds and interquartile band of each ``key`` against rounds, one panel a key;
    ``runs[label][key]`` has shape ``(rounds, seeds)`` (:func:`agents.tools.report.plot_curves`
    in the benchmark's :data:`STYLE`)."""
    return report.plot_curves(runs, keys, path, optimum, title, STYLE)


def plot_phase_portrait(runs: dict[str, dict[str, np.ndarray]], oracle: Any, signal_dims: int, path: Path, title: str) -> Path:
    """Signal magnitude against noise magnitude over the best true utility at those magnitudes,
    with each learner's median trajectory over seeds (circle: start, star: end)
    (:func:`agents.tools.report.plot_phase_portrait` in the benchmark's :data:`STYLE`)."""
    return report.plot_phase_portrait(runs, oracle, signal_dims, path, title, STYLE)


def plot_pca_portrait(runs: dict[str, np.ndarray], oracle: Any, path: Path, title: str, seeds_shown: int = 6) -> Path:
    """The policy means' trajectories on their first two principal components, over the
    true utility on that plane: one panel per learner (median over seeds thick, a few
    seeds thin), so the learners do not hide each other. ``runs[label]``: ``(rounds, seeds, d)``."""
    plt = pyplot()
    color = colors_for(list(runs))
    thin = {label: np.asarray(t[:: max(1, len(t) // 400)], dtype=np.float64) for label, t in runs.items()}
    stacked = np.concatenate([t.reshape(-1, t.shape[-1]) for t in thin.values()] + [oracle.ideal[None, :]])
    center = stacked.mean(0)
    _, _, vt = np.linalg.svd(stacked - center, full_matrices=False)
    basis = vt[:2]
    project = lambda y: (y - center) @ basis.T
    points = project(stacked)
    lo, hi = points.min(0), points.max(0)
    pad = 0.08 * (hi - lo) + 1e-9
    a = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 160)
    b = np.linspace(lo[1] - pad[1], hi[1] + pad[1], 160)
    plane = center + a[None, :, None] * basis[0] + b[:, None, None] * basis[1]
    background = oracle.utility(plane)
    cols = min(len(thin), 3)
    rows = -(-len(thin) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols + 1.2, 4.0 * rows + 0.8), squeeze=False, layout="constrained")
    contour = None
    for ax, (label, traj) in zip(axes.ravel(), thin.items()):
        contour = ax.contourf(a, b, background, levels=20, cmap="Greys")
        proj = project(traj)  # (rounds, seeds, 2)
        for s in range(min(seeds_shown, proj.shape[1])):
            ax.plot(proj[:, s, 0], proj[:, s, 1], linewidth=0.7, alpha=0.6, color=color[label])
        median = np.median(proj, axis=1)
        ax.plot(median[:, 0], median[:, 1], linewidth=2.6, color=color[label])
        ax.plot(*median[0], "o", color=color[label], markeredgecolor="k")
        ax.plot(*median[-1], "*", markersize=15, color=color[label], markeredgecolor="k")
        ax.plot(*project(oracle.ideal), "P", color="gold", markersize=11, markeredgecolor="k")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("principal component 1")
        ax.set_ylabel("principal component 2")
    for ax in axes.ravel()[len(thin) :]:
        ax.axis("off")
    fig.colorbar(contour, ax=axes, label="true utility U on the plane", shrink=0.8)
    fig.suptitle(
        title + f"\nthick: median over seeds; thin: {seeds_shown} seeds; circle: start, star: end; gold cross: ideal y*",
        fontsize=10,
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_performance_profiles(profiles: dict, cis: dict, taus: np.ndarray, path: Path, title: str) -> Path:
    """rliable's performance profiles: the share of runs scoring above each threshold."""
    from rliable import plot_utils

    plt = pyplot()
    color = colors_for(list(profiles))
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    plot_utils.plot_performance_profiles(
        profiles,
        taus,
        performance_profile_cis=cis,
        colors=color,
        ax=ax,
        xlabel="normalised final true utility threshold (final U / U(y*))",
        ylabel="fraction of runs above the threshold",
    )
    ax.legend(
        [plt.Line2D([0], [0], color=color[k], linewidth=2) for k in profiles],
        list(profiles),
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        frameon=False,
    )
    ax.set_title(title + "\nline: estimate; band: 95% bootstrap CI", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def median_band(values: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(low, median, high)`` over the seeds (axis 1) of ``values`` ``(rounds, seeds)``: the
    median and its distribution-free ``confidence`` interval from order statistics (the
    ``j``-th and ``(n + 1 - j)``-th smallest of ``n`` seeds, ``j`` from the Binomial(n, 1/2)
    quantile; the lowest and highest seed where ``n`` is too small for ``confidence``)."""
    from scipy import stats as scipy_stats  # rliable's dependency

    values = np.sort(np.asarray(values, dtype=np.float64), axis=1)
    n = values.shape[1]
    j = max(int(scipy_stats.binom.ppf((1 - confidence) / 2, n, 0.5)), 1)  # 1-based rank of the lower bound
    return values[:, j - 1], np.median(values, axis=1), values[:, n - j]


TOKEN_KEYS = ("true_utility", "proxy_reward", "rm_margin_to_optimum", "kl_to_base")
"""The histories :func:`plot_token_game` draws (the token game's info and its learners' ``kl_to_base``)."""


def plot_token_game(
    runs: dict[str, dict[str, np.ndarray]],
    path: Path,
    title: str,
    optimum: float | None = None,
    retrain_every: int = 1,
    focus: str = "rlhf",
) -> Path:
    """The token game's over-optimisation figure, every learner of ``runs`` (``runs[label][key]``
    of shape ``(rounds, seeds)`` for each of :data:`TOKEN_KEYS`), each line the median over
    seeds with the 95% confidence band of the median (:func:`median_band`):

    - top row, against rounds: the true utility ``U`` (with ``U(y*)``), the RM's score of the
      output (the proxy) and the RM's margin of the output over the optimum (above zero the RM
      prefers the output to ``y*``);
    - bottom row, against ``sqrt(KL(pi || pi_0))`` (the policy's distance from its start):
      ``U``, the proxy, and both for the ``focus`` learner alone (the over-optimisation curve;
      with ``retrain_every = m > 1`` the RM is fixed for ``m`` rounds at a time, and within
      each such iteration the proxy climbs while ``U`` falls; dots mark each iteration's
      first round).
    """
    plt = pyplot()
    labels = [label for label, h in runs.items() if all(k in h for k in TOKEN_KEYS)]
    if not labels:
        raise ValueError(f"plot_token_game needs the histories {TOKEN_KEYS} of at least one learner")
    color = colors_for(list(runs))
    focus = focus if focus in labels else labels[0]
    fonts = {"font.size": 11.5, "axes.titlesize": 12.5, "axes.labelsize": 12, "legend.fontsize": 11.5}
    with plt.rc_context(fonts):
        fig, axes = plt.subplots(2, 3, figsize=(15, 9.2))
        top = (
            ("true_utility", "true utility U"),
            ("proxy_reward", "proxy: RM score r of the output"),
            ("rm_margin_to_optimum", "RM margin r(output) - r(y*)"),
        )
        short = {"true_utility": "true utility U", "proxy_reward": "proxy r", "rm_margin_to_optimum": "RM margin over y*"}
        distance = r"distance from the start $\sqrt{\mathrm{KL}(\pi\,\|\,\pi_0)}$, median"
        for ax, (key, name) in zip(axes[0], top):
            for label in labels:
                lo, mid, hi = median_band(runs[label][key])
                rounds = np.arange(1, len(mid) + 1)
                ax.plot(rounds, mid, color=color[label], linewidth=1.6, label=f"{label} ({runs[label][key].shape[1]} seeds)")
                ax.fill_between(rounds, lo, hi, color=color[label], alpha=0.2, linewidth=0)
            ax.set_xlabel("round")
            ax.set_ylabel(name)
            ax.set_title(f"{short[key]} by round")
            ax.grid(alpha=0.3)
        if optimum is not None:
            axes[0][0].axhline(optimum, color="k", linestyle=":", linewidth=1.2, label="optimum U(y*)")
        axes[0][2].axhline(0.0, color="k", linestyle="--", linewidth=1.0, label="margin 0: the RM rates output and y* alike")
        sqrt_kl = {label: np.median(np.sqrt(np.maximum(runs[label]["kl_to_base"], 0.0)), axis=1) for label in labels}
        for ax, (key, name) in zip(axes[1][:2], top[:2]):
            for label in labels:
                lo, mid, hi = median_band(runs[label][key])
                ax.plot(sqrt_kl[label], mid, color=color[label], linewidth=1.6)
                ax.fill_between(sqrt_kl[label], lo, hi, color=color[label], alpha=0.2, linewidth=0)
            ax.set_xlabel(distance)
            ax.set_ylabel(name)
            ax.set_title(f"{short[key]} against the distance from the start")
            ax.grid(alpha=0.3)
        if optimum is not None:
            axes[1][0].axhline(optimum, color="k", linestyle=":", linewidth=1.2)
        ax = axes[1][2]
        marks = list(range(0, len(sqrt_kl[focus]), retrain_every)) if retrain_every > 1 else None
        dots = {"marker": "o", "markevery": marks, "markersize": 6, "markeredgecolor": "k"} if marks else {}
        for key, name, style in (("true_utility", "true utility U", "-"), ("proxy_reward", "proxy r", "--")):
            lo, mid, hi = median_band(runs[focus][key])
            ax.plot(sqrt_kl[focus], mid, style, color=color[focus], linewidth=1.8, label=f"{focus}: {name}", **dots)
            ax.fill_between(sqrt_kl[focus], lo, hi, color=color[focus], alpha=0.2, linewidth=0)
        if marks:
            ax.plot(
                [],
                [],
                "o",
                color="w",
                markeredgecolor="k",
                markersize=6,
                label=f"first round on a new RM (every {retrain_every})",
            )
        ax.set_xlabel(distance)
        ax.set_ylabel("U (solid), proxy r (dashed)")
        ax.set_title(f"{focus}: U and proxy against the distance")
        ax.legend(loc="center right", frameon=False)
        ax.grid(alpha=0.3)
        handles, names = [], []
        for a in (axes[0][0], axes[0][2]):
            for handle, name in zip(*a.get_legend_handles_labels()):
                if name not in names:
                    handles.append(handle)
                    names.append(name)
        fig.legend(handles, names, loc="lower center", ncol=min(len(names), 4), frameon=False)
        fig.suptitle(title + "\nline: median over seeds; band: 95% confidence interval of the median", fontsize=13)
        fig.tight_layout(rect=(0, 0.04 * (1 + (len(names) - 1) // 4), 1, 1))
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return Path(path)
