"""Labelled ``rgb_array`` frames of the games, drawn with matplotlib (``pip install "fpo-envs[plot]"``).

Four kinds of frame, each a row of one or more panels (one per learner) that share their
axes, so an animation can put learners side by side:

- :class:`PhasePortrait` (linear game): signal magnitude against noise magnitude over the
  best true utility at those magnitudes, with each learner's trajectory so far.
- :class:`BlindSpotMap` (neural game): the RM's error ``r - U`` on the plane the policy
  moves in, the true utility's contours, and the policy's recent samples: where the policy
  went, the RM is wrong, and the RM being wrong is why it went there.
- :class:`TrajectoryPlot` (text game): response length against the quality gap to the
  reference answer.
- :class:`TokenCreditPlot` (token game): per token, the RM's credit beside its true value.

Each renderer builds its figure once and afterwards only updates the data of its artists,
so a frame costs a few tens of milliseconds (``scripts/benchmark.py --only render`` measures
frames per second).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

DPI = 100
"""Pixels per inch of every frame's figure (its size in inches is set per frame layout)."""
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


def _check_oracle(oracle) -> None:
    if not oracle.peak > 0:
        raise ValueError(f"a frame draws U's contours as shares of utility_peak, which must be positive; got {oracle.peak}")


def _grown(limit: float, needed: float) -> float:
    """``limit`` times 1.5 until it covers ``needed``: axes that grow in steps, not every
    frame, and depend only on the data (a vector env's copy is drawn as its single env)."""
    limit = max(limit, 1e-9)  # a positive start, so the loop ends
    while needed > limit:
        limit *= 1.5
    return limit


class _Frame:
    """A figure of ``len(labels)`` panels side by side, each over a strip of ``U`` and the
    proxy by round, drawn to an RGB array. Sizes are in inches, so frames of any number of
    panels share one layout."""

    # Heights from the bottom: legend, strip's x label, strip, main panel's x label, main panel, header.
    _BANDS = (0.38, 0.42, 0.8, 0.55, 2.8, 0.62)

    def __init__(self, labels: Sequence[str], panel_width: float, colorbar: bool, series_label: str = "value"):
        _, Figure, FigureCanvasAgg = _matplotlib()
        self.labels = list(labels)
        n = len(self.labels)
        left, right = 0.72, (0.95 if colorbar else 0.15)
        # One panel is too narrow for the legend in one row: it gets three.
        self.legend_columns = 3 if n == 1 else None
        bands = (0.62,) + self._BANDS[1:] if n == 1 else self._BANDS
        width, height = left + n * panel_width + right, sum(bands)
        self.fig = Figure(figsize=(width, height), dpi=DPI)
        self.canvas = FigureCanvasAgg(self.fig)
        legend, strip_label, strip, main_label, main, _ = bands
        rect = lambda x, y, w, h: (x / width, y / height, w / width, h / height)  # noqa: E731
        strip_y, main_y = legend + strip_label, legend + strip_label + strip + main_label
        self.axes, self.series_axes = [], []
        for i in range(n):
            x = left + i * panel_width
            share = {"sharex": self.axes[0], "sharey": self.axes[0]} if i else {}
            self.axes.append(self.fig.add_axes(rect(x, main_y, panel_width - 0.3, main), **share))
            if i:
                self.axes[-1].tick_params(labelleft=False)
            share = {"sharex": self.series_axes[0], "sharey": self.series_axes[0]} if i else {}
            self.series_axes.append(self.fig.add_axes(rect(x, strip_y, panel_width - 0.3, strip), **share))
        self.cax = self.fig.add_axes(rect(left + n * panel_width - 0.18, main_y, 0.14, main)) if colorbar else None
        self.header = self.fig.suptitle("", fontsize=11, y=1 - 0.12 / height)
        self.series_lines = []
        for i, ax in enumerate(self.series_axes):
            (u,) = ax.plot([], [], color="black", lw=1.4, label="true utility U")
            (proxy,) = ax.plot([], [], color="#e07b00", lw=1.2, ls="--", label="proxy (what the RM rewards)")
            self.series_lines.append((u, proxy))
            ax.set_xlabel("round", labelpad=1)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
            if i == 0:
                ax.set_ylabel(series_label, fontsize=9)
            else:
                ax.tick_params(labelleft=False)
        self.series_limits = (0.0, 10.0, -1.0, 1.0)

    def _set_series(self, series: Sequence[tuple[np.ndarray, np.ndarray]], horizon: int | None, floor: float) -> None:
        """Each panel's ``(U, proxy)`` per round so far; the x axis spans ``horizon`` rounds
        (or grows in steps), the y axis grows to cover the values (at least ``[0, floor]``)."""
        values = [np.asarray(v, dtype=np.float64) for pair in series for v in pair]
        finite = np.concatenate([v[np.isfinite(v)] for v in values] + [np.zeros(1)])
        rounds = max(len(pair[0]) for pair in series)
        x1 = float(horizon) if horizon else _grown(10.0, rounds)
        y0 = -_grown(0.05 * floor, -finite.min() * 1.05)
        y1 = _grown(floor, finite.max() * 1.05)
        if (0.0, x1, y0, y1) != self.series_limits:
            self.series_limits = (0.0, x1, y0, y1)
            self.series_axes[0].set_xlim(0.0, x1)
            self.series_axes[0].set_ylim(y0, y1)
        for (u, proxy), (line_u, line_proxy) in zip(series, self.series_lines):
            t = np.arange(1, len(u) + 1)
            line_u.set_data(t, u)
            line_proxy.set_data(t, proxy)

    def _legend(self) -> None:
        """One legend for the frame, at the bottom, where it hides no data."""
        handles, labels = self.axes[0].get_legend_handles_labels()
        more, more_labels = self.series_axes[0].get_legend_handles_labels()
        self.fig.legend(
            handles + more,
            labels + more_labels,
            loc="lower center",
            ncol=self.legend_columns or len(labels + more_labels),
            fontsize=7.5,
            facecolor="0.78",
            framealpha=1.0,
            borderaxespad=0.2,
            handlelength=1.6,
            columnspacing=1.0,
        )

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


