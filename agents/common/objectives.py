"""What a learner maximizes: the game's proxy minus ``gamma`` times a penalty (ARCHITECTURE.md, 5).

A *penalty* is a function of one :class:`Outputs`: the outputs being judged, with the
reward model's and the oracle's quantities at them computed on first use. Written with
array operations, one function serves every game: numpy arrays on the linear game, torch
tensors (differentiated by autograd) on the neural game, the RM's pooled features on the
text game, where the ``ref_*`` fields hold the reference response's values::

    import agents

    def overconfident_norm(z):
        # |r - U| ||grad_phi r||^2: the relaxed penalty without its sign
        return abs(z.reward - z.utility) * (z.grad_params * z.grad_params).sum(-1)

    agents.register_penalty("abs-relaxed", overconfident_norm)
    agents.make("rlhf", env, penalty="abs-relaxed", gamma=0.1)

The built-in penalties are ``none``, ``practical`` and ``relaxed``
(:mod:`agents.common.penalties`). A penalty may also give its gradient with respect to the
outputs (numpy, for the linear game's gradient leader); without one, that leader takes
central differences of the penalty.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from agents.common import penalties
from agents.common.registration import ReadOnlyRegistry, definition

PAPER_GAMMA: Mapping[str, float] = MappingProxyType({"linear": 0.1, "neural": 0.005, "text": 10.0, "token": 0.1})
"""The paper's penalty weight ``gamma`` per game: the default of every family, learner and
wrapper on that game (``gamma=None``). The token game is not the paper's: its value was chosen
by measurement on seeds its reported figures do not use."""


class Outputs:
    """Outputs ``y`` under one reward model and oracle, with their quantities computed once.

    Attributes:
        y: the outputs, ``(*B, d)`` or ``(*B, k, d)`` (numpy or torch); text: the responses.
        rm: the reward model that scores them; oracle: the human's true utility.
        reward: ``r_phi(y)``, shape ``(*B,)`` or ``(*B, k)``.
        grad_params: ``grad_phi r_phi(y)``, the parameter axis last.
        utility: ``U(y)``; a constant label when the oracle's gradient is off (detached in
            torch, frozen at the base point under finite differences).
        ref_reward, ref_grad_params, ref_utility: the same at the reference output of a
            Bradley-Terry game (the text game); ``None`` in the regression games.
    """

    ref_reward = ref_grad_params = ref_utility = None

    def __init__(self, y: Any, rm: Any, oracle: Any, oracle_gradient: bool = True, utility: Any = None):
        self.y, self.rm, self.oracle = y, rm, oracle
        self.oracle_gradient = oracle_gradient
        self._cache: dict[str, Any] = {} if utility is None else {"utility": utility}

    def _get(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @property
    def reward(self) -> Any:
        """``r_phi(y)``, shape ``(*B,)`` or ``(*B, k)``."""
        return self._get("reward", lambda: self.rm.reward(self.y))

    @property
    def grad_params(self) -> Any:
        """``grad_phi r_phi(y)``, the parameter axis last (with the reward, in one pass where the
        RM has one)."""
        if "grad_params" not in self._cache:
            if hasattr(self.rm, "reward_and_grad_params"):
                # One pass gives both; the reward from it is the one the proxy then uses.
                r, g = self.rm.reward_and_grad_params(self.y)
                self._cache.setdefault("reward", r)
                self._cache["grad_params"] = g
            else:
                self._cache["grad_params"] = self.rm.grad_params(self.y)
        return self._cache["grad_params"]

    @property
    def grad_sqnorm(self) -> Any:
        """``||grad_phi r_phi(y)||^2``, from the RM's closed form where it has one (the MLP),
        else from :attr:`grad_params`."""
        if "grad_sqnorm" not in self._cache:
            if "grad_params" not in self._cache and hasattr(self.rm, "reward_and_grad_sqnorm"):
                r, n = self.rm.reward_and_grad_sqnorm(self.y)
                self._cache.setdefault("reward", r)
                self._cache["grad_sqnorm"] = n
            else:
                g = self.grad_params
                self._cache["grad_sqnorm"] = (g * g).sum(-1)
        return self._cache["grad_sqnorm"]

    @property
    def utility(self) -> Any:
        """``U(y)``, detached (torch) when the oracle's gradient is off."""

        def compute():
            u = self.oracle.utility(self.y)
            return u if self.oracle_gradient or not hasattr(u, "detach") else u.detach()

        return self._get("utility", compute)


PenaltyFn = Callable[[Outputs], Any]
PenaltyGrad = Callable[[Outputs], Any]


@dataclass(frozen=True)
class Penalty:
    """A registered penalty: its value, and optionally its gradient with respect to ``y``.

    Attributes:
        name: the id configs refer to (``penalty="..."``).
        fn: ``Outputs -> (*B,)`` penalty values.
        grad: ``Outputs -> (*B, d)``, ``grad_y`` of ``fn`` in numpy, honouring
            ``Outputs.oracle_gradient``; ``None``: a learner that needs it differentiates ``fn``.
    """

    name: str
    fn: PenaltyFn
    grad: PenaltyGrad | None = None


