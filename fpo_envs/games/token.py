"""The token game ``FPO/TokenRM-v0``: iterative RLHF on token sequences, with a programmatic
oracle whose optimum is known exactly and a linear RM on token features."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from fpo_envs.core import INFO_KEYS, FeedbackLoopEnv, FeedbackLoopVectorEnv
from fpo_envs.core.checks import check_finite_array
from fpo_envs.core.numerics import sigmoid
from fpo_envs.core.params import GameParams, SettingsGame, choice, setting
from fpo_envs.games.vector import PARAM_BOUND, per_copy
from fpo_envs.models.linear import LinearRewardModel
from fpo_envs.models.tokens import TokenOracle, token_features

RM_LOSSES = ("regression", "bradley-terry")
"""The follower losses of :attr:`TokenParams.rm_loss`."""


@dataclasses.dataclass(frozen=True)
class TokenParams(GameParams):
    """The token game's settings (:class:`TokenRMEnv`'s Arguments say what each does). The
    defaults were chosen by measurement on seeds the reported figures do not use (``docs/games/token-results.md``)."""

    vocab_size: int = setting(12, "whole", "V, the tokens of the vocabulary")
    seq_len: int = setting(8, "whole", "L, the tokens of a sequence")
    samples_per_round: int = setting(8, "whole", "k, the sequences the policy submits each round")
    feature_dims: int = setting(6, "whole", "D, the features of a token")
    signal_dims: int = setting(2, "whole", "how many leading features the human values")
    hack_tokens: int = setting(4, "count", "how many tokens (the first ones) are hacks")
    hack_signal: float = setting(0.5, "non-negative", "the extra signal of a hack token, per signal feature")
    hack_noise: float = setting(1.0, "non-negative", "standard deviation of a hack token's noise features")
    noise_std: float = setting(0.3, "non-negative", "standard deviation of the other tokens' noise features")
    ideal_value: float = setting(5.0, "real", "each signal feature of the ideal y*")
    utility_peak: float = setting(10.0, "positive", "the bump's height")
    utility_width: float = setting(0.05, "positive", "the bump's curvature")
    vocab_seed: int = setting(0, "count", "the seed of the token features (the game itself, not an episode)")
    rm_loss: str = choice("regression", RM_LOSSES, "the follower's loss")
    rm_lr: float = setting(5e-4, "positive", "the follower's step size")
    rm_weight_decay: float = setting(1e-4, "non-negative", "the follower's multiplicative decay")
    rm_init_std: float = setting(0.1, "non-negative", "standard deviation of the RM's initial perturbation")
    retrain_every: int = setting(1, "whole", "m: the RM is retrained every m rounds")
    label_noise: float = setting(0.0, "non-negative", "standard deviation of the noise on each label")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.signal_dims <= self.feature_dims:
            raise ValueError(f"signal_dims must be in [1, feature_dims={self.feature_dims}], got {self.signal_dims}")
        if not self.hack_tokens <= self.vocab_size:
            raise ValueError(f"hack_tokens must be in [0, vocab_size={self.vocab_size}], got {self.hack_tokens}")


class TokenGame(SettingsGame):
    """The token game's hooks, shared by the single and the vector environment (and the class
    learners recognise the game by).

    Every copy's state: the RM's weights ``w`` ``(D,)``, the last round's sequences ``tokens``
    ``(k, L)``, the Bradley-Terry reference sequences ``reference`` ``(k, L)``, and the data
    gathered since the last retraining (``buffer_y``, ``buffer_label``, ``buffer_ref``,
    ``filled``).
    """

    params_class: ClassVar[type[TokenParams]] = TokenParams
    reset_options = ("rm_params",)
    info_keys = INFO_KEYS + ("rm_margin_to_optimum", "hack_share")
    """The shared keys, the RM's margin of the round's output over the optimum, and the share
    of hack tokens in it."""
    _trajectory_keys = ("true_utility", "hack_share")
    _render_columns = ("true_utility", "proxy_reward")

    def _setup(self, params: TokenParams) -> None:
        p = params
        self.features = token_features(
            p.vocab_size, p.feature_dims, p.signal_dims, p.hack_tokens, p.hack_signal, p.hack_noise, p.noise_std, p.vocab_seed
        )
        ideal = np.zeros(p.feature_dims)
        ideal[: p.signal_dims] = p.ideal_value
        self.oracle = TokenOracle(self.features, p.seq_len, ideal, p.utility_peak, p.utility_width)
        self.optimal_tokens, self.optimal_utility = self.oracle.optimum()
        self.optimal_features = self.oracle.sequence_features(self.optimal_tokens)
        self._action_size = p.samples_per_round * p.seq_len
        self.single_action_space = spaces.MultiDiscrete(np.full(self._action_size, p.vocab_size, dtype=np.int64))
        d = p.feature_dims
        low = np.concatenate([np.full(d, -PARAM_BOUND), np.zeros(self._action_size)]).astype(np.float32)
        high = np.concatenate([np.full(d, PARAM_BOUND), np.full(self._action_size, p.vocab_size - 1)]).astype(np.float32)
        self.single_observation_space = spaces.Box(low, high, dtype=np.float32)
        self.num_params = d
        # Until the first reset the RM sits at its unperturbed start, so it can be inspected.
        start = self._initial_state(self._rm_start(), np.zeros((p.samples_per_round, p.seq_len), dtype=np.int64))
        self._load_state({k: np.broadcast_to(v, self.batch_shape + v.shape).copy() for k, v in start.items()})

    # State ------------------------------------------------------------------------------------
    def _rm_start(self) -> np.ndarray:
        w = np.zeros(self.feature_dims)
        w[: self.signal_dims] = 1.0
        return w

    def _initial_state(self, w: np.ndarray, reference: np.ndarray) -> dict:
        p, k, d = self.params, self.samples_per_round, self.feature_dims
        size = p.retrain_every * k
        return {
            "w": np.asarray(w, dtype=np.float64),
            "tokens": np.zeros((k, p.seq_len), dtype=np.int64),
            "reference": np.asarray(reference, dtype=np.int64),
            "buffer_y": np.zeros((size, d)),
            "buffer_label": np.zeros(size),
            "buffer_ref": np.zeros((size, d)),
            "filled": np.zeros((), dtype=np.int64),
        }

    def _draw_initial(self, rng, options, index):
        if "rm_params" in options:
            w = per_copy(options["rm_params"], (self.feature_dims,), index, "rm_params")
        else:
            w = self._rm_start() + rng.normal(0.0, self.rm_init_std, self.feature_dims)
        # The Bradley-Terry reference: sequences of the starting (uniform) policy, one per sample
        # slot, drawn after the RM so that the RM of a seed is the same under either loss.
        if self.rm_loss == "bradley-terry":
            reference = rng.integers(0, self.vocab_size, (self.samples_per_round, self.seq_len))
        else:
            reference = np.zeros((self.samples_per_round, self.seq_len), dtype=np.int64)
        return self._initial_state(w, reference)

    def _get_state(self):
        return {k: v.copy() for k, v in self._state.items()}

    def _load_state(self, state):
        self._state = {k: np.array(v) for k, v in state.items()}
        self._state["w"] = self._state["w"].astype(np.float64)
        self.reward_model = LinearRewardModel(self._state["w"], self.rm_lr, self.rm_weight_decay)

    # The round --------------------------------------------------------------------------------
    def _check_action(self, action):
        batch, k, length = self.batch_shape, self.samples_per_round, self.seq_len
        fix = (
            f"pass integer token ids in [0, {self.vocab_size}) of shape {batch + (k * length,)} "
            f"(or {batch + (k, length)}): {k} sequences of {length} tokens"
        )
        try:
            array = np.asarray(action)
        except (TypeError, ValueError) as err:
            raise ValueError(f"action is not an array; {fix}") from err
        if array.dtype.kind not in "iu":
            raise ValueError(f"action must hold integer token ids, got dtype {array.dtype}; {fix}")
        if array.shape not in (batch + (k * length,), batch + (k, length)):
            raise ValueError(f"action has shape {array.shape}; {fix}")
        if array.size and (array.min() < 0 or array.max() >= self.vocab_size):
            bad = array[(array < 0) | (array >= self.vocab_size)]
            raise ValueError(f"action holds tokens outside the vocabulary (e.g. {int(bad.flat[0])}); {fix}")
        return array.astype(np.int64).reshape(batch + (k, length))

    def proxy(self, y: Any, reward: Any) -> Any:
        """The proxy objective of outputs whose RM score is ``reward``: the score itself (the
        token game has no action cost)."""
        return reward

    def proxy_grad(self, y: Any, reward_grad: Any) -> Any:
        """``grad_y`` of :meth:`proxy`, given ``grad_y r(y)``."""
        return reward_grad

    def reference_features(self) -> np.ndarray:
        """The features of the Bradley-Terry reference sequences, ``(*B, k, D)``."""
        return self.oracle.sequence_features(self._state["reference"])

    def _play(self, tokens):
        state, bt = self._state, self.rm_loss == "bradley-terry"
        w = state["w"]
        y = self.oracle.sequence_features(tokens)  # (*B, k, D)
        r = (w[..., None, :] * y).sum(-1)
        u = self.oracle.utility(y)
        labels = self._noisy_labels(u)
        if bt:
            y_ref = self.reference_features()
            r_ref = (w[..., None, :] * y_ref).sum(-1)
            u_ref = self.oracle.utility(y_ref)
            rm_error = (sigmoid(r - r_ref) - sigmoid(u - u_ref)).mean(-1)
            labels = sigmoid(labels - u_ref)  # the preference of each sequence over its reference
        else:
            y_ref = np.zeros_like(y)
            rm_error = (r - u).mean(-1)
        margin = r.mean(-1) - (w * self.optimal_features).sum(-1)
        # Gather the round's data, and retrain the copies whose buffer is full.
        k = self.samples_per_round
        slots = state["filled"][..., None] * k + np.arange(k)  # (*B, k)
        np.put_along_axis(state["buffer_y"], slots[..., None], y, axis=-2)
        np.put_along_axis(state["buffer_ref"], slots[..., None], y_ref, axis=-2)
        np.put_along_axis(state["buffer_label"], slots, labels, axis=-1)
        state["filled"] += 1
        retrain = state["filled"] >= self.retrain_every
        if np.any(retrain):
            trained = self._retrained(w, state["buffer_y"], state["buffer_ref"], state["buffer_label"])
            w[...] = np.where(retrain[..., None], trained, w)
            state["filled"][...] = np.where(retrain, 0, state["filled"])
        state["tokens"] = tokens.copy()
        info = {
            "true_utility": u.mean(-1),
            "proxy_reward": r.mean(-1),
            "rm_error": rm_error,
            "rm_margin_to_optimum": margin,
            "hack_share": (tokens < self.hack_tokens).mean((-2, -1)),
            "retrained": np.array(retrain, dtype=bool),
        }
        diverged = ~(np.abs(w) <= PARAM_BOUND).all(-1)  # NaN compares False
        return info["proxy_reward"], info, diverged

    def _retrained(self, w, buffer_y, buffer_ref, labels):
        """``w`` after ``retrain_every`` full-batch follower steps on the buffer: with ``m = 1``
        one step on the round's samples, and with any ``m`` each round's data moves the RM by
        the same amount to first order."""
        w = w.copy()
        for _ in range(self.retrain_every):
            w = (1.0 - self.rm_weight_decay) * w - self.rm_lr * self.loss_grad(w, buffer_y, labels, buffer_ref).mean(-2)
        return w

    def loss_grad(self, w: np.ndarray, y: np.ndarray, labels: np.ndarray, y_ref: np.ndarray | None = None) -> np.ndarray:
        """``grad_w`` of the follower's loss on each sample, ``(*B, n, D)`` for features ``y``
        ``(*B, n, D)``, labels ``(*B, n)`` and weights ``w`` ``(*B, D)``: regression's
        ``2 (w . y - label) y``, Bradley-Terry's ``(sigmoid(w . (y - y_ref)) - label) (y - y_ref)``
        (``label`` the preference of ``y`` over its reference ``y_ref``)."""
        if self.rm_loss == "regression":
            return 2.0 * ((w[..., None, :] * y).sum(-1) - labels)[..., None] * y
        delta = y - y_ref
        return (sigmoid((w[..., None, :] * delta).sum(-1)) - labels)[..., None] * delta

    def _observation(self):
        s = self._state
        tokens = s["tokens"].reshape(self.batch_shape + (self._action_size,))
        return np.concatenate([s["w"], tokens], axis=-1).astype(np.float32)

    # Public helpers ---------------------------------------------------------------------------
    def optimum(self) -> tuple[np.ndarray, float]:
        """The best sequence ``s*`` (token ids ``(L,)``) and its true utility ``U*``, exact."""
        return self.optimal_tokens.copy(), self.optimal_utility

    def split_observation(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Split an observation into the RM's weights ``(*B, D)`` and the last round's sequences
        ``(*B, k, L)`` (integer token ids)."""
        obs = check_finite_array(obs, np.shape(obs)[:-1] + (self.num_params + self._action_size,), "observation")
        tokens = obs[..., self.num_params :].astype(np.int64)
        return obs[..., : self.num_params], tokens.reshape(obs.shape[:-1] + (self.samples_per_round, self.seq_len))

    def token_credit(self, w: np.ndarray | None = None) -> np.ndarray:
        """The RM's credit per token, ``w . e_v``, ``(*B, V)``: the score one more of token ``v``
        adds to any sequence."""
        w = self._state["w"] if w is None else w
        return w @ self.features.T

    def token_value(self, tokens: np.ndarray) -> np.ndarray:
        """The true value per token at sequences ``tokens`` ``(*B, k, L)``: ``grad U . e_v`` at the
        round's mean features, ``(*B, V)``, the change of ``U`` per unit of token ``v``'s features."""
        y = self.oracle.sequence_features(tokens).mean(-2)
        return self.oracle.grad(y) @ self.features.T

    # Rendering --------------------------------------------------------------------------------
    def _render_record(self, output, info, copy):
        tokens = output if copy is None else output[copy]
        w = self._state["w"] if copy is None else self._state["w"][copy]
        # The credit of the RM that scored the round is gone after the update; the frame shows
        # the retrained RM's, the one the next round faces.
        row = [float(info[k] if copy is None else info[k][copy]) for k in self._render_columns]
        return np.concatenate([row, self.token_credit(w), self.token_value(tokens)])

    def _render_rows(self, log):
        v = self.vocab_size
        table = np.array(log, dtype=np.float64) if log else np.zeros((0, 2 + 2 * v))
        columns = {"true_utility": table[:, 0], "proxy_reward": table[:, 1]}
        return columns | {"credit": table[:, 2 : 2 + v], "value": table[:, 2 + v :]}

    def _make_renderer(self):
        from fpo_envs.render import TokenCreditPlot

        return TokenCreditPlot(self.vocab_size, self.hack_tokens, labels=(self._render_label(),))

    def _draw(self, log, copy, round_index):
        rows = self._render_rows(log)
        w = self._state["w"] if copy is None else self._state["w"][copy]
        credit = rows["credit"][-1] if len(log) else self.token_credit(w)
        value = rows["value"][-1] if len(log) else np.full(self.vocab_size, np.nan)
        return self._renderer.draw([credit], [value], [(rows["true_utility"], rows["proxy_reward"])], round_index)


