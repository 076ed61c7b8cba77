"""The text game's ``gold`` profile on tiny models: the constraints judge as the env's ``U``, its
range, its guard, its bad input, and gold-bon picking by ``U``."""

import gymnasium as gym
import numpy as np
import pytest

import fpo_envs  # noqa: F401
from fpo_envs.models.judge import ConstraintJudge, guarded, load_constrained_prompts

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _gold(tiny_text, **kwargs):
    return gym.make("FPO/TextRM-v0", **tiny_text, profile="gold", **kwargs).unwrapped


def test_gold_scores_by_the_prompts_constraints_within_the_utility_range(tiny_text):
    env = _gold(tiny_text, guard_floor=1e6)  # the tiny LM writes noise: no guard here
    assert env.preset.judge == "constraints" and env.utility_range == (0.0, 5.0) and env.optimum() == (None, 5.0)
    prompt, constraints = load_constrained_prompts(split="train")[0]
    env.reset(seed=0, options={"prompt": prompt})
    judge = ConstraintJudge()
    for response in ("", "a short answer", "Yes. That is all.", "- one\n- two\n- three"):
        env.reset(seed=0, options={"prompt": prompt})
        _, _, _, _, info = env.step(response)
        assert info["true_utility"] == pytest.approx(5.0 * judge.score(response, constraints))
        assert 0.0 <= info["true_utility"] <= 5.0 and 0.0 <= info["reference_utility"] <= 5.0


def test_the_guard_zeroes_what_the_oracle_lm_finds_unlikely(tiny_text):
    strict = _gold(tiny_text, guard_floor=0.0, guard_width=1e-3)  # every real NLL is above the floor
    prompt, constraints = load_constrained_prompts(split="train")[0]
    u = strict.oracle.quality([prompt], ["a short answer"])[0]
    assert u == 0.0
    assert guarded(1.0, 0.5, 1.0, 2.0) == 1.0 and guarded(1.0, 2.0, 1.0, 2.0) == pytest.approx(0.5)


def test_a_constraints_judge_needs_prompts_with_constraints(tiny_text):
    with pytest.raises(ValueError, match="has no .constraints."):
        gym.make("FPO/TextRM-v0", **tiny_text, judge="constraints")  # the builtin prompts carry none
    with pytest.raises(ValueError, match="judge must be one of"):
        gym.make("FPO/TextRM-v0", **tiny_text, judge="vibes")
    with pytest.raises(ValueError, match="utility_scale must be a finite number > 0"):
        gym.make("FPO/TextRM-v0", **tiny_text, profile="gold", utility_scale=0.0)
    env = _gold(tiny_text)
    with pytest.raises(ValueError, match="has no constraints for the prompt"):
        env.oracle.quality(["an unknown prompt"], ["an answer"])


def test_gold_bon_submits_the_candidate_the_judge_scores_highest(tiny_text):
    import agents

    env = gym.make("FPO/TextRM-v0", **tiny_text, profile="gold", guard_floor=1e6)
    agent = agents.make("gold-bon", env, seed=0, n_candidates=3, max_new_tokens=6, min_new_tokens=1)
    game = env.unwrapped
    prompt = game.prompt
    responses = ["- a\n- b", "yes", "the answer is short"]
    scores = agent.scores(prompt, game.reference, responses)
    np.testing.assert_allclose(scores["score"], game.oracle.quality([prompt] * 3, responses))
    history = agent.learn(2)
    assert np.isfinite(history["true_utility"]).all()
    with pytest.raises(ValueError, match="gold-bon has its own objective; penalty must be 'none'"):
        agents.make("gold-bon", env, penalty="practical")


def test_the_gold_profiles_settings_are_part_of_a_runs_store_key():
    from agents import bench
    from agents.bench import runner
    from fpo_envs.lm.presets import PROFILES

    suite = bench.load_suite("text-gold")
    game, entry = suite.games[0], suite.learners[0]
    key = runner.run_key(suite, game, entry, 0, None)
    assert key["env_kwargs"] == {"profile": "gold"} and key["profile_settings"]["env"] == PROFILES["gold"].env
    assert {e.id for e in suite.learners} == {"rlhf", "fpo-practical", "fpo-relaxed", "rlhf-anchor", "gold-bon"}