def _last(values: np.ndarray) -> float:
    return float(values[-1]) if len(values) else float("nan")


@dataclass
class PortraitPanel:
    """One learner's episode so far in a :class:`PhasePortrait` frame.

    Attributes:
        trajectory: ``(rounds, 2)``: signal and noise magnitude of each round's output.
        utilities, proxies: ``(rounds,)``: each round's true utility ``U`` and proxy reward.
    """

    trajectory: np.ndarray
    utilities: np.ndarray
    proxies: np.ndarray


class PhasePortrait(_Frame):
    """Phase-portrait frames of a vector game: one panel per learner, shared axes.

    Args:
        oracle: the game's oracle (``ideal``, ``peak``, ``width``).
        signal_dims: how many leading coordinates are signal.
        labels: the panels' titles (one per learner).
        limits: ``(signal_max, noise_max)`` fixed for every frame (an animation gives the
            whole run's); ``None``: the axes grow with the trajectories.
        title: the frame's header (the round counter is added to it).
        horizon: the rounds the strip under each panel spans (``None``: it grows).
    """

    def __init__(
        self, oracle, signal_dims: int, labels: Sequence[str] = ("",), limits=None, title: str = "", horizon: int | None = None
    ):
        _check_oracle(oracle)
        super().__init__(labels, 3.9, colorbar=True, series_label="U, proxy")
        self.oracle, self.signal_dims, self.title, self.horizon = oracle, signal_dims, title, horizon
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
            ax.plot([], [], color="black", lw=0.6, label="U = 10%, 30%, ... 90% of its peak")
            ax.plot([0], [0], marker="o", ms=6, color="#cccccc", mec="black", ls="", zorder=4, label="start")
            (line,) = ax.plot([], [], color=_COLORS[0], lw=1.6, label="trajectory")
            (dot,) = ax.plot([], [], marker="o", ms=8, color="#e61e1e", mec="white", ls="", label="this round")
            self.lines.append(line)
            self.dots.append(dot)
            self.boxes.append(self._info_box(ax))
            ax.set_title(label, fontsize=11)
            ax.set_xlabel("signal magnitude ||y_signal||")
            if i == 0:
                ax.set_ylabel("noise magnitude ||y_noise||")
        self._legend()
        bar = self.fig.colorbar(self.image[0], cax=self.cax)
        bar.set_label("best true utility U at these magnitudes")
        self.base_limits = self.limits
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
            grown = (_grown(self.base_limits[0], top[0]), _grown(self.base_limits[1], top[1]))
            if grown != self.limits:
                self._set_limits(grown)
        for p, panel, line, dot, box in zip(points, panels, self.lines, self.dots, self.boxes):
            line.set_data(np.r_[0.0, p[:, 0]], np.r_[0.0, p[:, 1]])
            dot.set_data(p[-1:, 0], p[-1:, 1])
            box.set_text(f"true U   {_last(panel.utilities):6.2f}\nproxy    {_last(panel.proxies):6.2f}")
        self._set_series([(p.utilities, p.proxies) for p in panels], self.horizon, 1.1 * self.oracle.peak)
        self.header.set_text(f"{self.title}  round {round_index}".strip())
        return self.to_array()