def _practical(z: Outputs) -> Any:
    if z.ref_grad_params is None:  # regression: ||g||^2
        return z.grad_sqnorm
    return penalties.practical_penalty(z.grad_params, z.ref_grad_params)


def _relaxed(z: Outputs) -> Any:
    if z.ref_grad_params is None:  # regression: ||g||^2 (r - U)
        return z.grad_sqnorm * penalties.overconfidence(z.reward, z.utility)
    residual = penalties.overconfidence(z.reward, z.utility, z.ref_reward, z.ref_utility)
    return penalties.relaxed_penalty(z.grad_params, residual, z.ref_grad_params)


def _analytic_grad(kind: str) -> PenaltyGrad:
    def grad(z: Outputs) -> np.ndarray:
        return penalties.penalty_grad(kind, z.rm, z.oracle, z.y, z.oracle_gradient, value=False)[1]

    return grad


_penalties: dict[str, Penalty] = {
    "practical": Penalty("practical", _practical, _analytic_grad("practical")),
    "relaxed": Penalty("relaxed", _relaxed, _analytic_grad("relaxed")),
}

PENALTIES: Mapping[str, Penalty] = ReadOnlyRegistry(
    _penalties,
    "agents.PENALTIES",
    "agents.register_penalty(name, fn) to add or replace a penalty, agents.unregister_penalty(name) to remove one of yours",
)
"""Registered penalties by name (``none`` is the absence of one); read-only: :func:`register_penalty`,
:func:`unregister_penalty`."""


BUILTIN_PENALTIES = frozenset(_penalties)
"""The penalties this package defines: replaced only with ``override=True``."""


def register_penalty(name: str, fn: PenaltyFn, grad: PenaltyGrad | None = None, override: bool = False) -> Penalty:
    """Register ``fn`` as the penalty ``name`` so configs can name it (``penalty=name``).

    Args:
        name: the id. Registering the same functions again (a module imported twice) changes
            nothing; other functions under a built-in name (``practical``, ``relaxed``) are a
            ``ValueError`` unless ``override``; under a user's name they replace it, with a warning.
        fn: ``Outputs -> (*B,)``, written with array operations that numpy and torch share.
        grad: optional ``Outputs -> (*B, d)`` gradient with respect to ``y`` (numpy).
        override: replace whatever is registered under ``name``, built-in or not, without a warning.

    Returns:
        the registered :class:`Penalty`.
    """
    if not isinstance(name, str) or not name or name == "none":
        raise ValueError(f"a penalty name must be a non-empty string other than 'none', got {name!r}")
    if not callable(fn) or (grad is not None and not callable(grad)):
        raise TypeError("fn (and grad, if given) must be callables taking an agents.Outputs")
    old = _penalties.get(name)
    same = old is not None and (definition(old.fn), definition(old.grad)) == (definition(fn), definition(grad))
    if old is not None and not same and not override:
        if name in BUILTIN_PENALTIES:
            raise ValueError(
                f"{name!r} is a built-in penalty (fpo-{name} and every learner with penalty={name!r} use it): "
                "register yours under another name, or pass override=True to replace the built-in one"
            )
        warnings.warn(f"replacing the penalty {name!r} (pass override=True to replace it without this warning)", stacklevel=2)
    _penalties[name] = Penalty(name, fn, grad)
    return _penalties[name]


def unregister_penalty(name: str) -> Penalty:
    """Remove the penalty ``name`` that you registered; return it.

    Raises:
        ValueError: ``name`` is not registered, or is a built-in penalty (replace one with
            ``register_penalty(..., override=True)``;
            :func:`agents.common.registration.temporary_registrations` restores it).
    """
    if name not in _penalties:
        raise ValueError(f"no penalty {name!r} is registered; registered: {sorted(_penalties)}")
    if name in BUILTIN_PENALTIES:
        raise ValueError(
            f"{name!r} is a built-in penalty and stays registered; to try a replacement, "
            "register_penalty(..., override=True) inside agents.common.registration.temporary_registrations()"
        )
    return _penalties.pop(name)


def get_penalty(name: str) -> Penalty | None:
    """The registered penalty ``name`` (``None`` for ``"none"``); a clear error when unknown."""
    if name == "none":
        return None
    if name not in PENALTIES:
        raise ValueError(
            f"unknown penalty {name!r}; registered: {['none', *sorted(PENALTIES)]} "
            "(register your own with agents.register_penalty(name, fn))"
        )
    return PENALTIES[name]


