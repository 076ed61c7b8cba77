"""Labelled ``rgb_array`` frames of the games, drawn with matplotlib (``pip install "fpo-envs[plot]"``).

Three kinds of frame, each a row of one or more panels (one per learner) that share their
axes, so an animation can put learners side by side:

- :class:`PhasePortrait` (linear game): signal magnitude against noise magnitude over the
  best true utility at those magnitudes, with each learner's trajectory so far.
- :class:`BlindSpotMap` (neural game): the RM's error ``r - U`` on the plane the policy
  moves in, the true utility's contours, and the policy's recent samples: where the policy
  went, the RM is wrong, and the RM being wrong is why it went there.
- :class:`TrajectoryPlot` (text game): response length against the quality gap to the
  reference answer.

Each renderer builds its figure once and afterwards only updates the data of its artists,
so a frame costs a few tens of milliseconds (``scripts/benchmark.py --only render`` measures
frames per second).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

DPI = 100
_COLORS = ("#ffffff", "#ff8c1a", "#7fd4ff", "#ff4fa3")


def best_utility(oracle, signal_dims: int, s: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The highest true utility of an output with signal magnitude ``s`` and noise magnitude ``n``.

    For a Gaussian bump that is ``U`` with the signal part aligned with the ideal's:
    ``peak * exp(-width * ((s - ||y*_s||)^2 + (n - ||y*_n||)^2))``; broadcasts ``s`` and ``n``.
    """
    s_star = float(np.linalg.norm(oracle.ideal[:signal_dims]))
    n_star = float(np.linalg.norm(oracle.ideal[signal_dims:]))
    return oracle.peak * np.exp(-oracle.width * ((s - s_star) ** 2 + (n - n_star) ** 2))


def _matplotlib():
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        from gymnasium.error import DependencyNotInstalled

        raise DependencyNotInstalled('render_mode="rgb_array" draws with matplotlib: pip install "fpo-envs[plot]"') from err
    return matplotlib, Figure, FigureCanvasAgg


def check_matplotlib() -> None:
    """Raise ``DependencyNotInstalled`` (naming the install) unless matplotlib imports."""
    _matplotlib()


def _grown(limit: float, needed: float) -> float:
    """``limit`` doubled until it covers ``needed``: axes that grow in steps, not every frame."""
    while needed > limit:
        limit *= 1.5
    return limit


class _Frame:
    """A figure of ``len(labels)`` panels side by side, drawn to an RGB array."""

    def __init__(self, labels: Sequence[str], panel_size: tuple[float, float], colorbar: bool):
        _, Figure, FigureCanvasAgg = _matplotlib()
        self.labels = list(labels)
        n = len(self.labels)
        width = panel_size[0] * n + (0.9 if colorbar else 0.0)
        self.fig = Figure(figsize=(width, panel_size[1]), dpi=DPI)
        self.canvas = FigureCanvasAgg(self.fig)
        right = 1 - (1.1 / width if colorbar else 0.02)
        self.fig.subplots_adjust(left=0.62 / width, right=right, bottom=0.15, top=0.86, wspace=0.12)
        self.axes = self.fig.subplots(1, n, sharex=True, sharey=True, squeeze=False)[0]
        self.header = self.fig.suptitle("", fontsize=11, y=0.985)

    def to_array(self) -> np.ndarray:
        self.canvas.draw()
        return np.asarray(self.canvas.buffer_rgba())[..., :3].copy()

    def _info_box(self, ax) -> Any:
        return ax.text(
            0.03,
            0.97,
            "",
            transform=ax.transAxes,
            va="top",
            ha="left",
            fontsize=8.5,
            family="monospace",
            color="white",
            bbox={"boxstyle": "round,pad=0.3", "facecolor": "black", "alpha": 0.55, "edgecolor": "none"},
        )


@dataclass
class PortraitPanel:
    """One learner's state in a :class:`PhasePortrait` frame.

    Attributes:
        trajectory: ``(rounds, 2)``: signal and noise magnitude of each round's output.
        true_utility, proxy: this round's ``U`` and proxy reward (``nan`` before the first round).
    """

    trajectory: np.ndarray
    true_utility: float = float("nan")
    proxy: float = float("nan")


