"""The text learners on tiny models: selection by the shared penalty, LoRA training, resume."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

import agents  # noqa: E402
import fpo_envs  # noqa: E402,F401
from agents.common import faults, penalties  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _agent(tiny_text, name, **config):
    env = gym.make("FPO/TextRM-v0", **tiny_text)
    return agents.make(name, env, seed=0, n_candidates=4, **config)


@pytest.mark.parametrize("name", agents.NAMES)
def test_selection_score_uses_the_shared_bradley_terry_penalty(tiny_text, name):
    agent = _agent(tiny_text, name)
    game = agent.env.unwrapped
    game.reward_model.params = np.random.default_rng(0).normal(0, 1, game.num_params)
    agent.env.reset(seed=0)
    prompt, reference = game.prompt, game.reference
    responses = ["Yes.", "No, it is not.", "A long and careful answer.", ""]
    s = agent.scores(prompt, reference, responses)
    f = game.reward_model.features([prompt] * 5, responses + [reference])
    r = f @ game.reward_model.params
    np.testing.assert_allclose(s["reward"], r[:4])
    if name == "rlhf":
        expected = np.zeros(4)
    elif name == "fpo-practical":
        expected = np.einsum("nd,nd->n", f[:4], f[:4] - f[4])
    else:
        u = game.oracle.quality([prompt] * 5, responses + [reference])
        sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
        expected = np.einsum("nd,nd->n", f[:4], f[:4] - f[4]) * (sig(r[:4] - r[4]) - sig(u[:4] - u[4]))
        np.testing.assert_allclose(
            expected, penalties.relaxed_penalty(f[:4], penalties.overconfidence(r[:4], u[:4], r[4], u[4]), f[4])
        )
    np.testing.assert_allclose(s["penalty"], expected, rtol=1e-10, atol=1e-12)
    gamma = getattr(agent.config, "gamma", 0.0)
    np.testing.assert_allclose(s["score"], r[:4] - gamma * expected)


def test_a_round_submits_the_best_scored_candidate_and_trains_the_adapter_only(tiny_text):
    agent = _agent(tiny_text, "fpo-relaxed", grad_accum=2, lr=1e-2)
    game = agent.env.unwrapped
    oracle_before = game.oracle.quality(["Name a fruit."], ["An apple."])
    base_before = {n: p.detach().clone() for n, p in agent.model.named_parameters() if not p.requires_grad}
    lora_before = {n: p.detach().clone() for n, p in agent.model.named_parameters() if p.requires_grad}
    history = agent.learn(4)
    assert history["true_utility"].shape == (4,) and set(history["sft_loss"]) and np.all(np.isfinite(history["sft_loss"]))
    assert history["winner_score"].shape == (4,)
    changed = [n for n, p in agent.model.named_parameters() if p.requires_grad and not torch.equal(p.detach(), lora_before[n])]
    assert changed, "two optimizer steps (grad_accum 2, 4 rounds) must move the adapter"
    assert all(torch.equal(p.detach(), base_before[n]) for n, p in agent.model.named_parameters() if not p.requires_grad)
    game.oracle._cache.clear()
    # The oracle shares the base weights but runs with the adapter disabled: it does not drift.
    np.testing.assert_allclose(game.oracle.quality(["Name a fruit."], ["An apple."]), oracle_before, atol=1e-6)


def test_same_seed_same_adapter_and_responses(tiny_text):
    a, b = _agent(tiny_text, "fpo-practical"), _agent(tiny_text, "fpo-practical")
    lora_a = [p.detach() for p in a.model.parameters() if p.requires_grad]
    lora_b = [p.detach() for p in b.model.parameters() if p.requires_grad]
    assert all(torch.equal(x, y) for x, y in zip(lora_a, lora_b))  # the LoRA init is seeded too
    ha, hb = a.learn(6), b.learn(6)  # past the first optimizer step (grad_accum 4)
    assert list(ha["response"]) == list(hb["response"])
    np.testing.assert_array_equal(ha["sft_loss"], hb["sft_loss"])


def test_predict_and_config_errors(tiny_text):
    agent = _agent(tiny_text, "rlhf")
    obs, _ = agent.env.reset(seed=0)
    greedy, state = agent.predict(obs)
    assert isinstance(greedy, str) and state is None and greedy == agent.predict(obs)[0]
    assert isinstance(agent.predict(obs, deterministic=False)[0], str)
    with pytest.raises(ValueError, match="one learner per env"):
        agents.make("rlhf", agent.env)
    with pytest.raises(TypeError, match="unknown config key"):
        _agent(tiny_text, "rlhf", gama=1.0)
    with pytest.raises(ValueError, match="no effect with penalty='none'"):
        _agent(tiny_text, "rlhf", gamma=1.0)
    with pytest.raises(ValueError, match="run_dir"):
        _agent(tiny_text, "rlhf", checkpoint_every=5)


def _train(tiny_text, out, rounds, resume=False):
    sets = [f"--set={k}={v}" for k, v in tiny_text.items()]
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "train_text.py"),
        "--learners",
        "fpo-relaxed",
        "--rounds",
        str(rounds),
        "--n",
        "3",
        "--checkpoint-every",
        "4",
        "--threads",
        "1",
        "--no-eval",
        "--out",
        str(out),
        *sets,
    ]
    return cmd + (["--resume"] if resume else [])


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_a_killed_run_resumes_without_losing_finished_rounds(tiny_text, tmp_path):
    rounds = 40
    env = {k: v for k, v in os.environ.items() if k not in (faults.CRASH_AT_ROUND, faults.CRASH_AFTER_RUNS)}
    env["PYTHONPATH"] = str(ROOT)
    subprocess.run(_train(tiny_text, tmp_path / "full", rounds), check=True, env=env, capture_output=True, timeout=600)
    metrics = tmp_path / "killed" / "fpo-relaxed" / "metrics.csv"
    # The run ends itself after round 15 (its checkpoints: rounds 8 and 12).
    crashed = subprocess.run(
        _train(tiny_text, tmp_path / "killed", rounds), env={**env, "FPO_CRASH_AT_ROUND": "15"}, capture_output=True, timeout=600
    )
    assert crashed.returncode == faults.CRASH_EXIT_CODE, crashed.stderr
    assert len(_rows(metrics)) == 15
    assert [p.name for p in agents.Agent.checkpoints(metrics.parent)] == ["round_000008.fpo", "round_000012.fpo"]
    # Resumed from round 12: a run played again from round 0 would stop at round 10.
    subprocess.run(
        _train(tiny_text, tmp_path / "killed", rounds, resume=True),
        check=True,
        env={**env, "FPO_CRASH_AT_ROUND": "10"},
        capture_output=True,
        timeout=600,
    )
    full, resumed = _rows(tmp_path / "full" / "fpo-relaxed" / "metrics.csv"), _rows(metrics)
    assert [r["round"] for r in resumed] == [str(i) for i in range(rounds)]
    # Rounds after the last checkpoint are replayed with the restored random states: the
    # resumed run matches the uninterrupted one round for round.
    assert resumed == full
    assert (tmp_path / "killed" / "fpo-relaxed" / "adapter" / "adapter_config.json").exists()


def _direct_kl(agent, prompt, response):
    """The KL along one response, unbatched and unpadded: the reference for ``kl_to_base``."""
    from fpo_envs.lm.generation import chat_prompt_ids, response_ids

    game = agent.env.unwrapped
    tok = game.policy_tokenizer
    p = chat_prompt_ids(tok, prompt, game.preset.prompt_max_tokens)
    s = response_ids(tok, response) + [tok.eos_token_id]
    ids = torch.tensor([p + s])
    with torch.inference_mode():
        logp = torch.log_softmax(agent.model(input_ids=ids).logits[0].double(), -1)
        with agent.model.disable_adapter():
            logq = torch.log_softmax(agent.model(input_ids=ids).logits[0].double(), -1)
    scored = slice(len(p) - 1, len(p) + len(s) - 1)  # the positions predicting the response and EOS
    return float((logp.exp() * (logp - logq)).sum(-1)[scored].sum())


def test_kl_to_base_is_the_summed_next_token_kl_along_each_response(tiny_text):
    agent = _agent(tiny_text, "rlhf", lr=5e-2, grad_accum=1)
    agent.env.reset(seed=0)
    prompt = agent.env.unwrapped.prompt
    responses = ["Yes.", "No, it is not so at all.", ""]
    np.testing.assert_allclose(agent.kl_to_base(prompt, responses), 0.0, atol=1e-6)  # LoRA B starts at 0
    history = agent.learn(4)
    kl = agent.kl_to_base(prompt, responses)
    assert np.all(kl > 1e-4)
    # Batched with left padding equals each response on its own.
    np.testing.assert_allclose(kl, [_direct_kl(agent, prompt, r) for r in responses], rtol=1e-3, atol=1e-6)
    # Every round records its candidates' mean: 0 in the first (before any step), then > 0.
    assert len(history["kl_to_base"]) == 4
    assert abs(history["kl_to_base"][0]) < 1e-6 and min(history["kl_to_base"][1:]) > 0
