"""The neural reward-model game ``FPO/NeuralRM-v0`` (ARCHITECTURE.md, section 2, NeuralRM)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from gymnasium.error import DependencyNotInstalled
from gymnasium.vector import AutoresetMode

from fpo_envs.core import FeedbackLoopEnv, FeedbackLoopVectorEnv
from fpo_envs.core.params import setting
from fpo_envs.games.vector import PARAM_BOUND, VectorGame, VectorParams
from fpo_envs.models.mlp import MLPRewardModel, mlp_num_params

try:
    import torch
except ImportError as err:  # pragma: no cover - exercised by the core-only test
    raise DependencyNotInstalled('FPO/NeuralRM-v0 needs torch: pip install torch (or "fpo-envs[torch]")') from err


@dataclasses.dataclass(frozen=True)
class NeuralParams(VectorParams):
    """The neural game's settings; each default is the paper's value (:class:`NeuralRMEnv`'s
    Arguments say what each does)."""

    dim: int = setting(10, "whole", "output dimension d")
    signal_dims: int = setting(2, "whole", "how many leading coordinates are signal")
    ideal_value: float = setting(2.5, "real", "each signal coordinate of the ideal y*")
    utility_peak: float = setting(10.0, "real", "U(y*)")
    utility_width: float = setting(0.2, "positive", "the bump's curvature")
    hidden: int = setting(32, "whole", "width of the RM's two hidden layers")
    rm_init_std: float = setting(0.1, "non-negative", "standard deviation of the RM's initial weights")
    rm_lr: float = setting(1e-3, "positive", "the RM's Adam step size")
    rm_weight_decay: float = setting(1e-3, "non-negative", "the RM's L2 weight decay")
    buffer_size: int = setting(50, "whole", "the replay buffer's size")
    samples_per_round: int = setting(5, "whole", "the outputs labelled per round")
    action_cost: float = setting(0.01, "non-negative", "c in the proxy objective")
    output_bound: float = setting(10.0, "positive", "bound of the action space")
    label_noise: float = setting(0.0, "non-negative", "standard deviation of the noise on each label")
    rm_ensemble: int = setting(1, "whole", "the number K of RMs")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.samples_per_round <= self.buffer_size:
            raise ValueError(f"samples_per_round must be in [1, buffer_size={self.buffer_size}], got {self.samples_per_round}")


def torch_device(device: Any) -> "torch.device":
    """``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device``) as a ``torch.device``
    that this machine has, or a ``ValueError`` that names the fix."""
    try:
        found = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be a torch device such as 'cpu', 'cuda' or 'cuda:1', got {device!r}") from err
    if found.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r}, but this torch sees no CUDA device (torch.cuda.is_available() is False): on a machine "
                "with an NVIDIA GPU install torch's CUDA build (on Linux, pip install torch==2.13.0 takes it from PyPI), "
                "or pass device='cpu'"
            )
        if found.index is not None and found.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif found.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r}, but torch.backends.mps.is_available() is False; pass device='cpu'")
    elif found.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={device!r}: the neural game runs on 'cpu', 'cuda' or 'mps'")
    return found


class NeuralGame(VectorGame):
    """The neural game's hooks, shared by the single and the vector environment (and the
    class learners recognise the game by)."""

    params_class = NeuralParams
    device = torch.device("cpu")
    """Where the RM's torch state lives (the vector env's ``device`` argument; the single env's is the CPU)."""

    @property
    def _rm_num_params(self) -> int:
        return mlp_num_params(self.dim, self.hidden)

    @property
    def _output_shape(self) -> tuple[int, ...]:
        return (self.samples_per_round, self.dim)

    def _draw_rm(self, rng):
        # Each member from its own draw, in order, so member 0 is the single RM of the same seed.
        draws = [MLPRewardModel.init_params(rng, self.dim, self.hidden, self.rm_init_std) for _ in range(self.rm_ensemble)]
        return draws[0] if self.rm_ensemble == 1 else np.stack(draws)

    def _initial_state(self, params, output):
        shape = self._member_shape
        members = shape[:-1]  # () for one RM, (K,) for an ensemble
        f32 = torch.float32
        return {
            "params": torch.as_tensor(params, dtype=f32),
            "exp_avg": torch.zeros(shape, dtype=f32),
            "exp_avg_sq": torch.zeros(shape, dtype=f32),
            "step": torch.zeros(members, dtype=f32),
            "buf_y": torch.zeros(*members, self.buffer_size, self.dim, dtype=f32),
            "buf_u": torch.zeros(*members, self.buffer_size, dtype=f32),
            "buf_count": torch.zeros(members, dtype=torch.int64),
            "output": torch.as_tensor(output, dtype=f32),
        }

    def _get_state(self):
        rm = self._stacked_rm
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
        state = {k: torch.as_tensor(v).to(self.device, copy=True) for k, v in state.items()}
        rm = MLPRewardModel(
            state["params"],
            self.dim,
            self.hidden,
            self.rm_lr,
            self.rm_weight_decay,
            opt_state={"exp_avg": state["exp_avg"], "exp_avg_sq": state["exp_avg_sq"], "step": state["step"]},
            buffer={"y": state["buf_y"], "u": state["buf_u"], "count": state["buf_count"]},
        )
        self._set_reward_model(rm)
        self._output = state["output"]

    def _snapshot(self):
        # A round writes the RM's parameters and Adam moments in place (MLPRewardModel.update)
        # and replaces the rest: copy the three into tensors kept for it, without allocating.
        rm = self._stacked_rm
        live = {"params": rm.params, "exp_avg": rm.opt_state["exp_avg"], "exp_avg_sq": rm.opt_state["exp_avg_sq"]}
        kept = getattr(self, "_kept", None)
        if kept is None or any(kept[k].shape != v.shape for k, v in live.items()):
            kept = self._kept = {k: torch.empty_like(v) for k, v in live.items()}
        for key, value in live.items():
            kept[key].copy_(value)
        buffer = rm.buffer
        return {
            **kept,
            "step": rm.opt_state["step"],
            "buf_y": buffer["y"],
            "buf_u": buffer["u"],
            "buf_count": buffer["count"],
            "output": self._output,
        }

    def _check_action(self, action):
        return torch.as_tensor(super()._check_action(action), dtype=torch.float32, device=self.device)

    def _play(self, y):
        rm, s = self.reward_model, self.signal_dims
        with torch.no_grad():
            u = self.oracle.label(y)  # (*B, k)
            proxy = self.proxy(y, rm.reward(y))
            mean = y.mean(-2)  # the round's outputs are reported at their mean
            r_mean, u_mean = rm.reward(mean), self.oracle.utility(mean)
            spread = rm.member_spread(mean) if self.rm_ensemble > 1 else None  # before the update, as rm_error
            if self.label_noise:
                noisy = self._noisy_labels(u.cpu().double().numpy())
                labels = torch.as_tensor(noisy, dtype=u.dtype, device=u.device)
            else:
                labels = u
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
            # One reduction over every copy settles the common case; per copy only if it fails.
            low, high = torch.aminmax(rm.params)  # a NaN makes both NaN, which fails the test
            if high <= PARAM_BOUND and low >= -PARAM_BOUND:
                diverged = np.zeros(rm.params.shape[:-1], dtype=bool)
            else:
                low, high = torch.aminmax(rm.params, dim=-1)
                diverged = (~((high <= PARAM_BOUND) & (low >= -PARAM_BOUND))).cpu().numpy()
        info = {k: v.cpu().double().numpy() for k, v in info.items()}
        return proxy.mean(-1).cpu().double().numpy(), info, diverged

    def _observation(self):
        return torch.cat([self.reward_model.params, self._output], dim=-1).cpu().numpy()  # float32, a new array

    # Rendering: the blind-spot map ---------------------------------------------------------
    _render_columns = VectorGame._render_columns + ("buffer_rm_error",)

    def _render_record(self, output, info, copy):
        mean = (output if copy is None else output[copy]).mean(0).cpu().numpy().astype(np.float64)
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
            reward=lambda y: rm.reward(torch.as_tensor(y, dtype=rm.params.dtype)).cpu().numpy(),
            # The dots are what the RM is trained on: its buffer of the latest samples.
            samples=buffer["y"][buffer["y"].shape[0] - count :].cpu().numpy().astype(np.float64),
            means=rows["table"][:, n:],
            utilities=rows["true_utility"],
            proxies=rows["proxy_reward"],
            buffer_error=float(rows["buffer_rm_error"][-1]) if len(log) else float("nan"),
        )
        with torch.no_grad():
            return self._renderer.draw([panel], round_index)


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
    Keyword-only. The settings below are the fields of :class:`NeuralParams` (the env's
    ``params``, each also an attribute of the env), each checked by its kind: a ``TypeError``
    or ``ValueError`` names the setting.

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

    def __init__(self, *, render_mode: str | None = None, **settings: Any):
        self._init_env(render_mode, settings)


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
    then differ in their last float32 bits (``tests/envs/test_neural.py``,
    ``test_vector_env_equals_single_envs``, holds the bounds and the kernels they were measured
    on). The RM's training being chaotic, a difference can grow over a long run, so compare a
    vector run with single runs statistically. Taking those products copy by copy would make
    the copies exact on one machine but costs markedly more time per round, so the batched
    kernels are kept.

    ``device`` (``"cpu"`` by default, ``"cuda"``, ``"cuda:1"``, a ``torch.device``) places the
    whole torch state, the RM's parameters, Adam moments and buffer, on that device
    (``gym.make_vec("FPO/NeuralRM-v0", num_envs=4096, device="cuda")``); the env's ``device``
    attribute says where, and the torch learners follow it. Actions may be numpy arrays or
    tensors; observations, rewards and ``info`` stay numpy arrays (copied to the CPU once per
    round). The initial RMs are drawn on the CPU from the copies' seeded generators, so a seed
    starts the same RMs on every device; the arithmetic after that is the device's own, so a
    GPU run agrees with a CPU run to float32 rounding and then statistically.
    ``scripts/gpu_benchmark.py`` measures seeds x rounds per second on a GPU against the CPU.
    A device this machine does not have is a ``ValueError`` that names the fix.
    """

    metadata = {**FeedbackLoopVectorEnv.metadata, "render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int | None = 4000,
        render_mode: str | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        device: Any = "cpu",
        **settings: Any,
    ):
        self.device = torch_device(device)
        self._init_vector_env(num_envs, max_episode_steps, render_mode, autoreset_mode, settings)