def test_retrain_every_m_holds_the_rm_then_steps_m_times_on_the_buffer(tiny_text):
    from fpo_envs.core.numerics import adam_step

    env = gym.make("FPO/TextRM-v0", **tiny_text, retrain_every=2).unwrapped
    env.reset(seed=0)
    rm = env.reward_model
    start, opt = rm.params.copy(), {k: np.copy(v) for k, v in rm.opt_state.items()}
    items = []
    for t, response in enumerate(["yes", "no it is"]):
        prompt, reference = env.prompt, env.reference
        _, _, _, _, info = env.step(response)
        items.append((prompt, response, reference, info["label"]))
        assert info["retrained"] == (t == 1)
        if t == 0:
            np.testing.assert_array_equal(env.reward_model.params, start)  # held between retrainings
    trained, params = env.reward_model.params.copy(), start
    for _ in range(2):
        rm.params = params  # the gradient at the step's parameters (the env's RM, set back below)
        grad = np.mean([rm.loss_grad(*item) for item in items], axis=0)
        params, opt = adam_step(params, opt, grad, rm.lr, betas=rm.betas, eps=rm.eps)
    np.testing.assert_allclose(trained, params, rtol=1e-12)
    rm.params = trained
    # The buffer is part of the state: a restored env continues the same.
    env.step("a third")
    saved = env.state_dict()
    assert len(saved["buffer"]) == 1
    copy = gym.make("FPO/TextRM-v0", **tiny_text, retrain_every=2).unwrapped
    copy.reset(seed=5)
    copy.load_state_dict(saved)
    a, b = env.step("and a fourth"), copy.step("and a fourth")
    np.testing.assert_array_equal(env.reward_model.params, copy.reward_model.params)
    assert a[4]["retrained"] and b[4]["retrained"]


def test_the_paper_preset_takes_the_gold_profile(tiny_text):
    """The Llama-3.2-1B preset's code path (a trained sequence-classifier RM reading the response
    alone, a separate oracle model, inputs cut to 128 tokens) with the gold judge, on tiny models
    on the CPU; scripts/gpu_check_text.py --profile gold runs it with quantization on CUDA."""
    from pathlib import Path

    overrides = {
        **tiny_text,
        "rm_encoder": str(Path(tiny_text["rm_encoder"]).parent / "tiny-bert-rm"),
        "oracle_model": tiny_text["policy_model"],
        "device": "cpu",
        "dtype": "float32",
        "policy_quantization": "none",
        "oracle_quantization": "none",
    }
    env = gym.make("FPO/TextRM-v0", preset="llama-3.2-1b", profile="gold", guard_floor=1e6, **overrides).unwrapped
    assert env.preset.judge == "constraints" and env.preset.rm_type == "sequence-classifier"
    prompt, constraints = load_constrained_prompts(split="train")[3]
    env.reset(seed=0, options={"prompt": prompt})
    _, _, _, _, info = env.step("- one\n- two")
    assert info["true_utility"] == pytest.approx(5.0 * ConstraintJudge().score("- one\n- two", constraints))


def test_the_gold_setting_search_plays_each_candidate_on_its_own_store_keys():
    """``scripts/search_text_setting.py --profile gold``: every candidate is the gold profile with
    its own settings, on the search seed only, and ``--learners`` narrows the learners."""
    import importlib.util
    from pathlib import Path

    import agents
    from agents.bench import runner

    path = Path(__file__).resolve().parents[2] / "scripts" / "search_text_setting.py"
    spec = importlib.util.spec_from_file_location("search_text_setting", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    hashes = set()
    for name, (env, learner) in script.GOLD_CANDIDATES.items():
        suite = script.candidate_suite(name, rounds=5, seed=100)
        (game,) = suite.games
        assert game.kwargs == {"profile": "gold", **env} and (game.first_seed, game.seeds) == (100, 1)
        assert [e.id for e in suite.learners] == ["rlhf", "fpo-relaxed", "gold-bon"]
        assert all(e.id in agents.ids("text") and e.config == learner for e in suite.learners)
        (only,) = script.candidate_suite(name, rounds=5, seed=100, learners=("rlhf",)).learners
        assert only.id == "rlhf"
        hashes.update(h for job in runner.plan(suite) for h in job["hashes"])
    assert len(hashes) == 3 * len(script.GOLD_CANDIDATES)  # no two candidates share a run
