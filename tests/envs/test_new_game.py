"""A new vector game is one module and one registration line (``tests/envs/example_game.py``),
and a built-in family runs on it after one ``agents.register`` call.

Run in a fresh interpreter, so the example's registrations stay out of this test session's
registries (which other tests parametrize over).
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CODE = """
import warnings
import gymnasium as gym, numpy as np
from gymnasium.utils.env_checker import check_env
import agents, fpo_envs
import tests.envs.example_game  # the module registers the game

assert fpo_envs.game_of_id("FPO/ExampleColdStart-v0") == "cold-start"
env = gym.make("FPO/ExampleColdStart-v0", dim=6)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the env checker's advice on asymmetric boxes
    check_env(env.unwrapped, skip_render_check=True)
obs, _ = env.reset(seed=1)
vec = gym.make_vec("FPO/ExampleColdStart-v0", num_envs=3, dim=6)
vobs, _ = vec.reset(seed=0)
assert np.array_equal(vobs[1], obs), "copy 1 seeded 0 is the single env seeded 1"
try:
    gym.make("FPO/ExampleColdStart-v0", dims=6)
except TypeError as err:
    assert "dims" in str(err) and "dim" in str(err)
else:
    raise AssertionError("an unknown setting must be refused")

agents.register("example-rlhf", "agents.families.gradient:GradientLeader", kwargs={"penalty": "none"}, games=("cold-start",))
agents.register("example-fpo", "agents.families.gradient:GradientLeader", kwargs={"penalty": "relaxed"}, games=("cold-start",))
final = {}
for learner in ("example-rlhf", "example-fpo"):
    history = agents.make(learner, gym.make_vec("FPO/ExampleColdStart-v0", num_envs=64), seed=0).learn(300)
    final[learner] = history["true_utility"][-1].mean()
print(final["example-rlhf"], final["example-fpo"])
"""


def test_a_new_vector_game_is_one_module_and_one_registration_line():
    out = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rlhf, fpo = map(float, out.stdout.split())
    # 64 seeds x 300 rounds (measured: 0.51 and 4.34): the RM that starts cold collapses under
    # RLHF as the linear game's does, and relaxed FPO keeps most of the utility.
    assert rlhf < 1.0 < 3.0 < fpo