class PhasePortrait(_Frame):
    """Phase-portrait frames of a vector game: one panel per learner, shared axes.

    Args:
        oracle: the game's oracle (``ideal``, ``peak``, ``width``).
        signal_dims: how many leading coordinates are signal.
        labels: the panels' titles (one per learner).
        limits: ``(signal_max, noise_max)`` fixed for every frame (an animation gives the
            whole run's); ``None``: the axes grow with the trajectories.
        title: the frame's header (the round counter is added to it).
    """

    def __init__(self, oracle, signal_dims: int, labels: Sequence[str] = ("",), limits=None, title: str = ""):
        super().__init__(labels, (3.9, 3.7), colorbar=True)
        self.oracle, self.signal_dims, self.title = oracle, signal_dims, title
        self.s_star = float(np.linalg.norm(oracle.ideal[:signal_dims]))
        self.n_star = float(np.linalg.norm(oracle.ideal[signal_dims:]))
        self.fixed = limits is not None
        self.limits = (
            tuple(limits) if limits is not None else (max(2.0 * self.s_star, 1.0), max(2.0 * max(self.n_star, 1.0), 1.0))
        )
        self.image = []
        self.contours: list[Any] = []
        self.lines, self.dots, self.boxes = [], [], []
        for i, (ax, label) in enumerate(zip(self.axes, self.labels)):
            img = ax.imshow(np.zeros((2, 2)), origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=oracle.peak)
            self.image.append(img)
            ax.plot([self.s_star], [self.n_star], marker="*", ms=13, color="#ffd400", mec="black", ls="", label="ideal y*")
            (start,) = ax.plot([0], [0], marker="o", ms=5, color="#cccccc", mec="black", ls="", label="start")
            (line,) = ax.plot([], [], color=_COLORS[0], lw=1.6, label="trajectory")
            (dot,) = ax.plot([], [], marker="o", ms=8, color="#e61e1e", mec="white", ls="", label="this round")
            self.lines.append(line)
            self.dots.append(dot)
            self.boxes.append(self._info_box(ax))
            ax.set_title(label, fontsize=11)
            ax.set_xlabel("signal magnitude ||y_signal||")
            if i == 0:
                ax.set_ylabel("noise magnitude ||y_noise||")
        self.axes[-1].legend(loc="lower right", fontsize=7.5, framealpha=0.8)
        bar = self.fig.colorbar(self.image[0], ax=list(self.axes), fraction=0.05, pad=0.02)
        bar.set_label("best true utility U at these magnitudes")
        self._set_limits(self.limits)

    def _set_limits(self, limits) -> None:
        s_max, n_max = self.limits = limits
        s = np.linspace(0.0, s_max, 160)
        n = np.linspace(0.0, n_max, 160)
        u = best_utility(self.oracle, self.signal_dims, s[None, :], n[:, None])
        for c in self.contours:
            c.remove()
        self.contours = []
        levels = self.oracle.peak * np.array([0.1, 0.3, 0.5, 0.7, 0.9])
        for ax, img in zip(self.axes, self.image):
            img.set_data(u)
            img.set_extent((0.0, s_max, 0.0, n_max))
            self.contours.append(ax.contour(s, n, u, levels=levels, colors="black", linewidths=0.6, alpha=0.6))
            ax.set_xlim(0.0, s_max)
            ax.set_ylim(0.0, n_max)

    def draw(self, panels: Sequence[PortraitPanel], round_index: int) -> np.ndarray:
        """The frame of round ``round_index``: ``uint8`` array ``(height, width, 3)``."""
        if len(panels) != len(self.axes):
            raise ValueError(f"this frame has {len(self.axes)} panels, got {len(panels)} states")
        points = [np.asarray(p.trajectory, dtype=np.float64).reshape(-1, 2) for p in panels]
        points = [p[np.isfinite(p).all(1)] for p in points]
        if not self.fixed:
            top = np.max([p.max(0) if len(p) else np.zeros(2) for p in points], axis=0) * 1.08
            grown = (_grown(self.limits[0], top[0]), _grown(self.limits[1], top[1]))
            if grown != self.limits:
                self._set_limits(grown)
        for p, panel, line, dot, box in zip(points, panels, self.lines, self.dots, self.boxes):
            line.set_data(np.r_[0.0, p[:, 0]], np.r_[0.0, p[:, 1]])
            dot.set_data(p[-1:, 0], p[-1:, 1])
            box.set_text(f"true U   {panel.true_utility:6.2f}\nproxy    {panel.proxy:6.2f}")
        self.header.set_text(f"{self.title}  round {round_index}".strip())
        return self.to_array()


@dataclass
class BlindSpotPanel:
    """One learner's state in a :class:`BlindSpotMap` frame.

    Attributes:
        reward: the RM's score of outputs ``(n, d) -> (n,)`` (numpy in, numpy out).
        samples: ``(k, d)``: the policy's recent samples (drawn as dots).
        means: ``(rounds, d)``: each round's mean output so far (drawn as the path).
        noise_direction: ``(d,)``: the plane's second axis (its noise part is used); ``None``:
            the noise part of the samples' mean, or the first noise axis if that is zero.
        true_utility, proxy, buffer_error: numbers shown in the panel's box.
    """

    reward: Callable[[np.ndarray], np.ndarray]
    samples: np.ndarray
    means: np.ndarray
    noise_direction: np.ndarray | None = None
    true_utility: float = float("nan")
    proxy: float = float("nan")
    buffer_error: float = float("nan")
    extra: dict = field(default_factory=dict)


