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


@pytest.fixture(params=fpo_envs.ENV_IDS)
def env_id(request):
    return request.param


def small_action(env, rng: np.random.Generator):
    """A valid action whose scale keeps every game's RM stable (random but modest)."""
    space = env.action_space
    return (0.1 * space.high * rng.uniform(-1, 1, space.shape)).astype(space.dtype)
