"""The linear and token games and their learners need only the core dependencies (gymnasium, numpy)."""

import subprocess
import sys

CODE = """
import sys
for heavy in ("torch", "stable_baselines3", "matplotlib", "transformers", "peft", "bitsandbytes"):
    sys.modules[heavy] = None  # any import of it now raises ImportError
import gymnasium as gym
import agents, fpo_envs
env = gym.make("FPO/LinearRM-v0")
history = agents.make("fpo-relaxed", env, seed=0).learn(100)
assert history["true_utility"][-1] > 9.5, history["true_utility"][-1]
tokens = gym.make_vec("FPO/TokenRM-v0", num_envs=4)  # the token game and its family are numpy too
history = agents.make("fpo-practical", tokens, seed=0).learn(50)
assert history["kl_to_base"].shape == (50, 4)
print("ok")
"""


def test_linear_game_runs_without_optional_dependencies():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def _error_without(module: str, setup: str, statement: str) -> str:
    """What ``statement`` raises in a fresh interpreter where ``module`` cannot be imported."""
    code = (
        f"import sys; sys.modules[{module!r}] = None\n{setup}\n"
        f"try:\n    {statement}\nexcept Exception as err:\n    print(type(err).__name__, err)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout


def test_plotting_without_matplotlib_names_the_install():
    out = _error_without("matplotlib", "from agents.tools import report", "report.plot_curves({}, ('true_utility',), 'x.png')")
    assert "DependencyNotInstalled" in out and 'pip install "fpo-envs[plot]"' in out


def test_rendering_without_matplotlib_names_the_install():
    make = "gym.make('FPO/LinearRM-v0', render_mode='rgb_array')"
    out = _error_without("matplotlib", "import gymnasium as gym, fpo_envs", make)
    assert "DependencyNotInstalled" in out and 'pip install "fpo-envs[plot]"' in out


def test_neural_game_without_torch_names_the_install():
    out = _error_without("torch", "import gymnasium as gym, fpo_envs", "gym.make('FPO/NeuralRM-v0')")
    assert "DependencyNotInstalled" in out and "pip install torch" in out


def test_text_game_without_transformers_names_the_install():
    out = _error_without("transformers", "import gymnasium as gym, fpo_envs", "gym.make('FPO/TextRM-v0')")
    assert "DependencyNotInstalled" in out and 'pip install "fpo-envs[text]"' in out
