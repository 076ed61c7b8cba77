"""A dependency-free phase-portrait renderer (numpy only), fast enough for ``RecordVideo``."""

from __future__ import annotations

import numpy as np

_SIZE = 320
# A perceptually ordered ramp (dark blue -> teal -> yellow), as in viridis.
_RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)


def _colormap(x: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to RGB along the ramp, shape ``x.shape + (3,)``."""
    pos = np.clip(x, 0.0, 1.0) * (len(_RAMP) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_RAMP) - 2)
    frac = (pos - lo)[..., None]
    return _RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac


def best_utility(oracle, signal_dims: int, s: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The highest true utility of an output with signal magnitude ``s`` and noise magnitude ``n``.

    For a Gaussian bump that is ``U`` with the signal part aligned with the ideal's:
    ``peak * exp(-width * ((s - ||y*_s||)^2 + (n - ||y*_n||)^2))``; broadcasts ``s`` and ``n``.
    """
    s_star = float(np.linalg.norm(oracle.ideal[:signal_dims]))
    n_star = float(np.linalg.norm(oracle.ideal[signal_dims:]))
    return oracle.peak * np.exp(-oracle.width * ((s - s_star) ** 2 + (n - n_star) ** 2))


def phase_portrait(oracle, signal_dims: int, trajectory: list[tuple[float, float]], size: int = _SIZE) -> np.ndarray:
    """Render signal magnitude (x) against noise magnitude (y) as an RGB frame.

    The background is :func:`best_utility` at each pair of magnitudes, drawn with contour
    lines at every tenth of the peak. The trajectory so
    far is a white polyline ending in a red dot.

    Args:
        oracle: has ``ideal``, ``peak`` and ``width`` (a Gaussian bump).
        signal_dims: how many leading coordinates are signal.
        trajectory: ``(signal_norm, noise_norm)`` per round so far.
        size: width and height of the frame in pixels.

    Returns:
        ``uint8`` array of shape ``(size, size, 3)``.
    """
    s_star = float(np.linalg.norm(oracle.ideal[:signal_dims]))
    n_star = float(np.linalg.norm(oracle.ideal[signal_dims:]))
    points = np.asarray(trajectory, dtype=np.float64).reshape(-1, 2)
    points = points[np.isfinite(points).all(1)]
    s_max = max(2.0 * s_star, 1.0, 1.1 * points[:, 0].max(initial=0.0))
    n_max = max(2.0 * max(n_star, 1.0), 1.1 * points[:, 1].max(initial=0.0))
    s = np.linspace(0.0, s_max, size)
    n = np.linspace(n_max, 0.0, size)  # row 0 is the top of the image
    u = best_utility(oracle, signal_dims, s[None, :], n[:, None]) / oracle.peak
    frame = _colormap(u)
    band = np.floor(u * 10)
    edge = np.zeros_like(u, dtype=bool)
    edge[:, 1:] |= band[:, 1:] != band[:, :-1]
    edge[1:, :] |= band[1:, :] != band[:-1, :]
    frame[edge] *= 0.55
    if len(points):
        _polyline(frame, points[:, 0] / s_max * (size - 1), (1.0 - points[:, 1] / n_max) * (size - 1))
    return frame.round().astype(np.uint8)


def _dots(frame: np.ndarray, xs: np.ndarray, ys: np.ndarray, radius: int, color: tuple[int, int, int]) -> None:
    h, w = frame.shape[:2]
    for dx in range(-radius, radius + 1):
        for dy in range(-radius, radius + 1):
            if dx * dx + dy * dy > radius * radius:
                continue
            cx = np.clip(np.round(xs).astype(int) + dx, 0, w - 1)
            cy = np.clip(np.round(ys).astype(int) + dy, 0, h - 1)
            frame[cy, cx] = color


def trajectory_frame(points: list[tuple[float, float]], size: int = _SIZE) -> np.ndarray:
    """A plain frame of a 2-D trajectory (x right, y up) on a grid, autoscaled to the points,
    for games without a closed-form utility landscape. Grid lines mark the zero axes."""
    frame = np.full((size, size, 3), 24.0)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    points = points[np.isfinite(points).all(1)]
    lo = np.minimum(points.min(0, initial=0.0), 0.0) if len(points) else np.zeros(2)
    hi = np.maximum(points.max(0, initial=1.0), lo + 1e-9) if len(points) else np.ones(2)
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    to_px = lambda p: np.stack([(p[:, 0] - lo[0]) / (hi[0] - lo[0]), 1 - (p[:, 1] - lo[1]) / (hi[1] - lo[1])], 1) * (size - 1)  # noqa: E731
    zero = to_px(np.zeros((1, 2)))[0].round().astype(int).clip(0, size - 1)
    frame[:, zero[0]] = frame[zero[1], :] = 90.0
    if len(points):
        px = to_px(points)
        _polyline(frame, px[:, 0], px[:, 1])
    return frame.round().astype(np.uint8)


def _polyline(frame: np.ndarray, px: np.ndarray, py: np.ndarray) -> None:
    """White segments through the points, a red dot on the last."""
    if len(px) > 1:
        # Sample each segment densely enough to leave no gaps between pixels.
        steps = int(np.ceil(np.hypot(np.diff(px), np.diff(py)).max())) + 2
        t = np.linspace(0.0, 1.0, steps)[None, :]
        xs = (px[:-1, None] * (1 - t) + px[1:, None] * t).ravel()
        ys = (py[:-1, None] * (1 - t) + py[1:, None] * t).ravel()
    else:
        xs, ys = px, py
    _dots(frame, xs, ys, 1, (255, 255, 255))
    _dots(frame, px[-1:], py[-1:], 4, (230, 30, 30))
