"""The Gaussian-bump oracle, the human's true utility in the vector games."""

from __future__ import annotations

import numpy as np


class GaussianBumpOracle:
    """The human's true utility ``U(y) = peak * exp(-width * ||y - y*||^2)``.

    Args:
        ideal: the human ideal ``y*``, shape ``(d,)``.
        peak: ``U(y*)``.
        width: the bump's curvature.
    """

    def __init__(self, ideal: np.ndarray, peak: float = 10.0, width: float = 0.3):
        self.ideal = np.asarray(ideal, dtype=np.float64)
        self.peak = peak
        self.width = width

    def _ideal_like(self, y):
        if isinstance(y, np.ndarray) or np.isscalar(y):
            return self.ideal
        import torch  # the neural game passes torch tensors, possibly requiring grad

        return torch.as_tensor(self.ideal, dtype=y.dtype, device=y.device)

    def utility(self, y):
        """``U(y)``, shape ``(*B,)``; numpy or torch (differentiable) in, the same out."""
        if isinstance(y, np.ndarray) and y.ndim > 1:  # a batch: the same roundings, in place on new arrays
            z = y - self.ideal
            z *= z
            scaled = z.sum(-1)
            scaled *= -self.width
            np.exp(scaled, out=scaled)
            scaled *= self.peak
            return scaled
        scaled = -self.width * ((y - self._ideal_like(y)) ** 2).sum(-1)
        return self.peak * (np.exp(scaled) if isinstance(scaled, (np.ndarray, float)) else scaled.exp())

    def grad(self, y, utility=None):
        """``grad_y U(y) = -2 width U(y) (y - y*)``, shape ``(*B, d)``; ``utility``: ``U(y)`` if
        the caller has it already (it saves recomputing it)."""
        u = self.utility(y) if utility is None else utility
        return (-2.0 * self.width * u)[..., None] * (y - self._ideal_like(y))

    def label(self, y: np.ndarray) -> np.ndarray:
        """The oracle's label for the follower's regression: ``U(y)``."""
        return self.utility(y)

    def optimum(self) -> tuple[np.ndarray, float]:
        """The human ideal ``y*`` and ``U(y*)``."""
        return self.ideal.copy(), float(self.peak)


def bump_oracle(
    dim: int, signal_dims: int, ideal_value: float, peak: float, width: float, output_bound: float
) -> GaussianBumpOracle:
    """The oracle of a vector game: a bump around ``y* = (ideal_value, ..., 0, ...)`` whose
    first ``signal_dims`` coordinates are signal, checked to lie inside the action bounds."""
    if not 0 < signal_dims <= dim:
        raise ValueError(f"signal_dims must be in [1, dim={dim}], got {signal_dims}")
    ideal = np.zeros(dim)
    ideal[:signal_dims] = ideal_value
    if np.abs(ideal).max() >= output_bound:
        raise ValueError(f"output_bound={output_bound} must exceed the ideal's coordinates ({ideal_value})")
    return GaussianBumpOracle(ideal, peak, width)
