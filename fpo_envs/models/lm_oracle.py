"""The text game's oracle (:class:`LMOracle`): a frozen LM whose likelihood scores quality
and whose own samples are the reference answers."""

from __future__ import annotations

import numpy as np

from fpo_envs.lm.generation import adapters_disabled, generate
from fpo_envs.lm.presets import TextPreset
from fpo_envs.lm.scoring import sequence_nll


class LMOracle:
    """The 'human': a frozen LM whose likelihood scores quality, ``U(x, y) = clip(5 - NLL, -15, 5)``.

    ``quality`` is batched (one forward pass) and memoized per (prompt, response), since the
    oracle never changes. When the oracle shares the policy's base weights, its passes run
    with every adapter disabled. Prompts are chat-formatted and cut to the preset's
    ``prompt_max_tokens``, as the policy's are.

    Args:
        model: the oracle's causal LM (frozen).
        tokenizer: its tokenizer.
        preset: the game's :class:`~fpo_envs.lm.presets.TextPreset`: ``nll_scope``,
            ``prompt_max_tokens`` and the reference sampling settings.
    """

    def __init__(self, model, tokenizer, preset: TextPreset):
        self.model, self.tokenizer, self.preset = model, tokenizer, preset
        self._cache: dict[tuple[str, str], float] = {}

    def quality(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """``U(x, y)`` for each pair, shape ``(n,)``."""
        missing = sorted({(p, r) for p, r in zip(prompts, responses)} - set(self._cache))
        if missing:
            with adapters_disabled(self.model):
                nll = sequence_nll(
                    self.model,
                    self.tokenizer,
                    [p for p, _ in missing],
                    [r for _, r in missing],
                    self.preset.nll_scope,
                    self.preset.prompt_max_tokens,
                )
            for key, value in zip(missing, np.clip(5.0 - nll, -15.0, 5.0)):
                self._cache[key] = float(value)
            if len(self._cache) > 50_000:
                self._cache.clear()
        return np.asarray([self._cache[(p, r)] for p, r in zip(prompts, responses)])

    def utility(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """Alias of :meth:`quality` (the name the other games use)."""
        return self.quality(prompts, responses)

    def generate_reference(self, prompts: list[str], generator) -> list[str]:
        """The oracle's own sampled response to each prompt (the preset's sampling settings)."""
        p = self.preset
        with adapters_disabled(self.model):
            texts, _ = generate(
                self.model,
                self.tokenizer,
                prompts,
                generator,
                **p.sampling(),
            )
        return texts