@dataclass
class BlindSpotPanel:
    """One learner's state in a :class:`BlindSpotMap` frame.

    Attributes:
        reward: the RM's score of outputs ``(n, d) -> (n,)`` (numpy in, numpy out).
        samples: ``(k, d)``: the policy's recent samples (drawn as dots).
        means: ``(rounds, d)``: each round's mean output so far (its recent part is drawn as the path).
        utilities, proxies: ``(rounds,)``: ``U`` and the proxy of each round so far.
        buffer_error: the RM's mean ``|r - U|`` over its buffer, shown in the panel's box.
        noise_direction: ``(d,)``: the direction (its noise part) along which the map is sliced;
            ``None``: the noise part of the samples' mean (the first noise axis if that is zero).
    """

    reward: Callable[[np.ndarray], np.ndarray]
    samples: np.ndarray
    means: np.ndarray
    utilities: np.ndarray
    proxies: np.ndarray
    buffer_error: float = float("nan")
    noise_direction: np.ndarray | None = None


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


def plane_coordinates(y: np.ndarray, e1: np.ndarray, signal_dims: int) -> np.ndarray:
    """Outputs ``(n, d)`` as ``(<y, e1>, ||y_noise||)``: the component along the ideal's signal
    direction and the noise magnitude. An output whose noise points along the plane's ``e2``
    sits exactly where the map evaluates the RM; any other keeps its true noise magnitude."""
    y = np.asarray(y, dtype=np.float64).reshape(-1, len(e1))
    return np.stack([y @ e1, np.linalg.norm(y[:, signal_dims:], axis=1)], 1)


