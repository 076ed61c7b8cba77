"""The text game's oracles: :class:`LMOracle`, a frozen LM whose likelihood scores quality and
whose own samples are the reference answers, and :class:`GoldOracle`, a judge of verifiable
instructions with the LM's likelihood as a fluency floor only."""

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
        self.utility_range = (-15.0, 5.0)
        """The bounds of ``U``."""

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


class GoldOracle(LMOracle):
    """A judge with headroom: ``U(x, y) = utility_scale * c(x, y) * g(NLL(y))``.

    ``c`` is the share of the verifiable instructions prompt ``x`` carries that response ``y``
    meets, scored by code (:class:`fpo_envs.models.judge.ConstraintJudge`: a keyword, a word
    limit, a list of n items, ...; a minimum word count multiplies the rest), so a policy can
    climb it, and the base model does not start at its top. ``g`` is a fluency guard: 1 while
    the response's mean NLL per token under the frozen oracle LM is at most ``guard_floor``,
    falling linearly to 0 at ``guard_floor + guard_width`` (:func:`fpo_envs.models.judge.guarded`),
    so gibberish that happens to meet a constraint earns nothing. The LM's likelihood enters only as that floor, and only for
    responses with a score above 0 (the others are 0 whatever their NLL). The references are
    still the oracle LM's own samples. ``U`` lies in :attr:`utility_range`; memoized per pair.

    Args:
        model, tokenizer, preset: as :class:`LMOracle`'s (``utility_scale``, ``guard_floor``,
            ``guard_width`` from the preset).
        constraints: ``{prompt: [[name, value], ...]}``: the constraints of every prompt the game
            may show.
        judge: the :class:`~fpo_envs.models.judge.ConstraintJudge` that scores them.
    """

    def __init__(self, model, tokenizer, preset: TextPreset, constraints: dict, judge):
        super().__init__(model, tokenizer, preset)
        self.constraints, self.judge = dict(constraints), judge
        self.utility_range = (0.0, float(preset.utility_scale))

    def quality(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """``U(x, y)`` for each pair, shape ``(n,)``.

        Raises:
            ValueError: a prompt that carries no constraints.
        """
        from fpo_envs.models.judge import guarded

        p = self.preset
        missing = sorted({(x, y) for x, y in zip(prompts, responses)} - set(self._cache))
        scores = {}
        for x, y in missing:
            if x not in self.constraints:
                raise ValueError(
                    f"the constraints judge has no constraints for the prompt {x[:60]!r}: use prompts that carry them "
                    "(prompts_train/prompts_eval 'gold', or a .jsonl file with a 'constraints' field)"
                )
            scores[(x, y)] = self.judge.score(y, self.constraints[x])
        scored = [key for key in missing if scores[key] > 0]
        nll = {}
        if scored:
            with adapters_disabled(self.model):
                values = sequence_nll(
                    self.model, self.tokenizer, [x for x, _ in scored], [y for _, y in scored], "response", p.prompt_max_tokens
                )
            nll = dict(zip(scored, values))
        for key in missing:
            score = scores[key]
            if score > 0:
                score = guarded(score, float(nll[key]), p.guard_floor, p.guard_width)
            self._cache[key] = float(p.utility_scale * score)
        if len(self._cache) > 50_000:
            self._cache.clear()
        return np.asarray([self._cache[(x, y)] for x, y in zip(prompts, responses)])