def plane_basis(oracle, signal_dims: int, direction: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal axes of the plane a :class:`BlindSpotMap` draws: ``e1`` along the ideal's
    signal part, ``e2`` along the noise part of ``direction`` (the first noise axis if that
    part is zero). The ideal lies on ``e1``, so ``U`` on the plane is the bump itself."""
    d = len(oracle.ideal)
    e1 = np.zeros(d)
    e1[:signal_dims] = oracle.ideal[:signal_dims]
    norm = np.linalg.norm(e1)
    e1 = e1 / norm if norm > 0 else np.eye(d)[0]
    e2 = np.zeros(d)
    if direction is not None:
        e2[signal_dims:] = np.asarray(direction, dtype=np.float64)[signal_dims:]
    if np.linalg.norm(e2) < 1e-9 and signal_dims < d:
        e2[signal_dims] = 1.0
    e2 = e2 - (e2 @ e1) * e1
    return e1, e2 / np.linalg.norm(e2)


class BlindSpotMap(_Frame):
    """Frames of the neural game's blind spot: the RM's error on the policy's plane.

    Each panel is the plane through the origin spanned by the ideal's signal direction
    (x) and the policy's noise direction (y). Colour: the RM's error ``r - U`` there (red:
    the RM overrates, blue: it underrates; clipped at ``±error_scale``). Black contours: the
    true utility ``U``. Dots: the policy's recent samples projected on the plane; the white
    path: each round's mean output.

    Args:
        oracle, signal_dims: the game's oracle and signal coordinates.
        labels: panel titles (one per learner).
        limits: ``(x_min, x_max, y_min, y_max)`` on the plane; ``None``: grow with the samples.
        error_scale: the colour scale's bound (default half the utility's peak).
        grid: grid points per axis at which the RM is evaluated.
    """

    def __init__(
        self,
        oracle,
        signal_dims: int,
        labels: Sequence[str] = ("",),
        limits=None,
        title: str = "",
        error_scale: float | None = None,
        grid: int = 64,
    ):
        super().__init__(labels, (3.9, 3.7), colorbar=True)
        self.oracle, self.signal_dims, self.title, self.grid = oracle, signal_dims, title, grid
        self.s_star = float(np.linalg.norm(oracle.ideal[:signal_dims]))
        scale = float(error_scale if error_scale is not None else 0.5 * oracle.peak)
        self.fixed = limits is not None
        self.limits = tuple(limits) if limits is not None else (-1.0, 2.0 * self.s_star + 1.0, -1.0, 3.0)
        self.image, self.scatters, self.paths, self.boxes = [], [], [], []
        self.contours: list[Any] = []
        for i, (ax, label) in enumerate(zip(self.axes, self.labels)):
            img = ax.imshow(np.zeros((2, 2)), origin="lower", aspect="auto", cmap="RdBu_r", vmin=-scale, vmax=scale)
            self.image.append(img)
            ax.plot([self.s_star], [0.0], marker="*", ms=13, color="#ffd400", mec="black", ls="", label="ideal y*")
            (path,) = ax.plot([], [], color="black", lw=2.0, alpha=0.35)
            (path_top,) = ax.plot([], [], color="white", lw=0.9, alpha=0.9, label="policy mean, rounds so far")
            scatter = ax.scatter(
                [], [], s=16, c="#ffb000", edgecolors="black", linewidths=0.5, zorder=5, label="samples, last 10 rounds"
            )
            self.paths.append((path, path_top))
            self.scatters.append(scatter)
            self.boxes.append(self._info_box(ax))
            ax.set_title(label, fontsize=11)
            ax.set_xlabel("along the ideal's signal direction")
            if i == 0:
                ax.set_ylabel("along the policy's noise direction")
        self.axes[-1].legend(loc="lower right", fontsize=7.5, framealpha=0.8)
        bar = self.fig.colorbar(self.image[0], ax=list(self.axes), fraction=0.05, pad=0.02)
        bar.set_label("RM error r - U  (red: RM overrates)")
        self._set_limits(self.limits)

    def _set_limits(self, limits) -> None:
        self.limits = limits
        x0, x1, y0, y1 = limits
        self.xs, self.ys = np.linspace(x0, x1, self.grid), np.linspace(y0, y1, self.grid)
        u = self.oracle.peak * np.exp(-self.oracle.width * ((self.xs[None, :] - self.s_star) ** 2 + self.ys[:, None] ** 2))
        self.u = u
        for c in self.contours:
            c.remove()
        self.contours = []
        levels = self.oracle.peak * np.array([0.1, 0.3, 0.5, 0.7, 0.9])
        for ax, img in zip(self.axes, self.image):
            img.set_extent((x0, x1, y0, y1))
            self.contours.append(ax.contour(self.xs, self.ys, u, levels=levels, colors="black", linewidths=0.7))
            ax.set_xlim(x0, x1)
            ax.set_ylim(y0, y1)

    def draw(self, panels: Sequence[BlindSpotPanel], round_index: int) -> np.ndarray:
        """The frame of round ``round_index``: ``uint8`` array ``(height, width, 3)``."""
        if len(panels) != len(self.axes):
            raise ValueError(f"this frame has {len(self.axes)} panels, got {len(panels)} states")
        bases, projected = [], []
        for panel in panels:
            samples = np.asarray(panel.samples, dtype=np.float64).reshape(-1, len(self.oracle.ideal))
            means = np.asarray(panel.means, dtype=np.float64).reshape(-1, len(self.oracle.ideal))
            direction = panel.noise_direction
            if direction is None:
                direction = samples.mean(0) if len(samples) else None
            e1, e2 = plane_basis(self.oracle, self.signal_dims, direction)
            bases.append((e1, e2))
            projected.append((samples @ np.stack([e1, e2], 1), means @ np.stack([e1, e2], 1)))
        if not self.fixed:
            every = np.concatenate([np.concatenate([s, m]) for s, m in projected] + [np.zeros((1, 2))])
            x0, x1, y0, y1 = self.limits
            grown = (
                -_grown(-x0, -every[:, 0].min() * 1.1),
                _grown(x1, every[:, 0].max() * 1.1),
                -_grown(-y0, -every[:, 1].min() * 1.1),
                _grown(y1, every[:, 1].max() * 1.1),
            )
            if grown != self.limits:
                self._set_limits(grown)
        gx, gy = np.meshgrid(self.xs, self.ys)
        for panel, (e1, e2), (samples, means), img, scatter, (path, top), box in zip(
            panels, bases, projected, self.image, self.scatters, self.paths, self.boxes
        ):
            points = gx.reshape(-1, 1) * e1 + gy.reshape(-1, 1) * e2
            r = np.asarray(panel.reward(points), dtype=np.float64).reshape(gx.shape)
            img.set_data(r - self.u)
            scatter.set_offsets(samples if len(samples) else np.zeros((0, 2)))
            path.set_data(means[:, 0], means[:, 1])
            top.set_data(means[:, 0], means[:, 1])
            box.set_text(
                f"true U        {panel.true_utility:6.2f}\nproxy         {panel.proxy:6.2f}\n"
                f"buffer |r-U|  {panel.buffer_error:6.2f}"
            )
        self.header.set_text(f"{self.title}  round {round_index}".strip())
        return self.to_array()


class TrajectoryPlot(_Frame):
    """Frames of a 2-D trajectory with labelled axes (the text game: response length against
    the quality gap to the reference); the axes grow with the points."""

    def __init__(self, xlabel: str, ylabel: str, labels: Sequence[str] = ("",), title: str = ""):
        super().__init__(labels, (4.2, 3.7), colorbar=False)
        self.title = title
        self.lines, self.dots, self.boxes = [], [], []
        for i, (ax, label) in enumerate(zip(self.axes, self.labels)):
            ax.axhline(0.0, color="0.6", lw=0.8, label="as good as the reference")
            (line,) = ax.plot([], [], color="#1f5fa8", lw=1.2, marker=".", ms=4, label="rounds so far")
            (dot,) = ax.plot([], [], marker="o", ms=8, color="#e61e1e", mec="white", ls="", label="this round")
            self.lines.append(line)
            self.dots.append(dot)
            self.boxes.append(self._info_box(ax))
            ax.set_title(label, fontsize=11)
            ax.set_xlabel(xlabel)
            if i == 0:
                ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
        self.axes[-1].legend(loc="lower right", fontsize=7.5, framealpha=0.8)

    def draw(self, trajectories: Sequence[np.ndarray], texts: Sequence[str], round_index: int) -> np.ndarray:
        """The frame of round ``round_index`` for one ``(rounds, 2)`` trajectory and box text per panel."""
        every = []
        for points, text, line, dot, box in zip(trajectories, texts, self.lines, self.dots, self.boxes):
            p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
            p = p[np.isfinite(p).all(1)]
            line.set_data(p[:, 0], p[:, 1])
            dot.set_data(p[-1:, 0], p[-1:, 1])
            box.set_text(text)
            every.append(p)
        every = np.concatenate(every + [np.array([[0.0, -1.0], [1.0, 1.0]])])
        lo, hi = every.min(0), every.max(0)
        pad = 0.08 * (hi - lo) + 1e-9
        for ax in self.axes:
            ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
            ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        self.header.set_text(f"{self.title}  round {round_index}".strip())
        return self.to_array()
