"""The neural reward-model game ``FPO/NeuralRM-v0`` (ARCHITECTURE.md, section 2, NeuralRM)."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.error import DependencyNotInstalled
from gymnasium.vector import AutoresetMode

from fpo_envs.core import FeedbackLoopEnv, FeedbackLoopVectorEnv
from fpo_envs.core.checks import check_bounded_array, check_settings, game_arguments
from fpo_envs.games.vector import PARAM_BOUND, CostProxy, per_copy
from fpo_envs.models.ensemble import RewardModelEnsemble
from fpo_envs.models.mlp import MLPRewardModel, mlp_num_params
from fpo_envs.models.oracles import bump_oracle

try:
    import torch
except ImportError as err:  # pragma: no cover - exercised by the core-only test
    raise DependencyNotInstalled('FPO/NeuralRM-v0 needs torch: pip install torch (or "fpo-envs[torch]")') from err


class NeuralGame(CostProxy):
    """The neural game's hooks, shared by the single and the vector environment (and the
    class learners recognise the game by)."""

    reset_options = ("rm_params", "output")

    def _setup(
        self,
        dim,
        signal_dims,
        ideal_value,
        utility_peak,
        utility_width,
        hidden,
        rm_init_std,
        rm_lr,
        rm_weight_decay,
        buffer_size,
        samples_per_round,
        action_cost,
        output_bound,
        label_noise=0.0,
        rm_ensemble=1,
    ):
        check_settings(
            {"utility_width": utility_width, "rm_lr": rm_lr, "output_bound": output_bound},
            {
                "rm_weight_decay": rm_weight_decay,
                "rm_init_std": rm_init_std,
                "action_cost": action_cost,
                "label_noise": label_noise,
            },
            integers={
                "dim": dim,
                "signal_dims": signal_dims,
                "hidden": hidden,
                "buffer_size": buffer_size,
                "samples_per_round": samples_per_round,
                "rm_ensemble": rm_ensemble,
            },
            real={"ideal_value": ideal_value, "utility_peak": utility_peak},
        )
        if not samples_per_round <= buffer_size:
            raise ValueError(f"samples_per_round must be in [1, buffer_size={buffer_size}], got {samples_per_round}")
        self.oracle = bump_oracle(dim, signal_dims, ideal_value, utility_peak, utility_width, output_bound)
        self.dim, self.signal_dims, self.hidden = dim, signal_dims, hidden
        self.samples_per_round, self.buffer_size = samples_per_round, buffer_size
        self.action_cost, self.rm_init_std = action_cost, rm_init_std
        self.label_noise = float(label_noise)
        self.rm_ensemble = rm_ensemble
        self._rm_lr, self._rm_weight_decay = rm_lr, rm_weight_decay
        self.single_action_space = spaces.Box(-output_bound, output_bound, (samples_per_round, dim), np.float32)
        self.num_params = p = mlp_num_params(dim, hidden) * rm_ensemble
        low = np.concatenate([np.full(p, -PARAM_BOUND), np.full(dim, -output_bound)]).astype(np.float32)
        self.single_observation_space = spaces.Box(low, -low, dtype=np.float32)
        # Until the first reset the RM is all zeros, so it can be inspected.
        zeros = np.zeros(self._member_shape)
        self._load_state(_stack_batch(self._draw_initial(None, {"rm_params": zeros}, None), self.batch_shape))

    @property
    def _member_shape(self) -> tuple[int, ...]:
        """One copy's RM parameters: ``(p,)``, or ``(K, p)`` for an ensemble of ``K``."""
        p = mlp_num_params(self.dim, self.hidden)
        return (p,) if self.rm_ensemble == 1 else (self.rm_ensemble, p)

    def optimum(self) -> tuple[np.ndarray, float]:
        """The human ideal ``y*`` and its true utility ``U(y*)``."""
        return self.oracle.optimum()

    def _draw_initial(self, rng, options, index):
        shape, d = self._member_shape, self.dim
        members = shape[:-1]  # () for one RM, (K,) for an ensemble
        if "rm_params" in options:
            params = per_copy(options["rm_params"], shape, index, "rm_params")
        else:
            # Each member from its own draw, in order, so member 0 is the single RM of the same seed.
            draws = [MLPRewardModel.init_params(rng, d, self.hidden, self.rm_init_std) for _ in range(self.rm_ensemble)]
            params = draws[0] if not members else np.stack(draws)
        bound = self.single_action_space.high.max()
        output = per_copy(options["output"], (d,), index, "output", bound) if "output" in options else np.zeros(d)
        f32 = torch.float32
        return {
            "params": torch.as_tensor(params, dtype=f32),
            "exp_avg": torch.zeros(shape, dtype=f32),
            "exp_avg_sq": torch.zeros(shape, dtype=f32),
            "step": torch.zeros(members, dtype=f32),
            "buf_y": torch.zeros(*members, self.buffer_size, d, dtype=f32),
            "buf_u": torch.zeros(*members, self.buffer_size, dtype=f32),
            "buf_count": torch.zeros(members, dtype=torch.int64),
            "output": torch.as_tensor(output, dtype=f32),
        }

    def _get_state(self):
        rm = self.reward_model
        rm = rm.stacked if isinstance(rm, RewardModelEnsemble) else rm
        state = {
            "params": rm.params,
            **rm.opt_state,
            "buf_y": rm.buffer["y"],
            "buf_u": rm.buffer["u"],
            "buf_count": rm.buffer["count"],
            "output": self._output,
        }
        return {k: v.clone() for k, v in state.items()}

    def _load_state(self, state):
        state = {k: v.clone() for k, v in state.items()}
        rm = MLPRewardModel(
            state["params"],
            self.dim,
            self.hidden,
            self._rm_lr,
            self._rm_weight_decay,
            opt_state={"exp_avg": state["exp_avg"], "exp_avg_sq": state["exp_avg_sq"], "step": state["step"]},
            buffer={"y": state["buf_y"], "u": state["buf_u"], "count": state["buf_count"]},
        )
        self.reward_model = rm if self.rm_ensemble == 1 else RewardModelEnsemble(rm)
        self._output = state["output"]

    def _check_action(self, action):
        shape = self.batch_shape + (self.samples_per_round, self.dim)
        y = check_bounded_array(action, shape, float(self.single_action_space.high.max()), "action")
        return torch.as_tensor(y, dtype=torch.float32)

    def _play(self, y):
        rm, s = self.reward_model, self.signal_dims
        with torch.no_grad():
            u = self.oracle.label(y)  # (*B, k)
            proxy = self.proxy(y, rm.reward(y))
            mean = y.mean(-2)  # the round's outputs are reported at their mean
            r_mean, u_mean = rm.reward(mean), self.oracle.utility(mean)
            spread = rm.member_spread(mean) if self.rm_ensemble > 1 else None  # before the update, as rm_error
            labels = u if not self.label_noise else torch.as_tensor(self._noisy_labels(u.double().numpy()), dtype=u.dtype)
            rm.update(y, labels)
            self._output = mean
            info = {
                "true_utility": u_mean,
                "proxy_reward": self.proxy(mean, r_mean),
                "signal_norm": mean[..., :s].norm(dim=-1),
                "noise_norm": mean[..., s:].norm(dim=-1),
                "rm_error": r_mean - u_mean,
                "buffer_rm_error": rm.buffer_error(),
            }
            if self.rm_ensemble > 1:
                info["ensemble_spread"] = spread
            diverged = ~(rm.params.abs() <= PARAM_BOUND).all(-1)
        info = {k: v.double().numpy() for k, v in info.items()}
        return proxy.mean(-1).double().numpy(), info, diverged.numpy()

    def _observation(self):
        return torch.cat([self.reward_model.params, self._output], dim=-1).numpy().astype(np.float32)

    # Rendering: the blind-spot map ---------------------------------------------------------
    _render_columns = FeedbackLoopEnv._render_columns + ("buffer_rm_error",)

    def _render_record(self, output, info, copy):
        mean = (output if copy is None else output[copy]).mean(0).numpy().astype(np.float64)
        return np.concatenate([super()._render_record(output, info, copy), mean])

    def _make_renderer(self):
        from fpo_envs.render import BlindSpotMap

        return BlindSpotMap(self.oracle, self.signal_dims, labels=(self._render_label(),))

    def _draw(self, log, copy, round_index):
        from fpo_envs.render import BlindSpotPanel

        live = self.reward_model
        rm = live if copy is None else live.replace(live.params[copy])
        buffer = live.buffer if copy is None else {k: v[copy] for k, v in live.buffer.items()}
        count = int(buffer["count"])
        rows = self._render_rows(log)
        n = len(self._render_columns)
        panel = BlindSpotPanel(
            reward=lambda y: rm.reward(torch.as_tensor(y, dtype=rm.params.dtype)).numpy(),
            # The dots are what the RM is trained on: its buffer of the latest samples.
            samples=buffer["y"][buffer["y"].shape[0] - count :].numpy().astype(np.float64),
            means=rows["table"][:, n:],
            utilities=rows["true_utility"],
            proxies=rows["proxy_reward"],
            buffer_error=float(rows["buffer_rm_error"][-1]) if len(log) else float("nan"),
        )
        with torch.no_grad():
            return self._renderer.draw([panel], round_index)

    def split_observation(self, obs):
        """Split an observation into the RM's flat parameters and the last round's mean output."""
        obs = np.asarray(obs)
        return obs[..., : self.num_params], obs[..., self.num_params :]