class BlindSpotMap(_Frame):
    """Frames of the neural game's blind spot: the RM's error where the policy is.

    x: an output's component along the ideal's signal direction; y: its noise magnitude. The
    colour is the RM's error ``r - U`` on the plane through the origin spanned by the ideal's
    signal direction and the policy's current noise direction (red: the RM overrates, blue:
    it underrates; clipped at ``±error_scale``); the black contours are the true utility
    ``U`` on that plane. Dots: the samples the RM is trained on (its buffer); the white path:
    the policy's recent mean outputs, both at their signal component along the ideal and
    their noise magnitude, so a sample whose noise points along the plane lies on it, and
    every point keeps its noise magnitude (a signal part off the ideal's direction, possible
    with several signal coordinates, is not drawn). The ideal must have no noise part, as the
    vector games' oracles do.

    Args:
        oracle, signal_dims: the game's oracle and signal coordinates.
        labels: panel titles (one per learner).
        limits: ``(x_min, x_max, noise_max)``; ``None``: grow with the samples.
        error_scale: the colour scale's bound (default half the utility's peak).
        grid: grid points per axis at which the RM is evaluated.
        path_rounds: how many recent rounds of the mean the path shows.
        horizon: the rounds the strip under each panel spans (``None``: it grows).
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
        path_rounds: int = 400,
        horizon: int | None = None,
    ):
        _check_oracle(oracle)
        if signal_dims >= len(oracle.ideal):
            raise ValueError(f"the blind-spot map plots noise magnitude: it needs signal_dims < dim, got {signal_dims}")
        if np.any(oracle.ideal[signal_dims:] != 0):
            raise ValueError("the blind-spot map assumes an ideal without noise part (as the vector games' oracles are)")
        super().__init__(labels, 3.9, colorbar=True, series_label="U, proxy")
        self.horizon = horizon
        self.oracle, self.signal_dims, self.title, self.grid = oracle, signal_dims, title, grid
        self.path_rounds = path_rounds
        self.s_star = float(np.linalg.norm(oracle.ideal[:signal_dims]))
        scale = float(error_scale if error_scale is not None else 0.5 * oracle.peak)
        self.fixed = limits is not None
        self.limits = tuple(limits) if limits is not None else (-0.5, 2.0 * self.s_star + 0.5, 3.0)
        self.image, self.scatters, self.paths, self.boxes = [], [], [], []
        self.contours: list[Any] = []
        for i, (ax, label) in enumerate(zip(self.axes, self.labels)):
            img = ax.imshow(np.zeros((2, 2)), origin="lower", aspect="auto", cmap="RdBu_r", vmin=-scale, vmax=scale)
            self.image.append(img)
            ax.plot([self.s_star], [0.0], marker="*", ms=13, color="#ffd400", mec="black", ls="", clip_on=False, label="ideal y*")
            ax.plot([], [], color="black", lw=0.7, label="U = 10%, ... 90% of its peak")
            (path,) = ax.plot([], [], color="black", lw=2.0, alpha=0.35)
            (path_top,) = ax.plot([], [], color="white", lw=1.0, label=f"policy mean, last {path_rounds} rounds")
            scatter = ax.scatter(
                [], [], s=16, c="#ffb000", edgecolors="black", linewidths=0.5, zorder=5, label="samples in the RM's buffer"
            )
            self.paths.append((path, path_top))
            self.scatters.append(scatter)
            self.boxes.append(self._info_box(ax))
            ax.set_title(label, fontsize=11)
            ax.set_xlabel("along the ideal's signal direction")
            if i == 0:
                ax.set_ylabel("noise magnitude ||y_noise||")
        self._legend()
        bar = self.fig.colorbar(self.image[0], cax=self.cax)
        bar.set_label("RM error r - U  (red: RM overrates)")
        self.base_limits = self.limits
        self._set_limits(self.limits)

    def _set_limits(self, limits) -> None:
        self.limits = limits
        x0, x1, y1 = limits
        self.xs, self.ys = np.linspace(x0, x1, self.grid), np.linspace(0.0, y1, self.grid)
        self.u = self.oracle.peak * np.exp(-self.oracle.width * ((self.xs[None, :] - self.s_star) ** 2 + self.ys[:, None] ** 2))
        for c in self.contours:
            c.remove()
        self.contours = []
        levels = self.oracle.peak * np.array([0.1, 0.3, 0.5, 0.7, 0.9])
        for ax, img in zip(self.axes, self.image):
            img.set_extent((x0, x1, 0.0, y1))
            self.contours.append(ax.contour(self.xs, self.ys, self.u, levels=levels, colors="black", linewidths=0.7))
            ax.set_xlim(x0, x1)
            ax.set_ylim(0.0, y1)

    def draw(self, panels: Sequence[BlindSpotPanel], round_index: int) -> np.ndarray:
        """The frame of round ``round_index``: ``uint8`` array ``(height, width, 3)``."""
        if len(panels) != len(self.axes):
            raise ValueError(f"this frame has {len(self.axes)} panels, got {len(panels)} states")
        d, s = len(self.oracle.ideal), self.signal_dims
        states = []
        for panel in panels:
            samples = np.asarray(panel.samples, dtype=np.float64).reshape(-1, d)
            means = np.asarray(panel.means, dtype=np.float64).reshape(-1, d)[-self.path_rounds :]
            direction = panel.noise_direction
            if direction is None and len(samples):
                direction = samples.mean(0)
            e1, e2 = plane_basis(self.oracle, s, direction)
            states.append((e1, e2, plane_coordinates(samples, e1, s), plane_coordinates(means, e1, s)))
        if not self.fixed:
            every = np.concatenate([np.concatenate([a, b]) for _, _, a, b in states] + [np.zeros((1, 2))])
            x0, x1, y1 = self.base_limits
            grown = (
                -_grown(-x0, -every[:, 0].min() * 1.1),
                _grown(x1, every[:, 0].max() * 1.1),
                _grown(y1, every[:, 1].max() * 1.1),
            )
            if grown != self.limits:
                self._set_limits(grown)
        gx, gy = np.meshgrid(self.xs, self.ys)
        for panel, (e1, e2, samples, means), img, scatter, (path, top), box in zip(
            panels, states, self.image, self.scatters, self.paths, self.boxes
        ):
            points = gx.reshape(-1, 1) * e1 + gy.reshape(-1, 1) * e2
            r = np.asarray(panel.reward(points), dtype=np.float64).reshape(gx.shape)
            img.set_data(r - np.asarray(self.oracle.utility(points), dtype=np.float64).reshape(gx.shape))
            scatter.set_offsets(samples if len(samples) else np.zeros((0, 2)))
            path.set_data(means[:, 0], means[:, 1])
            top.set_data(means[:, 0], means[:, 1])
            box.set_text(
                f"true U        {_last(panel.utilities):6.2f}\nproxy         {_last(panel.proxies):6.2f}\n"
                f"buffer |r-U|  {panel.buffer_error:6.2f}"
            )
        self._set_series([(p.utilities, p.proxies) for p in panels], self.horizon, 1.1 * self.oracle.peak)
        self.header.set_text(f"{self.title}  round {round_index}".strip())
        return self.to_array()


class TrajectoryPlot(_Frame):
    """Frames of a 2-D trajectory with labelled axes (the text game: response length against
    the quality gap to the reference); the axes grow with the points."""

    def __init__(self, xlabel: str, ylabel: str, labels: Sequence[str] = ("",), title: str = ""):
        super().__init__(labels, 4.2, colorbar=False, series_label="U, RM score")
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
        self._legend()

    def draw(
        self,
        trajectories: Sequence[np.ndarray],
        series: Sequence[tuple[np.ndarray, np.ndarray]],
        texts: Sequence[str],
        round_index: int,
    ) -> np.ndarray:
        """The frame of round ``round_index``: per panel a ``(rounds, 2)`` trajectory, the
        ``(U, score)`` series by round, and its box's text."""
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
        self._set_series(series, None, 1.0)
        self.header.set_text(f"{self.title}  round {round_index}".strip())
        return self.to_array()


