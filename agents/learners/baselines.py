"""Standard mitigations of reward over-optimisation, as learners to compare FPO with.

- ``rlhf-anchor``: RLHF anchored to the policy it started from (the KL penalty to the initial
  policy of Ziegler et al. 2019 and InstructGPT). On the vector games a distance penalty
  ``- anchor * ||y - y_0||^2`` in the objective (for the Gaussian policy ``y_0`` is the mean it
  started from). On the text game the KL itself, in the SFT step on the best-of-N winner:
  ``NLL(winner) + anchor * KL(pi_theta || pi_base)``, both averaged over the winner's
  response tokens, ``pi_base`` the base LM (the adapter disabled: where the zero-initialised
  LoRA adapter starts). It needs the initial policy, nothing of the oracle.
- ``rlhf-cap``: RLHF on the capped reward (reward clipping): the policy gains nothing from
  pushing the RM's score above ``cap``. On the vector games the objective
  ``min(r(y), cap) - c ||y||^2``; on the text game the best-of-N pick by ``min(r, cap)``,
  candidates tied at the cap broken uniformly at random by the learner's seeded generator.
  It needs a cap on the RM's scale, nothing of the oracle.

``gold-bon`` is not a mitigation but the text game's upper bound: best-of-N by the judge's
``U`` itself (it reads the human's score of every candidate), the headroom selection can reach.

On the token game the anchor is the exact sequence-level KL to the starting policy, its
gradient computed in closed form (no sampling), and the cap clips each sequence's score.

Both run on the linear game, the neural game and the token game (single and vector envs) and
on the text game, and register through the public registry as an outside author's learners would (this
module is the ``baselines`` entry point of the ``fpo_envs.learners`` group). The text
learners subclass :class:`agents.families.text.TextLeader`, whose module imports no torch,
transformers or peft until a learner is built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import agents
from agents.common.objectives import check_knob, check_no_penalty
from agents.families.gaussian import GaussianConfig, GaussianLeader
from agents.families.gradient import GradientConfig, GradientLeader
from agents.families.text import TextConfig, TextLeader, next_token_kl
from agents.families.token import TokenConfig, TokenLeader
from fpo_envs.lm.loading import require


def _check(config, learner: str) -> None:
    """The checks every baseline config shares: its knob's range, and no FPO penalty on top."""
    if hasattr(config, "anchor"):
        check_knob("anchor", config.anchor, minimum=0.0)
    else:
        check_knob("cap", config.cap)
    check_no_penalty(config, learner)


class _Anchored:
    """Adds ``- anchor * ||y - y_0||^2`` to the objective; ``y_0`` is each copy's starting output."""

    def _start(self, obs, mask):
        super()._start(obs, mask)
        start = self.output if hasattr(self, "output") else self.theta
        if mask is None or not hasattr(self, "anchor_point"):
            self.anchor_point = start.clone() if hasattr(start, "clone") else start.copy()
        elif isinstance(start, np.ndarray):
            self.anchor_point[mask] = start[mask]
        else:  # the Gaussian family's torch mean
            import torch

            mask = torch.as_tensor(mask, device=start.device)
            self.anchor_point[mask] = start[mask]

    def objective_grad(self, y, rm):
        return super().objective_grad(y, rm) - 2.0 * self.config.anchor * (y - self.anchor_point)

    def _state(self):
        state = super()._state()
        if hasattr(self, "anchor_point"):
            state["anchor_point"] = self.anchor_point
        return state

    def _set_state(self, state):
        super()._set_state(state)
        if "anchor_point" in state:
            point = state["anchor_point"]
            self.anchor_point = point.clone() if hasattr(point, "clone") else np.array(point, dtype=np.float64)


class _Capped:
    """Ascends ``min(r(y), cap) - c ||y||^2``: above the cap the RM's slope no longer pulls."""

    def objective_grad(self, y, rm):
        grad = super().objective_grad(y, rm)
        over = rm.reward(y) >= self.config.cap
        if not over.any():
            return grad
        return grad - over[..., None] * rm.grad_input(y)


@dataclass(frozen=True)
class AnchorGradientConfig(GradientConfig):
    """The gradient leader's settings and ``anchor``, the distance penalty's weight."""

    anchor: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        _check(self, "rlhf-anchor")


@dataclass(frozen=True)
class AnchorGaussianConfig(GaussianConfig):
    """The Gaussian leader's settings and ``anchor``, the distance penalty's weight."""

    anchor: float = 0.005

    def __post_init__(self):
        super().__post_init__()
        _check(self, "rlhf-anchor")