def _stack_batch(state: dict, batch_shape: tuple[int, ...]) -> dict:
    return {k: v.expand(batch_shape + tuple(v.shape)).clone() for k, v in state.items()}


class NeuralRMEnv(NeuralGame, FeedbackLoopEnv):
    """The neural blind-spot game: an MLP reward model retrained with Adam on a replay buffer.

    ## Description
    A stochastic policy emits outputs ``y`` in ``R^d``; the first ``signal_dims``
    coordinates are signal, the rest noise. The true utility is
    ``U(y) = 10 exp(-0.2 ||y - y*||^2)`` with ``y* = (2.5, 2.5, 0, ..., 0)``. The RM is an
    MLP ``d -> 32 -> 32 -> 1`` (Softplus; weights ``N(0, 0.1^2)``, biases 0). Each round the
    oracle labels this round's samples, they enter a FIFO buffer (50), and the RM takes one
    Adam step (lr 1e-3, L2 weight decay 1e-3) on the MSE over the buffer. The RM's blind
    spots are not visible in closed form: where the policy goes, the RM learns; where it
    does not, the RM extrapolates.

    ## Action Space
    ``Box(-output_bound, output_bound, (samples_per_round, dim), float32)``: this round's
    fresh policy samples (5 of them in ``R^10`` by default). Wrong shape, NaN/inf, out of
    bounds, or not of floats (an integer, bool or complex array) raise ``ValueError``.

    ## Observation Space
    ``Box((p + dim,), float32)``: the RM's flat parameters after this round's update
    (``p = 1441`` at the defaults; order ``W1 b1 W2 b2 W3 b3``, within ``±1e6``) and the
    mean of the round's outputs (at reset: the starting output). ``split_observation`` splits it.

    ## Rewards
    The proxy: the mean over the round's samples of ``r(y) - action_cost * ||y||^2``,
    scored by the RM before its update.

    ## Info
    Measured at the mean ``y_bar`` of the round's samples: ``true_utility`` ``U(y_bar)``,
    ``proxy_reward`` ``r(y_bar) - c ||y_bar||^2``, ``signal_norm`` ``||y_bar[:2]||``,
    ``noise_norm`` ``||y_bar[2:]||``, ``rm_error`` ``r(y_bar) - U(y_bar)``; and
    ``buffer_rm_error``, the mean ``|r - U|`` over the buffer after the update; ``diverged``.

    ## Starting State
    A fresh RM from ``np_random``, zero Adam state, an empty buffer, starting output 0.
    ``reset(options={"rm_params": flat, "output": y})`` starts from given values.

    ## Episode End
    Truncation after 4000 rounds (``max_episode_steps``); termination when the RM's update
    is not finite or leaves ``±1e6`` (``info["diverged"]``; the update is rolled back).

    ## Determinism
    The RM runs in float32 on the CPU. With a seed and the same torch thread count, runs
    repeat exactly; a different ``torch.set_num_threads`` can change the float results
    (reductions are split differently), and so the trajectory.

    ## Arguments
    - ``dim`` (10), ``signal_dims`` (2), ``ideal_value`` (2.5): the output space and ``y*``.
    - ``utility_peak`` (10.0), ``utility_width`` (0.2): ``U``'s height and curvature.
    - ``hidden`` (32): width of the RM's two hidden layers; ``rm_init_std`` (0.1).
    - ``rm_lr`` (1e-3), ``rm_weight_decay`` (1e-3): the RM's Adam.
    - ``buffer_size`` (50), ``samples_per_round`` (5): the replay buffer and the batch labelled per round.
    - ``action_cost`` (0.01): ``c`` in the proxy. ``output_bound`` (10.0): the action bounds.
    - ``label_noise`` (0.0): standard deviation of Gaussian noise on each label pushed into the
      buffer, from the env's seeded generator (``info`` stays noise-free; 0 draws nothing).
    - ``rm_ensemble`` (1): the number ``K`` of RMs. With ``K >= 2`` the env trains an ensemble
      (:class:`fpo_envs.models.ensemble.RewardModelEnsemble`): ``K`` MLPs, each initialised from its own
      draw (member 0 is the single RM of the same seed) and each taking its own Adam step on the
      same buffer every round. ``reward_model`` is the ensemble; the reward, ``rm_error`` and the
      buffer error use the members' mean; ``info["ensemble_spread"]`` is the members' standard
      deviation at the round's mean output; the observation carries all ``K * p`` parameters.
      One RM (the default) is the game as before.
    - ``render_mode`` (None or ``"rgb_array"``; needs matplotlib): a labelled frame of the RM's
      blind spot (:class:`fpo_envs.render.BlindSpotMap`): its error ``r - U`` on the plane
      through the ideal and the policy's noise direction (x: the component along the ideal's
      signal, y: the noise magnitude), the true utility's contours, the samples in the RM's
      buffer (what it is trained on), the recent rounds' mean outputs, the round, ``U`` and the
      proxy at this round's mean output, the buffer error, and a strip of ``U`` and the proxy by
      round.

    ## Example
    >>> import gymnasium as gym, numpy as np, fpo_envs
    >>> env = gym.make("FPO/NeuralRM-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape
    (1451,)
    >>> obs, reward, terminated, truncated, info = env.step(np.zeros((5, 10), np.float32))
    >>> round(info["true_utility"], 3)
    0.821

    ## Version History
    - v0: initial version.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        dim: int = 10,
        signal_dims: int = 2,
        ideal_value: float = 2.5,
        utility_peak: float = 10.0,
        utility_width: float = 0.2,
        hidden: int = 32,
        rm_init_std: float = 0.1,
        rm_lr: float = 1e-3,
        rm_weight_decay: float = 1e-3,
        buffer_size: int = 50,
        samples_per_round: int = 5,
        action_cost: float = 0.01,
        output_bound: float = 10.0,
        label_noise: float = 0.0,
        rm_ensemble: int = 1,
        render_mode: str | None = None,
    ):
        self._setup(
            dim,
            signal_dims,
            ideal_value,
            utility_peak,
            utility_width,
            hidden,
            rm_init_std,
            rm_lr,
            rm_weight_decay,
            buffer_size,
            samples_per_round,
            action_cost,
            output_bound,
            label_noise,
            rm_ensemble,
        )
        self._set_render_mode(render_mode)
        self.action_space = self.single_action_space
        self.observation_space = self.single_observation_space


class NeuralRMVectorEnv(NeuralGame, FeedbackLoopVectorEnv):
    """``num_envs`` independent copies of :class:`NeuralRMEnv`, one stacked torch state.

    Made by ``gym.make_vec("FPO/NeuralRM-v0", num_envs=n)``; same arguments as
    :class:`NeuralRMEnv`; ``render()`` returns one frame per copy, each the one its single env
    draws. Actions ``(num_envs, samples_per_round,
    dim)``; ``reward_model.params`` has shape ``(num_envs, p)`` and every RM method is batched.
    ``autoreset_mode`` (Gymnasium's ``NEXT_STEP`` by default, ``SAME_STEP``, ``DISABLED``) and
    ``reset(options={"reset_mask": mask})`` are :class:`fpo_envs.core.FeedbackLoopVectorEnv`'s.

    Copy ``i`` seeded ``s`` starts exactly as the single env seeded ``s + i`` (the same draws)
    and plays the same float32 operations, but not bit for bit: the matrix products with one
    row or one column (the output layer ``h2 @ w3^T`` of every forward pass, and the layers at
    the round's mean output) run here as batched ``torch.bmm`` and in the single env as
    ``torch.mm``, and the CPU kernels behind them (MKL's gemm and gemv, torch's loop for small
    matrices) sum the dot products in different orders. The observation, reward and ``info``
    then differ in their last float32 bits: over 5 rounds of 3 copies, on the default kernels,
    ``ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE`` and ``MKL_ENABLE_INSTRUCTIONS=AVX2``, by
    up to 3e-8 in the observation, 9e-8 in the reward and 2.4e-7 in ``info`` (up to 1.5e-7,
    3.6e-7 and 4.8e-7 over 200 rounds; ``tests/envs/test_neural.py`` holds the bounds). The
    RM's training being chaotic, a difference can grow over a long run, so compare a vector
    run with single runs statistically. Taking those products copy by copy makes the copies
    exact on the machine measured but costs 35-60% more time per round at 64 copies, so the
    batched kernels are kept.
    """

    metadata = {**FeedbackLoopVectorEnv.metadata, "render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int | None = 4000,
        render_mode: str | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        **kwargs: Any,
    ):
        params = game_arguments(NeuralRMEnv, kwargs)
        FeedbackLoopVectorEnv.__init__(self, num_envs, max_episode_steps, render_mode, autoreset_mode)
        self._setup(**params)
        n = num_envs
        a, o = self.single_action_space, self.single_observation_space
        self.action_space = spaces.Box(
            np.broadcast_to(a.low, (n, *a.shape)), np.broadcast_to(a.high, (n, *a.shape)), dtype=np.float32
        )
        self.observation_space = spaces.Box(
            np.broadcast_to(o.low, (n, *o.shape)), np.broadcast_to(o.high, (n, *o.shape)), dtype=np.float32
        )
