"""The token game's vocabulary features and its programmatic oracle (``FPO/TokenRM-v0``).

Every token ``v`` of a vocabulary of ``V`` carries a fixed feature vector ``e_v`` in ``R^D``;
a sequence's features are the sum over its tokens, ``y(s) = sum_t e_(s_t)``. The first
``signal_dims`` features are what the human values, the others noise. The oracle is a bump
in feature space, ``U(s) = peak * exp(-width * ||y(s) - y*||^2)``, so it depends on a
sequence only through its token counts, and its optimum over all ``V^L`` sequences is found
exactly by enumerating the ``C(V + L - 1, L)`` count vectors.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from fpo_envs.models.oracles import GaussianBumpOracle

_OPTIMA: dict[tuple, tuple[np.ndarray, float]] = {}  # by game: every env of one game shares its optimum

MAX_MULTISETS = 2_000_000
"""The most count vectors :meth:`TokenOracle.optimum` enumerates (a few seconds of numpy);
a larger vocabulary or sequence is an error naming this limit."""


def token_features(
    vocab_size: int,
    feature_dims: int,
    signal_dims: int,
    hack_tokens: int,
    hack_signal: float,
    hack_noise: float,
    noise_std: float,
    seed: int,
) -> np.ndarray:
    """The token features ``E`` of shape ``(V, D)``, drawn from ``default_rng(seed)``.

    Each token's signal features are ``U(0, 1)``, its noise features ``N(0, noise_std^2)``.
    The first ``hack_tokens`` tokens are *hacks*: ``hack_signal`` more signal per feature and
    noise features ``N(0, hack_noise^2)``, so they look better than the rest on the signal
    features an RM starts out trusting, and carry the noise that costs true utility.
    """
    rng = np.random.default_rng(seed)
    features = np.zeros((vocab_size, feature_dims))
    features[:, :signal_dims] = rng.uniform(0.0, 1.0, (vocab_size, signal_dims))
    features[:, signal_dims:] = rng.normal(0.0, noise_std, (vocab_size, feature_dims - signal_dims))
    features[:hack_tokens, :signal_dims] += hack_signal
    features[:hack_tokens, signal_dims:] = rng.normal(0.0, hack_noise, (hack_tokens, feature_dims - signal_dims))
    return features


class TokenOracle(GaussianBumpOracle):
    """The human's true utility of token sequences: the bump :class:`GaussianBumpOracle` at
    the sequence's summed token features.

    ``utility`` and ``grad`` take features ``y`` (``(*B, D)``), as the RM does; ``score`` takes
    token ids ``(*B, L)``.

    Args:
        features: the token features ``E``, shape ``(V, D)``.
        seq_len: ``L``, the tokens of a sequence (for :meth:`optimum`).
        ideal: ``y*``, shape ``(D,)``; peak, width: the bump's.
    """

    def __init__(self, features: np.ndarray, seq_len: int, ideal: np.ndarray, peak: float, width: float):
        super().__init__(ideal, peak, width)
        self.features = np.asarray(features, dtype=np.float64)
        self.seq_len = seq_len
        self._optimum: tuple[np.ndarray, float] | None = None

    def sequence_features(self, tokens: np.ndarray) -> np.ndarray:
        """``y(s) = sum_t e_(s_t)`` of token ids ``(*B, L)``, shape ``(*B, D)``."""
        return self.features[tokens].sum(-2)

    def score(self, tokens: np.ndarray) -> np.ndarray:
        """``U(s)`` of token ids ``(*B, L)``, shape ``(*B,)``."""
        return self.utility(self.sequence_features(tokens))

    def optimum(self) -> tuple[np.ndarray, float]:
        """The best sequence ``s*`` (token ids ``(L,)``, in ascending order: ``U`` depends only on
        the counts) and ``U(s*)``, exact: every count vector is scored (computed once).

        Raises:
            ValueError: more than :data:`MAX_MULTISETS` count vectors (a smaller ``vocab_size``
                or ``seq_len``).
        """
        if self._optimum is None:
            key = (self.features.tobytes(), self.features.shape, self.seq_len, self.ideal.tobytes(), self.peak, self.width)
            if key not in _OPTIMA:
                _OPTIMA[key] = self._enumerate()
            self._optimum = _OPTIMA[key]
        tokens, value = self._optimum
        return tokens.copy(), value

    def _enumerate(self) -> tuple[np.ndarray, float]:
        vocab, length = len(self.features), self.seq_len
        total = math.comb(vocab + length - 1, length)
        if total > MAX_MULTISETS:
            raise ValueError(
                f"the exact optimum scores every count vector, C(V + L - 1, L) = {total:,} for vocab_size={vocab}, "
                f"seq_len={length}: more than MAX_MULTISETS = {MAX_MULTISETS:,}; choose a smaller vocab_size or seq_len"
            )
        best_tokens, best_value = None, -np.inf
        combos = itertools.combinations_with_replacement(range(vocab), length)
        while True:  # in chunks, so memory stays flat for the largest games allowed
            chunk = np.array(list(itertools.islice(combos, 200_000)), dtype=np.int64)
            if not len(chunk):
                break
            values = self.score(chunk)
            i = int(np.argmax(values))
            if values[i] > best_value:
                best_tokens, best_value = chunk[i], float(values[i])
        return best_tokens, best_value