@dataclass(frozen=True)
class CapGradientConfig(GradientConfig):
    """The gradient leader's settings and ``cap``, the most RM score the objective counts."""

    cap: float = 5.0

    def __post_init__(self):
        super().__post_init__()
        _check(self, "rlhf-cap")


@dataclass(frozen=True)
class CapGaussianConfig(GaussianConfig):
    """The Gaussian leader's settings and ``cap``, the most RM score the objective counts."""

    cap: float = 5.0

    def __post_init__(self):
        super().__post_init__()
        _check(self, "rlhf-cap")


class AnchoredGradientLeader(_Anchored, GradientLeader):
    """The linear game's gradient leader with a distance anchor to its starting output."""

    config_cls = AnchorGradientConfig


class AnchoredGaussianLeader(_Anchored, GaussianLeader):
    """The neural game's Gaussian leader with a distance anchor to its starting mean."""

    config_cls = AnchorGaussianConfig


class CappedGradientLeader(_Capped, GradientLeader):
    """The linear game's gradient leader on the capped reward."""

    config_cls = CapGradientConfig


class CappedGaussianLeader(_Capped, GaussianLeader):
    """The neural game's Gaussian leader on the capped reward."""

    config_cls = CapGaussianConfig


@dataclass(frozen=True)
class AnchorTextConfig(TextConfig):
    """The text learner's settings and ``anchor``, the KL penalty's weight in its SFT loss."""

    anchor: float = 0.1
    """Weight of ``KL(pi_theta || pi_base)`` next to the winner's NLL. Both are mean nats per
    response token, so the weight is their exchange rate: at 0.1 a nat of drift per token costs
    a tenth of a nat of the winner's likelihood, so the NLL leads the early steps, where the KL
    and its gradient start at zero, and the anchor grows with the drift (the scales measured:
    docs/baselines.md). 0 is rlhf."""

    def __post_init__(self):
        super().__post_init__()
        _check(self, "rlhf-anchor")


@dataclass(frozen=True)
class CapTextConfig(TextConfig):
    """The text learner's settings and ``cap``, the most RM score its pick counts."""

    cap: float = 0.1
    """The winner maximizes ``min(r, cap)``, on the RM's scale, which a Bradley-Terry head
    does not fix. 0.1: about the 95th percentile of the RM's scores of the oracle's reference
    answers (samples of the base LM) in the loop profile's benchmark (docs/baselines.md, "Baselines under
    one tuning protocol"), so the cap binds where the policy outscores nearly all of its base's
    answers; another RM head needs its own cap."""

    def __post_init__(self):
        super().__post_init__()
        _check(self, "rlhf-cap")


def _token_kl(logits, base_logits, labels):
    """``KL(pi_theta || pi_base)`` of the next token, full vocabulary, averaged over the
    positions the SFT loss scores.

    Args:
        logits: ``(1, T, V)`` the policy's next-token logits.
        base_logits: ``(1, T, V)`` the base's, on the same ids.
        labels: ``(1, T)`` the SFT labels, -100 on the prompt. Position ``t`` predicts token
            ``t + 1``: the positions counted are those whose next label is a response token
            or EOS, the ones transformers' causal-LM loss averages its NLL over.

    Returns:
        the scalar mean KL in nats per token, in float32 or wider (float64 stays float64).
    """
    scored = labels[:, 1:] != -100  # (1, T - 1)
    return next_token_kl(logits[:, :-1][scored], base_logits[:, :-1][scored]).mean()  # over (n, V)


class AnchoredTextLeader(TextLeader):
    """The text game's best-of-N LoRA learner with a KL anchor to the base LM in its SFT loss.

    The step on the winner descends ``NLL + anchor * KL`` (:func:`_token_kl`): the NLL is
    transformers' loss, as rlhf's, and the KL compares the policy of that same forward pass
    (training mode: LoRA dropout as in the NLL) with the base LM in eval mode, the adapter
    disabled and no gradient. The base is the initial policy, since peft starts LoRA's ``B``
    at zero. The round record's ``sft_loss`` is the whole anchored loss; ``sft_kl`` is the KL,
    both before the step.
    """

    config_cls = AnchorTextConfig

    def _sft_loss(self, input_ids, labels):
        torch = require("torch", "torch")
        out = self.model(input_ids=input_ids, labels=labels)
        # The policy's forward drew its dropout masks first, as rlhf's does; the base's draws nothing.
        self.model.eval()
        try:
            with torch.no_grad(), self.model.disable_adapter():
                base_logits = self.model(input_ids=input_ids).logits
        finally:
            self.model.train()
        kl = _token_kl(out.logits, base_logits, labels)
        return out.loss + self.config.anchor * kl, {"sft_kl": float(kl.detach())}


