import secrets

import gymnasium as gym
import numpy as np
import pytest

try:
    import torch
except ImportError:  # the linear game's tests run on the core alone
    torch = None
else:
    # Tests run in parallel processes: one thread each keeps them from fighting for cores.
    torch.set_num_threads(1)

import fpo_envs

TEXT_ID = "FPO/TextRM-v0"
WORDS = ("the", "answer", "is", "a", "short", "clear", "yes", "no", "water", "light", "because", "it")


@pytest.fixture(scope="session")
def tiny_text(tmp_path_factory):
    """Preset overrides pointing FPO/TextRM-v0 at tiny models built for the tests."""
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from tests.text_models import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(params=fpo_envs.ENV_IDS)
def env_id(request):
    return request.param


@pytest.fixture
def make_kwargs(env_id, request):
    """Constructor arguments for each registered env in unit tests (tiny models for text)."""
    return dict(request.getfixturevalue("tiny_text")) if env_id == TEXT_ID else {}


def small_action(env, rng: np.random.Generator):
    """A valid action whose scale keeps every game's RM stable (random but modest)."""
    space = env.action_space
    if env.spec is not None and env.spec.id == TEXT_ID:
        return " ".join(rng.choice(WORDS, size=int(rng.integers(1, 8))))
    return random_action(space, rng)


def random_action(space, rng: np.random.Generator, scale: float = 0.1):
    """A random action of a game's ``space``: token ids for a ``MultiDiscrete`` game (the token
    game), else floats within ``scale`` of the box's bounds."""
    if isinstance(space, gym.spaces.MultiDiscrete):
        return rng.integers(0, space.nvec).astype(space.dtype)
    return (scale * space.high * rng.uniform(-1, 1, space.shape)).astype(space.dtype)


def central_difference(f, y: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """``grad_y sum(f(y))`` by central differences, one element of ``y`` at a time (outputs
    may interact, as the samples of one round do through the RM's buffer)."""
    grad = np.zeros_like(y)
    for index in np.ndindex(*y.shape):
        step = np.zeros_like(y)
        step[index] = eps
        grad[index] = (f(y + step).sum() - f(y - step).sum()) / (2 * eps)
    return grad


RAY_TOKEN = secrets.token_hex(16)
"""The one Ray authentication token of this test process (Ray's token loader keeps the first
token it reads, so every Ray test of a process must use the same)."""


@pytest.fixture
def ray_token(monkeypatch):
    """Token authentication for the Ray instances a test starts: Ray's GCS and raylet listen on
    every interface whatever address they advertise, so nothing without the token can use them."""
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", RAY_TOKEN)
    return RAY_TOKEN


@pytest.fixture
def without_ray(monkeypatch):
    """This process as if the ``ray`` extra were not installed: importing ``ray`` fails."""
    import builtins

    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