def resolve_gamma(penalty: str, gamma: float | None, default: float | None) -> float:
    """The penalty weight a config means: ``None`` is the family's paper value (0 without a
    penalty); a negative or non-finite weight, or a weight on no penalty, is an error, and so
    is ``None`` on a game the paper gives no value for (``default=None``)."""
    get_penalty(penalty)
    if gamma is None:
        if penalty != "none" and default is None:
            raise ValueError(f"the paper gives no penalty weight for this game (its values: {dict(PAPER_GAMMA)}); pass gamma=...")
        return 0.0 if penalty == "none" else float(default)
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.integer, np.floating)):
        raise TypeError(f"gamma must be a number, got {gamma!r}")
    if not math.isfinite(gamma) or gamma < 0:
        raise ValueError(f"gamma must be a finite number >= 0, got {gamma}")
    if penalty == "none" and gamma != 0:
        raise ValueError(f"gamma={gamma} has no effect with penalty='none'; choose a penalty, e.g. penalty='practical'")
    return float(gamma)


def check_knob(name: str, value: Any, minimum: float | None = None, strict: bool = False) -> None:
    """A learner's own setting (``anchor``, ``cap``, ``beta``, ...): a finite real number, at
    least ``minimum`` (above it, with ``strict``); a ``ValueError`` naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum:g}, got {value!r}")


def check_no_penalty(config: Any, learner: str) -> None:
    """A learner whose objective replaces FPO's takes no penalty on top."""
    if config.penalty != "none":
        raise ValueError(f"{learner} has its own objective; penalty must be 'none', got {config.penalty!r}")


@dataclass(frozen=True)
class ObjectiveConfig:
    """The objective part of a learner's config, shared by every policy family."""

    paper_gamma: ClassVar[float] = PAPER_GAMMA["linear"]
    """The family's paper value of ``gamma``, used when ``gamma`` is ``None``: a family sets
    its game's, ``PAPER_GAMMA[game]``."""

    penalty: str = "none"
    """A registered penalty (``none``, ``practical``, ``relaxed``, or your own)."""
    gamma: float | None = None
    """Its weight in ``proxy - gamma * R`` (``None``: the family's paper value; 0 without a penalty)."""

    def __post_init__(self):
        object.__setattr__(self, "gamma", resolve_gamma(self.penalty, self.gamma, self.paper_gamma))


class Objective:
    """``J(y) = proxy(y) - gamma * R(y)`` for one game, built once from a learner's config.

    Args:
        game: the unwrapped env; its ``proxy(y, reward)`` is the objective's first term.
        penalty: a registered penalty name or ``"none"``.
        gamma: its weight (already resolved).
        oracle_gradient: whether ``grad_y U`` flows where the penalty uses ``U``.
    """

    def __init__(self, game: Any, penalty: str, gamma: float, oracle_gradient: bool = True):
        self.game = game
        self.penalty = get_penalty(penalty)
        self.gamma = gamma
        self.oracle_gradient = oracle_gradient

    def outputs(self, y: Any, rm: Any, utility: Any = None) -> Outputs:
        """:class:`Outputs` of ``y`` under ``rm`` and the game's oracle, with the objective's
        ``oracle_gradient``; ``utility`` fixes ``U`` (else it is computed from ``y``)."""
        return Outputs(y, rm, self.game.oracle, self.oracle_gradient, utility)

    def penalty_value(self, z: Outputs) -> Any:
        """``R`` at the outputs (zeros without a penalty)."""
        if self.penalty is None:
            return z.reward * 0.0
        return self.penalty.fn(z)

    def value(self, y: Any, rm: Any, utility: Any = None) -> Any:
        """``J`` per output; ``utility`` fixes ``U`` inside the penalty (finite differences)."""
        z = self.outputs(y, rm, utility)
        if self.penalty is None:
            return self.game.proxy(y, z.reward)
        penalty = self.penalty.fn(z)  # first: a joint reward/gradient pass caches the reward the proxy uses
        return self.game.proxy(y, z.reward) - self.gamma * penalty

    def grad_numpy(self, y: np.ndarray, rm: Any, eps: float = 1e-6) -> np.ndarray:
        """``grad_y J`` in numpy: the proxy's gradient, and the penalty's analytic gradient
        where registered, else its central differences (step ``eps``, float64)."""
        grad = self.game.proxy_grad(y, rm.grad_input(y))
        if self.penalty is None:
            return grad
        if self.penalty.grad is not None:
            return grad - self.gamma * self.penalty.grad(self.outputs(y, rm))
        return grad - self.gamma * self._central_difference(y, rm, eps)

    def _central_difference(self, y: np.ndarray, rm: Any, eps: float) -> np.ndarray:
        d = y.shape[-1]
        steps = eps * np.eye(d)
        shifted = np.concatenate([y[..., None, :] + steps, y[..., None, :] - steps], axis=-2)  # (*B, 2d, d)
        rm_b = rm.replace(rm.params[..., None, :])
        utility = None
        if not self.oracle_gradient:
            utility = np.broadcast_to(self.game.oracle.utility(y)[..., None], shifted.shape[:-1])
        values = np.asarray(self.penalty.fn(self.outputs(shifted, rm_b, utility)), dtype=np.float64)
        return (values[..., :d] - values[..., d:]) / (2 * eps)
