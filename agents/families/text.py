"""Best-of-N learners with a LoRA policy for the text game (ARCHITECTURE.md, TextRM).

Each round the policy (the env's base LM with a LoRA adapter) samples ``n_candidates``
responses to the prompt in one batched generation; one RM pass scores them with the
reference (and, for relaxed FPO, one oracle pass); the learner picks the winner by
``r - gamma * R`` with the Bradley-Terry form of its penalty (:mod:`agents.common.objectives`), takes one
SFT step on it (gradient accumulation over rounds) once the env has scored it
(:meth:`TextLeader._update`), and submits it.

Long runs: ``run_dir`` makes it a run directory (:mod:`agents.common.callbacks`, as any learner
with ``learn(n, callback=run_callbacks(run_dir, every))``): metrics streamed to ``metrics.csv``
/ ``metrics.jsonl`` (and TensorBoard where installed) and a checkpoint every
``checkpoint_every`` rounds (adapter, optimizer, RM head and its optimizer, every RNG state,
the round index); :meth:`TextLeader.resume` continues a killed run from its last checkpoint,
and since all randomness is restored, the rounds replayed after it are the ones the killed
run played.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from agents.common import callbacks
from agents.common.base import Agent
from agents.common.objectives import PAPER_GAMMA, Objective, ObjectiveConfig, Outputs
from fpo_envs.lm.generation import chat_prompt_ids, generate, left_pad, response_ids, seeded_global_rng
from fpo_envs.lm.loading import require
from fpo_envs.lm.names import with_current_names

METRIC_KEYS = (
    "true_utility",
    "proxy_reward",
    "quality_gap",
    "rm_error",
    "reference_utility",
    "reference_reward",
    "preference",
    "response_tokens",
    "response_truncated",
    "diverged",
)
"""The ``info`` entries of a round that the streamed metrics (``metrics.csv``, ``metrics.jsonl``) keep."""


def next_token_kl(logits, base_logits):
    """``KL(softmax(logits) || softmax(base_logits))`` over the last axis (the vocabulary), one
    value per position, in float32 or wider (float64 stays float64): the policy's next-token
    distribution against the base LM's."""
    torch = require("torch", "torch")
    dtype = torch.promote_types(logits.dtype, torch.float32)
    log_p = torch.log_softmax(logits.to(dtype), dim=-1)
    log_q = torch.log_softmax(base_logits.to(dtype), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


@dataclass(frozen=True)
class TextConfig(ObjectiveConfig):
    """Settings of the best-of-N LoRA learner (paper values as defaults)."""

    paper_gamma: ClassVar[float] = PAPER_GAMMA["text"]

    n_candidates: int = 8
    """Responses sampled per round (one batched generation)."""
    lr: float = 2e-5
    """Step size of the SFT optimizer on the LoRA parameters."""
    grad_accum: int = 4
    """SFT rounds accumulated per optimizer step."""
    optimizer: str = "adamw"
    """``adamw`` (torch) or ``paged_adamw_8bit`` (bitsandbytes, CUDA)."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA path during SFT."""
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    """Module names that get adapters."""
    max_new_tokens: int = 32
    """Candidate generation: most new tokens."""
    min_new_tokens: int = 5
    """Candidate generation: fewest new tokens."""
    top_p: float = 0.9
    """Candidate generation: nucleus mass."""
    temperature: float = 0.8
    """Candidate generation: temperature."""
    run_dir: str | None = None
    """Folder for streamed metrics and checkpoints (``None``: neither): every ``learn`` adds
    :func:`agents.common.callbacks.run_callbacks` for it, as any learner may be given."""
    checkpoint_every: int = 0
    """Write a checkpoint every this many rounds (0: never; needs ``run_dir``)."""
    keep_checkpoints: int = 2
    """How many recent checkpoints to keep."""

    def __post_init__(self):
        super().__post_init__()
        for name in ("n_candidates", "grad_accum", "lora_r", "lora_alpha", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.optimizer not in ("adamw", "paged_adamw_8bit"):
            raise ValueError(f"optimizer must be 'adamw' or 'paged_adamw_8bit', got {self.optimizer!r}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0 (0: never), got {self.checkpoint_every!r}")
        if self.checkpoint_every and self.run_dir is None:
            raise ValueError(f"checkpoint_every={self.checkpoint_every} needs a run_dir to write the checkpoints to")
        if not 0 < self.min_new_tokens <= self.max_new_tokens:
            raise ValueError(
                f"need 0 < min_new_tokens <= max_new_tokens, got min_new_tokens={self.min_new_tokens!r}, "
                f"max_new_tokens={self.max_new_tokens!r}"
            )
        if not self.lr > 0 or not self.temperature > 0:
            raise ValueError(f"lr and temperature must be positive, got lr={self.lr!r}, temperature={self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))


class TextOutputs(Outputs):
    """Candidate responses to one prompt, judged against the round's reference (Bradley-Terry):
    one RM pass over the candidates and the reference gives every ``reward`` and
    ``grad_params`` (the pooled features ``[e, 1]``), and one oracle pass, made only if a
    penalty reads ``utility``, every quality."""

    def __init__(self, prompt: str, responses: list[str], reference: str, rm, oracle):
        super().__init__(responses, rm, oracle)
        self.prompt, self.reference = prompt, reference

    def _features(self):
        def compute():
            n = len(self.y)
            features = self.rm.grad_params([self.prompt] * (n + 1), list(self.y) + [self.reference])
            return features, features @ self.rm.params

        return self._get("features", compute)

    def _qualities(self):
        n = len(self.y)
        return self._get("qualities", lambda: self.oracle.quality([self.prompt] * (n + 1), list(self.y) + [self.reference]))

    reward = property(lambda self: self._features()[1][:-1], doc="The RM's score of each candidate, ``(n,)``.")
    ref_reward = property(lambda self: self._features()[1][-1], doc="The RM's score of the reference.")
    grad_params = property(
        lambda self: self._features()[0][:-1], doc="Each candidate's gradient in the head's parameters (its features ``[e, 1]``)."
    )
    ref_grad_params = property(lambda self: self._features()[0][-1], doc="The reference's features ``[e, 1]``.")
    utility = property(lambda self: self._qualities()[:-1], doc="The oracle's quality of each candidate, ``(n,)``.")
    ref_utility = property(lambda self: self._qualities()[-1], doc="The oracle's quality of the reference.")


class TextLeader(Agent):
    """A LoRA policy on the env's base LM, improved by SFT on its best-of-N pick.

    Settings not given start from the env's profile (``env.unwrapped.learner_defaults``:
    the ``loop`` profile's N, step size and accumulation), else from :class:`TextConfig`.

    The pick maximizes the objective ``r - gamma * R`` (:class:`agents.common.objectives.Objective`)
    with the Bradley-Terry form of the penalty; ``rlhf``, ``fpo-practical`` and
    ``fpo-relaxed`` are this family with ``penalty`` ``none``, ``practical``, ``relaxed``.
    A subclass changes the pick (:meth:`_choose`) or the SFT loss (:meth:`_sft_loss`), as the
    baselines ``rlhf-cap`` and ``rlhf-anchor`` do (:mod:`agents.learners.baselines`).
    """

    config_cls = TextConfig
    games = ("text",)

    def __init__(self, env, seed=None, **config):
        # The env's text-game profile sets this family's defaults; keywords given here win.
        config = {**getattr(env.unwrapped, "learner_defaults", {}), **config}
        super().__init__(env, seed=seed, **config)
        self.objective = Objective(env.unwrapped, self.config.penalty, self.config.gamma)
        torch = require("torch", "torch")
        peft = require("peft")
        game = env.unwrapped
        if self.is_vector or not hasattr(game, "policy_base"):
            raise TypeError("text learners need a single FPO/TextRM-v0 env")
        base = game.policy_base
        if any(isinstance(m, peft.tuners.tuners_utils.BaseTunerLayer) for m in base.modules()):
            raise ValueError("this env's policy already carries an adapter: make one learner per env")
        c = self.config
        lora = peft.LoraConfig(
            r=c.lora_r,
            lora_alpha=c.lora_alpha,
            lora_dropout=c.lora_dropout,
            target_modules=list(c.lora_targets),
            task_type="CAUSAL_LM",
        )
        self.generator = torch.Generator().manual_seed(int(self.rng.integers(2**62)))
        with seeded_global_rng(self.generator, next(base.parameters()).device):  # peft's LoRA init
            self.model = peft.get_peft_model(base, lora)
        self.model.eval()
        params = self._trainable()
        if c.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(params, lr=c.lr)
        else:
            self.optimizer = require("bitsandbytes").optim.PagedAdamW8bit(params, lr=c.lr)
        self._pending = 0  # SFT rounds accumulated since the last optimizer step
        self._sft_record: dict[str, float] = {}  # what the last SFT step's loss adds to the round record
        self._round_record: dict[str, float] = {}  # the last round's records (its history entries)

    def _trainable(self) -> list:
        return [p for p in self.model.parameters() if p.requires_grad]

    # The round --------------------------------------------------------------------------------
    def candidates(self, prompt: str, n: int | None = None, greedy: bool = False) -> list[str]:
        """``n`` sampled responses to ``prompt`` from the LoRA policy (one batched generation)."""
        game, c = self.env.unwrapped, self.config
        n = n or c.n_candidates
        texts, _ = generate(
            self.model,
            game.policy_tokenizer,
            [prompt] * n,
            self.generator,
            do_sample=not greedy,
            max_new_tokens=c.max_new_tokens,
            min_new_tokens=c.min_new_tokens,
            top_p=c.top_p,
            temperature=c.temperature,
            prompt_max_tokens=game.preset.prompt_max_tokens,
        )
        return texts

    def scores(self, prompt: str, reference: str, responses: list[str]) -> dict[str, np.ndarray]:
        """The selection score ``r - gamma * R`` of each response, with its parts."""
        game = self.env.unwrapped
        z = TextOutputs(prompt, responses, reference, game.reward_model, game.oracle)
        out = {"reward": game.proxy(responses, z.reward), "penalty": np.zeros(len(responses))}
        if self.objective.penalty is not None:
            out["penalty"] = np.asarray(self.objective.penalty_value(z), dtype=np.float64)
        out["score"] = out["reward"] - self.config.gamma * out["penalty"]
        return out

    def kl_to_base(self, prompt: str, responses: list[str]) -> np.ndarray:
        """Each response's KL from the policy to the base LM along it, in nats: the sum over its
        tokens (and the end-of-turn token) of ``KL(pi(. | x, y_<t) || pi_base(. | x, y_<t))``,
        the full next-token distributions at temperature 1, the adapter on and off.

        Its mean over responses sampled from the policy estimates the sequence KL
        ``KL(pi(. | x) || pi_base(. | x))`` without bias (each term is that KL's expectation
        given the prefix); each term is >= 0, so unlike the log-ratio estimate it never goes
        negative. The round's candidates are sampled with the learner's ``temperature`` and
        ``top_p``, not from ``pi`` itself, so the recorded mean is the KL along the answers the
        policy actually writes, close to but not exactly the sequence KL. 0 while the adapter is
        the identity (LoRA's B starts at zero)."""
        torch = require("torch", "torch")
        game = self.env.unwrapped
        tok = game.policy_tokenizer
        p = chat_prompt_ids(tok, prompt, game.preset.prompt_max_tokens)
        suffixes = [response_ids(tok, r) + [tok.eos_token_id] for r in responses]
        device = next(self.model.parameters()).device
        ids, mask = left_pad([p + s for s in suffixes], tok.pad_token_id, device)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        keep = max(len(s) for s in suffixes) + 1  # with left padding the scored positions are last
        inputs = dict(input_ids=ids, attention_mask=mask, position_ids=position_ids, logits_to_keep=keep)
        with torch.inference_mode():
            logits = self.model(**inputs).logits[:, :-1]
            with self.model.disable_adapter():
                base_logits = self.model(**inputs).logits[:, :-1]
            per_token = next_token_kl(logits, base_logits).clamp(min=0.0)  # rounding below 0
        return np.array([float(per_token[i, keep - 1 - len(s) :].sum()) for i, s in enumerate(suffixes)])

    def sft_step(self, prompt: str, response: str) -> float:
        """One supervised step on ``response`` (accumulated; the optimizer steps every ``grad_accum``)."""
        torch = require("torch", "torch")
        game = self.env.unwrapped
        tok = game.policy_tokenizer
        p = chat_prompt_ids(tok, prompt, game.preset.prompt_max_tokens)
        ids = p + response_ids(tok, response) + [tok.eos_token_id]
        device = next(self.model.parameters()).device
        input_ids = torch.tensor([ids], device=device)
        labels = input_ids.clone()
        labels[:, : len(p)] = -100
        self.model.train()
        with seeded_global_rng(self.generator, device):  # LoRA dropout
            loss, self._sft_record = self._sft_loss(input_ids, labels)
            (loss / self.config.grad_accum).backward()
        self.model.eval()
        self._pending += 1
        if self._pending == self.config.grad_accum:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self._pending = 0
        return float(loss.detach())

    def _sft_loss(self, input_ids, labels) -> tuple:
        """The loss one SFT step descends, and what it adds to the round's record.

        Args:
            input_ids: ``(1, T)`` the chat prompt, the winner and EOS.
            labels: ``input_ids`` with the prompt's positions set to -100.

        Returns:
            the scalar loss (here the winner's mean token NLL, transformers' causal-LM loss)
            and a dict of floats for the round record (here empty). Called in training mode
            inside the step's seeded RNG block, so a subclass may add terms to the loss.
        """
        return self.model(input_ids=input_ids, labels=labels).loss, {}

    def _choose(self, scores: dict[str, np.ndarray]) -> int:
        """The index of the winner among the candidates given their :meth:`scores`: the first
        maximum of ``score``. A subclass may draw from ``self.generator`` (``predict``
        restores it)."""
        return int(np.argmax(scores["score"]))

    def _start(self, obs, mask):
        pass

    def _act(self):
        """The best-of-N pick among ``n_candidates`` samples, by :meth:`scores` and :meth:`_choose`."""
        prompt, reference = self._obs["prompt"], self._obs["reference"]
        responses = self.candidates(prompt)
        s = self.scores(prompt, reference, responses)
        best = self._choose(s)
        lengths = [len(response_ids(self.env.unwrapped.policy_tokenizer, r)) for r in responses]
        self._winner = prompt, responses[best]
        self._pick_record = {
            "winner_penalty": float(s["penalty"][best]),
            "winner_score": float(s["score"][best]),
            "mean_candidate_tokens": float(np.mean(lengths)),
            "kl_to_base": float(self.kl_to_base(prompt, responses).mean()),
        }
        return responses[best]

    def _update(self, obs, info):
        """One SFT step on the round's winner; returns its loss and the pick's scores."""
        loss = self.sft_step(*self._winner)
        self._round_record = {"sft_loss": loss, **self._sft_record, **self._pick_record}
        return self._round_record

    def _predict(self, observation, deterministic=True):
        """``deterministic``: the greedy response; otherwise the best-of-N pick (no training).
        The learner's generator is restored afterwards, so predicting changes nothing."""
        saved = self.generator.get_state()
        try:
            if deterministic:
                return self.candidates(observation["prompt"], n=1, greedy=True)[0], None
            responses = self.candidates(observation["prompt"])
            best = self._choose(self.scores(observation["prompt"], observation["reference"], responses))
            return responses[best], None
        finally:
            self.generator.set_state(saved)

    # Long runs: metrics, checkpoints, resume ---------------------------------------------------
    def learn(self, total_rounds, callback=None, progress_bar=False):
        """:meth:`agents.Agent.learn`, with the run directory of the config's ``run_dir``
        (:func:`agents.common.callbacks.run_callbacks`: metrics, and a checkpoint every
        ``checkpoint_every`` rounds) before ``callback``, unless ``callback`` already streams
        to that folder (a benchmark's run, resumed from a checkpoint that names it)."""
        run = self.config.run_dir
        given = callbacks.as_callback(callback)
        if run is not None and not any(
            isinstance(cb, callbacks.MetricsCallback) and cb.run_dir.resolve() == Path(run).resolve() for cb in given
        ):
            own = callbacks.run_callbacks(
                run, self.config.checkpoint_every, self.config.keep_checkpoints, row=self._metrics_row, upgrade=with_current_names
            )
            given = callbacks.CallbackList([own, given])
        return super().learn(total_rounds, callback=given, progress_bar=progress_bar)

    def _metrics_row(self, info: dict) -> dict:
        """A round's row in ``run_dir``'s metrics: :data:`METRIC_KEYS`, the learner's records,
        the prompt and the response."""
        return {
            **{k: info[k] for k in METRIC_KEYS},
            **self._round_record,
            "prompt": info["prompt"],
            "response": info["response"],
        }

    def _state(self) -> dict:
        """The adapter, both optimizers' states, accumulated gradients and the generator."""
        peft = require("peft")
        return {
            "pending": self._pending,
            "adapter": dict(peft.get_peft_model_state_dict(self.model)),
            # Gradients accumulated since the last optimizer step (grad_accum > 1).
            "grads": [None if p.grad is None else p.grad.detach().clone() for p in self._trainable()],
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
        }

    def _set_state(self, state: dict) -> None:
        peft = require("peft")
        peft.set_peft_model_state_dict(self.model, state["adapter"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self._pending = state["pending"]
        for param, grad in zip(self._trainable(), state["grads"], strict=True):
            param.grad = None if grad is None else grad.to(param.device).clone()

    def save_checkpoint(self) -> Path:
        """Write ``run_dir/checkpoints/round_XXXXXX.fpo`` atomically; keep the newest
        ``keep_checkpoints`` (:func:`agents.common.callbacks.save_checkpoint`)."""
        if self.config.run_dir is None:
            raise ValueError("save_checkpoint needs a run_dir (or use agents.common.callbacks.save_checkpoint(learner, folder))")
        folder = Path(self.config.run_dir) / callbacks.CHECKPOINTS
        return callbacks.save_checkpoint(self, folder, self.config.keep_checkpoints)

    @classmethod
    def resume(cls, run_dir: str | Path, env, /, **config_overrides) -> "TextLeader":
        """:meth:`agents.Agent.resume` with the config's ``run_dir`` set to ``run_dir`` (where the
        run is now), so ``learn`` goes on streaming and checkpointing there."""
        return super().resume(run_dir, env, **{"run_dir": str(run_dir), **config_overrides})

    def save_adapter(self, folder: str | Path) -> None:
        """Save the LoRA adapter (peft format) to ``folder``."""
        self.model.save_pretrained(str(folder))

    def save_artifacts(self, folder: str | Path) -> None:
        """The LoRA adapter, in ``folder/adapter`` (:meth:`save_adapter`)."""
        self.save_adapter(Path(folder) / "adapter")


__all__ = ["TextConfig", "TextLeader", "TextOutputs"]