class TokenRMEnv(TokenGame, FeedbackLoopEnv):
    """Iterative RLHF on token sequences: a policy's samples retrain the linear RM that scores them.

    ## Description
    Each round the policy (leader) submits ``k = samples_per_round`` sequences of ``L = seq_len``
    tokens from a vocabulary of ``V = vocab_size``. Token ``v`` has a fixed feature vector
    ``e_v`` in ``R^D`` (``D = feature_dims``), drawn once from ``vocab_seed``: its first
    ``signal_dims`` features are ``U(0, 1)`` signal, the rest ``N(0, noise_std^2)`` noise. A
    sequence's features are ``y(s) = sum_t e_(s_t)``.

    - **The oracle** (the human) is programmatic: ``U(s) = utility_peak * exp(-utility_width *
      ||y(s) - y*||^2)`` with ``y* = (ideal_value, ideal_value, 0, ...)``: the right amount of
      signal and no noise. ``optimum()`` returns the best sequence and ``U*``, exact (every
      count vector is scored: 75,582 at the defaults, ``U* = 9.87``); a uniform policy's
      sequences score about 4.
    - **The RM** (the follower) is linear in the features, ``r_w(s) = w . y(s)``, so its
      credit per token is ``w . e_v`` and ``grad_w r_w(s) = y(s)``. It starts at
      ``w = (1, 1, 0, ...) + N(0, rm_init_std^2)`` and is retrained on the policy's labelled
      sequences: by regression on ``U`` (``w <- (1 - rm_weight_decay) w - rm_lr * mean_i
      2 (w . y_i - U_i) y_i``), or with ``rm_loss="bradley-terry"`` on the preference
      ``sigmoid(U(s_i) - U(s'_i))`` of each sequence over a reference ``s'_i`` drawn from the
      uniform starting policy at reset (``mean_i (sigmoid(w . (y_i - y'_i)) - p_i)(y_i - y'_i)``).
    - **The blind spot, by construction.** The first ``hack_tokens`` tokens are *hacks*: they
      carry ``hack_signal`` more of each signal feature, and noise features of standard
      deviation ``hack_noise`` instead of ``noise_std``. The RM starts out crediting the signal
      features only, so it scores a hack token above every other; the noise a hack brings, which
      costs true utility, it learns only from sequences that contain it, and only along the
      directions those sequences span. A policy that maximises the RM's score fills its
      sequences with hacks, ``U`` peaks and falls, and the retrained RM ends up scoring the
      collapsed sequences above the optimum ``s*`` (``rm_margin_to_optimum > 0``): the
      linear game's geometry, on tokens.
    - ``retrain_every = m`` retrains the RM only every ``m`` rounds, on the ``m * k`` sequences
      of those rounds (``m`` full-batch steps, so each round's data moves it as much as in the
      online loop, ``m = 1``): between retrainings the RM is fixed, as iterated RLHF is run at
      scale, and the over-optimisation curve (proxy up, ``U`` down) appears within an iteration.

    ## Action Space
    ``MultiDiscrete([V] * (k * L))``: the round's ``k`` sequences, row after row (an action of
    shape ``(k, L)`` is taken too). An action that is not integer, of another shape, or with a
    token outside ``[0, V)`` raises ``ValueError`` naming the shape and range.

    ## Observation Space
    ``Box((D + k * L,), float32)``: ``[w, tokens]``, the RM's weights *after* this round's
    update (within ``±PARAM_BOUND = 1e6``) and the round's sequences as token ids (zeros at
    reset). ``split_observation`` splits it.

    ## Rewards
    The proxy, the RM's mean score of the round's sequences, ``mean_i w . y(s_i)``, with the RM
    before its update.

    ## Info
    ``true_utility`` (mean ``U`` of the round's sequences), ``proxy_reward`` (the reward),
    ``rm_error`` (mean ``r - U``; Bradley-Terry: mean ``sigmoid(r - r') - sigmoid(U - U')``),
    ``rm_margin_to_optimum`` (mean RM score of the round's sequences minus the RM's score of
    ``s*``, before the update: positive means the RM prefers the output to the ideal),
    ``hack_share`` (the share of hack tokens in the round's sequences), ``retrained`` (whether
    the RM was retrained this round), ``diverged``. The policy's KL divergence from its start,
    ``kl_to_base``, is the learner's to know: the token learners record it in their history.

    ## Starting State
    ``w`` as above, no sequences yet. ``reset(options={"rm_params": w})`` starts the RM from
    given weights.

    ## Episode End
    Truncation after 600 rounds (``max_episode_steps``). Termination when the RM update is not
    finite or leaves ``±PARAM_BOUND`` (``info["diverged"] = True``; the update is rolled back).

    ## Arguments
    Keyword-only; the fields of :class:`TokenParams` (the env's ``params``, each also an
    attribute), each checked by its kind (a ``TypeError`` or ``ValueError`` names it):

    - ``vocab_size`` (12), ``seq_len`` (8), ``samples_per_round`` (8): ``V``, ``L``, ``k``,
      each at least 1; ``C(V + L - 1, L)`` may not exceed
      :data:`fpo_envs.models.tokens.MAX_MULTISETS` (the exact optimum).
    - ``feature_dims`` (6), ``signal_dims`` (2): ``D`` and its signal part.
    - ``hack_tokens`` (4), ``hack_signal`` (0.5), ``hack_noise`` (1.0), ``noise_std`` (0.3):
      the blind spot's tokens and their features.
    - ``ideal_value`` (5.0), ``utility_peak`` (10.0), ``utility_width`` (0.05): the oracle's bump.
    - ``vocab_seed`` (0): the seed of the token features (fixed across episodes and seeds).
    - ``rm_loss`` (``"regression"`` or ``"bradley-terry"``), ``rm_lr`` (5e-4),
      ``rm_weight_decay`` (1e-4), ``rm_init_std`` (0.1): the follower. Bradley-Terry's
      gradients are about ten times smaller than regression's: give it a larger ``rm_lr``.
    - ``retrain_every`` (1): ``m``.
    - ``label_noise`` (0.0): Gaussian noise on each label ``U`` the RM is trained on, from the
      env's seeded generator (Bradley-Terry: on ``U`` before the preference is taken).
    - ``render_mode`` (None or ``"rgb_array"``; needs matplotlib): a labelled frame of the RM's
      credit per token ``w . e_v`` beside the true value per token (``grad U . e_v`` at the
      round's mean features), hack tokens marked, over a strip of ``U`` and the proxy by round
      (:class:`fpo_envs.render.TokenCreditPlot`).

    ## Example
    >>> import gymnasium as gym, fpo_envs
    >>> env = gym.make("FPO/TokenRM-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample() * 0 + 5)
    >>> round(float(info["true_utility"]), 3)
    0.0

    ## Version History
    - v0: initial version.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, *, render_mode: str | None = None, **settings: Any):
        self._init_env(render_mode, settings)


class TokenRMVectorEnv(TokenGame, FeedbackLoopVectorEnv):
    """``num_envs`` independent copies of :class:`TokenRMEnv` as one batched numpy state.

    Made by ``gym.make_vec("FPO/TokenRM-v0", num_envs=n)``; takes the same arguments as
    :class:`TokenRMEnv`. Actions have shape ``(num_envs, k * L)`` (or ``(num_envs, k, L)``); the
    ``rm_params`` reset option takes shape ``(D,)`` (shared) or ``(num_envs, D)`` (per copy).
    ``autoreset_mode`` and ``reset(options={"reset_mask": mask})`` are
    :class:`fpo_envs.core.FeedbackLoopVectorEnv`'s. Copy ``i`` seeded ``s`` equals the single env
    seeded ``s + i`` exactly (tested).
    """

    metadata = {**FeedbackLoopVectorEnv.metadata, "render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int | None = 600,
        render_mode: str | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        **settings: Any,
    ):
        self._init_vector_env(num_envs, max_episode_steps, render_mode, autoreset_mode, settings)