class CappedTextLeader(TextLeader):
    """The text game's best-of-N LoRA learner picking by the capped score ``min(r, cap)``.

    Every candidate the RM scores at or above ``cap`` ties; the winner among them is drawn
    uniformly from the learner's generator. Only two or more tied candidates draw, so a cap
    no candidate reaches picks (and draws) exactly as rlhf does.
    """

    config_cls = CapTextConfig

    def scores(self, prompt: str, reference: str, responses: list[str]) -> dict[str, np.ndarray]:
        """:meth:`TextLeader.scores` with ``score`` the capped reward ``min(r, cap)``."""
        out = super().scores(prompt, reference, responses)
        out["score"] = np.minimum(out["reward"], self.config.cap)
        return out

    def _choose(self, scores):
        tied = np.flatnonzero(scores["score"] >= self.config.cap)
        if len(tied) < 2:
            return super()._choose(scores)
        torch = require("torch", "torch")
        return int(tied[int(torch.randint(len(tied), (1,), generator=self.generator))])


@dataclass(frozen=True)
class GoldTextConfig(TextConfig):
    """The text learner's settings; no penalty (it picks by ``U`` itself)."""

    def __post_init__(self):
        super().__post_init__()
        check_no_penalty(self, "gold-bon")


class GoldBestOfNTextLeader(TextLeader):
    """The upper bound of the text game's selection: best-of-N by the judge's ``U`` itself, then
    the same SFT step on the winner. It reads what no real policy can (the human's score of
    every candidate), so it shows how far selection and fine-tuning can climb a judge: the
    headroom a learner that only sees the RM could reach."""

    config_cls = GoldTextConfig

    def scores(self, prompt: str, reference: str, responses: list[str]) -> dict[str, np.ndarray]:
        """:meth:`TextLeader.scores` with ``score`` the oracle's ``U`` of each response."""
        out = super().scores(prompt, reference, responses)
        out["score"] = np.asarray(self.env.unwrapped.oracle.quality([prompt] * len(responses), responses), dtype=np.float64)
        return out


@dataclass(frozen=True)
class AnchorTokenConfig(TokenConfig):
    """The token policy's settings and ``anchor``, the weight of the exact KL to its start."""

    anchor: float = 2.0
    """Weight of ``KL(pi_theta || pi_0)`` (nats per sequence) against the RM's score: the value
    of 0.05, 0.2, 0.5, 1, 2 and 5 with the highest mean final true utility over seeds 64-127
    (none of the reported seeds), 600 rounds."""

    def __post_init__(self):
        super().__post_init__()
        _check(self, "rlhf-anchor")


@dataclass(frozen=True)
class CapTokenConfig(TokenConfig):
    """The token policy's settings and ``cap``, the most RM score a sequence counts."""

    cap: float = 3.0
    """The RM's mean score of a uniform policy's sequences starts near 9 and falls as the RM
    learns. 3: the value of 2, 3, 4, 5, 6 and 8 with the highest mean final true utility over
    seeds 64-127 (none of the reported seeds), 600 rounds."""

    def __post_init__(self):
        super().__post_init__()
        _check(self, "rlhf-cap")


class AnchoredTokenLeader(TokenLeader):
    """The token policy with the exact KL anchor: each update adds ``- anchor * grad KL(pi_theta
    || pi_0)``, the exact gradient of the sequence-level KL (:func:`agents.families.token.sequence_kl`),
    no sampling."""

    config_cls = AnchorTokenConfig

    def update_direction(self, theta, tokens, values):
        """The family's step minus ``anchor`` times the exact gradient of the sequence KL."""
        _, kl_grad = self.kl_to_base(theta, with_grad=True)
        return super().update_direction(theta, tokens, values) - self.config.anchor * kl_grad


class CappedTokenLeader(TokenLeader):
    """The token policy on the capped reward ``min(r, cap)``: above the cap a sequence gains nothing."""

    config_cls = CapTokenConfig

    def sample_objective(self, tokens, w):
        """The family's ``J`` of each sequence, clipped at ``cap``."""
        return np.minimum(super().sample_objective(tokens, w), self.config.cap)


agents.register(
    "rlhf-anchor",
    {
        "linear": AnchoredGradientLeader,
        "neural": AnchoredGaussianLeader,
        "text": AnchoredTextLeader,
        "token": AnchoredTokenLeader,
    },
    games=("linear", "neural", "text", "token"),
)
agents.register(
    "rlhf-cap",
    {"linear": CappedGradientLeader, "neural": CappedGaussianLeader, "text": CappedTextLeader, "token": CappedTokenLeader},
    games=("linear", "neural", "text", "token"),
)
agents.register("gold-bon", {"text": GoldBestOfNTextLeader}, games=("text",))