class TokenCreditPlot(_Frame):
    """Frames of the token game: per token, the RM's credit ``<w, e_v>`` beside its true value
    (``<grad U, e_v>`` at the round's mean features), the hack tokens shaded; one panel per
    learner, over a strip of ``U`` and the proxy by round. Where the blue bar of a hack stands
    tall and its black bar below zero, the RM pays for what the human does not want.

    Args:
        vocab_size, hack_tokens: the game's ``V`` and its number of hack tokens (the first ones).
        labels: the panels' titles (one per learner); title: the frame's header (the round
            counter is added to it).
        limit: the per-token axis spans ``[-limit, limit]`` in every frame (an animation gives
            the whole run's); ``None``: it grows with the bars.
        horizon: the rounds the strip under each panel spans (``None``: it grows).
        series_top: the strip's top, at least (``None``: 10, growing with the values).
        optimum: the optimum's true utility ``U*``, marked in the strip (``None``: not marked).
    """

    def __init__(
        self,
        vocab_size: int,
        hack_tokens: int,
        labels: Sequence[str] = ("",),
        title: str = "",
        *,
        limit: float | None = None,
        horizon: int | None = None,
        series_top: float | None = None,
        optimum: float | None = None,
    ):
        # Side by side the panels are as wide as the phase portrait's; one alone is wider, for its legend.
        super().__init__(labels, 4.6 if len(labels) == 1 else 3.9, colorbar=False, series_label="U, proxy")
        self.title, self.horizon = title, horizon
        self.fixed = limit is not None
        self.limit = float(limit) if limit is not None else 1.0
        self.series_top = 10.0 if series_top is None else float(series_top)
        x = np.arange(vocab_size)
        self.credit_bars, self.value_bars, self.boxes = [], [], []
        for i, (ax, label) in enumerate(zip(self.axes, self.labels)):
            if hack_tokens:
                ax.axvspan(-0.5, hack_tokens - 0.5, color="#ffd9b3", zorder=0, label="hack tokens")
            ax.axhline(0.0, color="0.4", lw=0.8)
            self.credit_bars.append(ax.bar(x - 0.2, np.zeros(vocab_size), 0.4, color="#1f5fa8", label="RM credit w . e_v"))
            self.value_bars.append(ax.bar(x + 0.2, np.zeros(vocab_size), 0.4, color="0.15", label="true value grad U . e_v"))
            self.boxes.append(self._info_box(ax))
            ax.set_title(label, fontsize=11)
            ax.set_xlabel("token v", labelpad=1)
            ax.set_xticks(x)
            ax.tick_params(labelsize=8)
            ax.set_xlim(-0.6, vocab_size - 0.4)
            if i == 0:
                ax.set_ylabel("credit or value per token")
            ax.grid(alpha=0.3, axis="y")
        self.axes[0].set_ylim(-self.limit, self.limit)
        if optimum is not None:
            for ax in self.series_axes:
                ax.axhline(optimum, color="0.45", lw=0.9, ls=":", label="optimum U*")
        self._legend()

    def draw(
        self,
        credits: Sequence[np.ndarray],
        values: Sequence[np.ndarray],
        series: Sequence[tuple[np.ndarray, np.ndarray]],
        round_index: int,
        hack_shares: Sequence[float] | None = None,
    ) -> np.ndarray:
        """The frame of round ``round_index``: per panel the credit and value per token
        ``(V,)``, the ``(U, proxy)`` series by round, and (optionally) the share of hack
        tokens in the round's sequences, shown in the panel's box."""
        if not len(credits) == len(values) == len(series) == len(self.axes):
            raise ValueError(
                f"this frame has {len(self.axes)} panels, got {len(credits)} credits, {len(values)} values, {len(series)} series"
            )
        shares = [None] * len(self.axes) if hack_shares is None else list(hack_shares)
        every = [np.zeros(1)]
        for credit, value, bars_c, bars_v, box, (u, proxy), share in zip(
            credits, values, self.credit_bars, self.value_bars, self.boxes, series, shares
        ):
            credit, value = np.asarray(credit, dtype=np.float64), np.asarray(value, dtype=np.float64)
            for bar, height in zip(bars_c, credit):
                bar.set_height(height if np.isfinite(height) else 0.0)
            for bar, height in zip(bars_v, value):
                bar.set_height(height if np.isfinite(height) else 0.0)
            text = f"true U {_last(np.asarray(u)):6.2f}\nproxy  {_last(np.asarray(proxy)):6.2f}"
            box.set_text(text + (f"\nhacks  {share:6.0%}" if share is not None else ""))
            every += [np.abs(credit[np.isfinite(credit)]), np.abs(value[np.isfinite(value)])]
        if not self.fixed:
            self.limit = _grown(self.limit, float(np.concatenate(every).max()) * 1.1)
            self.axes[0].set_ylim(-self.limit, self.limit)
        self._set_series(series, self.horizon, self.series_top)
        self.header.set_text(f"{self.title}  round {round_index}".strip())
        return self.to_array()
