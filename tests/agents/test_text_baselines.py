"""The text game's baselines on tiny models: the KL-anchored SFT loss (its gradient against
finite differences, zero at the base, what it keeps), the capped pick (its ties, its seeded
draws), what each reduces to, and their configs, saving and resuming."""

import dataclasses
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

import agents  # noqa: E402
import fpo_envs  # noqa: E402,F401
from agents.families.text import TextLeader  # noqa: E402
from agents.learners.baselines import AnchoredTextLeader, CappedTextLeader  # noqa: E402
from fpo_envs.lm.generation import chat_prompt_ids, response_ids  # noqa: E402

PROMPT, RESPONSE = "Name a fruit.", "the answer is a short clear yes"


def _agent(tiny_text, name, **config):
    env = gym.make("FPO/TextRM-v0", **tiny_text)
    return agents.make(name, env, seed=0, **{"n_candidates": 4, **config})


def _lora(agent):
    return [p.detach().clone() for p in agent.model.parameters() if p.requires_grad]


def _sequence(agent, prompt=PROMPT, response=RESPONSE):
    """The ids and labels of one SFT step on ``response``: chat prompt, response, EOS; the
    prompt's labels -100."""
    game = agent.env.unwrapped
    tok = game.policy_tokenizer
    p = chat_prompt_ids(tok, prompt, game.preset.prompt_max_tokens)
    ids = torch.tensor([p + response_ids(tok, response) + [tok.eos_token_id]])
    labels = ids.clone()
    labels[:, : len(p)] = -100
    return ids, labels


def _loss_and_grads(agent, ids, labels, anchor=None):
    """The learner's SFT loss on one sequence, its record and its gradient on the LoRA
    parameters (optionally at another ``anchor``)."""
    if anchor is not None:
        agent.config = dataclasses.replace(agent.config, anchor=anchor)
    params = [p for p in agent.model.parameters() if p.requires_grad]
    agent.model.train()
    loss, record = agent._sft_loss(ids, labels)
    grads = torch.autograd.grad(loss, params)
    agent.model.eval()
    return float(loss.detach()), record, [g.detach().clone() for g in grads]


def _kl_to_base(agent, pairs):
    """Mean token ``KL(pi_theta || pi_base)`` over the responses of ``pairs``, measured here
    (not with the learner's code): eval mode, the base by disabling the adapter."""
    F = torch.nn.functional
    game = agent.env.unwrapped
    tok = game.policy_tokenizer
    agent.model.eval()
    kls = []
    for prompt, response in pairs:
        p = chat_prompt_ids(tok, prompt, game.preset.prompt_max_tokens)
        ids = torch.tensor([p + response_ids(tok, response) + [tok.eos_token_id]])
        with torch.no_grad():
            log_p = torch.log_softmax(agent.model(input_ids=ids).logits[0, len(p) - 1 : -1], -1)
            with agent.model.disable_adapter():
                log_q = torch.log_softmax(agent.model(input_ids=ids).logits[0, len(p) - 1 : -1], -1)
        kls.append(F.kl_div(log_q, log_p, log_target=True, reduction="none").sum(-1))
    return float(torch.cat(kls).mean())


def _float64(agent, monkeypatch):
    """Cast the tiny Llama to float64 end to end: transformers' RMSNorm and causal-LM loss
    round to float32 by design, which would bury a finite difference in rounding."""
    from transformers.models.llama import modeling_llama

    def rms_norm(self, hidden):
        variance = hidden.pow(2).mean(-1, keepdim=True)
        return self.weight * (hidden * torch.rsqrt(variance + self.variance_epsilon))

    def causal_lm_loss(logits, labels, vocab_size, **kwargs):
        shifted = torch.nn.functional.pad(labels, (0, 1), value=-100)[..., 1:]
        return torch.nn.functional.cross_entropy(logits.view(-1, vocab_size), shifted.reshape(-1), ignore_index=-100)

    monkeypatch.setattr(modeling_llama.LlamaRMSNorm, "forward", rms_norm)
    monkeypatch.setattr(agent.model.get_base_model(), "_loss_function", causal_lm_loss, raising=False)
    agent.model.double()


def _coordinates(agent):
    """Random coordinates of the LoRA matrices: A and B of the first and the last adapted module."""
    params = [p for p in agent.model.parameters() if p.requires_grad]
    rng = np.random.default_rng(0)
    picks = [0, 1, len(params) - 2, len(params) - 1] * 2
    return params, [(i, tuple(int(rng.integers(n)) for n in params[i].shape)) for i in picks]


def test_the_anchored_sft_gradient_equals_central_differences(tiny_text, monkeypatch):
    agent = _agent(tiny_text, "rlhf-anchor", anchor=0.5, lr=1e-2, grad_accum=1, lora_dropout=0.0)
    history = agent.learn(3)  # three optimizer steps: LoRA's B is no longer zero, the KL no longer flat
    assert history["sft_kl"][-1] > 0
    _float64(agent, monkeypatch)
    ids, labels = _sequence(agent, str(history["prompt"][-1]), str(history["response"][-1]))
    loss, record, grads = _loss_and_grads(agent, ids, labels)
    # The KL term's own gradient, from the learner's loss at two anchors (it is linear in the anchor).
    _, _, grads_at_zero = _loss_and_grads(agent, ids, labels, anchor=0.0)
    agent.config = dataclasses.replace(agent.config, anchor=0.5)
    kl_grads = [(g - g0) / 0.5 for g, g0 in zip(grads, grads_at_zero)]
    params, coordinates = _coordinates(agent)
    eps = 1e-4  # float64: truncation ~eps^2, rounding ~1e-16 / eps
    for index, at in coordinates:
        p, name = params[index], f"LoRA matrix {index} at {at}"
        values = {}
        for sign in (1, -1):
            with torch.no_grad():
                p[at] += sign * eps
            value, rec, _ = _loss_and_grads(agent, ids, labels)
            values[sign] = (value, rec["sft_kl"])
            with torch.no_grad():
                p[at] -= sign * eps
        fd_loss = (values[1][0] - values[-1][0]) / (2 * eps)
        fd_kl = (values[1][1] - values[-1][1]) / (2 * eps)
        np.testing.assert_allclose(float(grads[index][at]), fd_loss, rtol=1e-5, atol=1e-9, err_msg=name)
        np.testing.assert_allclose(float(kl_grads[index][at]), fd_kl, rtol=1e-5, atol=1e-9, err_msg=name)
    assert loss == pytest.approx(_loss_and_grads(agent, ids, labels, anchor=0.0)[0] + 0.5 * record["sft_kl"], rel=1e-12)


def test_the_kl_is_zero_at_the_base_and_grows_with_training(tiny_text):
    agent = _agent(tiny_text, "rlhf-anchor", anchor=1.0, lr=1e-2, grad_accum=1, lora_dropout=0.0)
    ids, labels = _sequence(agent)
    _, record, grads = _loss_and_grads(agent, ids, labels)
    _, _, nll_grads = _loss_and_grads(agent, ids, labels, anchor=0.0)
    assert record["sft_kl"] == 0.0  # LoRA's B starts at zero: the policy is the base, exactly
    scale = max(float(g.abs().max()) for g in nll_grads)
    assert scale > 0
    assert max(float((g - g0).abs().max()) for g, g0 in zip(grads, nll_grads)) <= 1e-6 * scale
    history = agent.learn(4)
    assert history["sft_kl"][0] == 0.0 and np.all(history["sft_kl"][1:] > 0)
    # The recorded KL is the mean over the response's positions (and EOS) of the full-vocabulary KL.
    measured = _kl_to_base(agent, [(PROMPT, RESPONSE)])
    assert measured > 0
    assert _loss_and_grads(agent, ids, labels)[1]["sft_kl"] == pytest.approx(measured, rel=1e-5)


def test_anchor_zero_is_rlhf(tiny_text):
    rlhf = _agent(tiny_text, "rlhf", lr=1e-2, grad_accum=2)
    anchored = _agent(tiny_text, "rlhf-anchor", anchor=0.0, lr=1e-2, grad_accum=2)
    a, b = rlhf.learn(4), anchored.learn(4)  # two optimizer steps, LoRA dropout on
    assert list(a["response"]) == list(b["response"])
    np.testing.assert_array_equal(a["sft_loss"], b["sft_loss"])
    assert all(torch.equal(x, y) for x, y in zip(_lora(rlhf), _lora(anchored)))
    assert np.all(np.isfinite(b["sft_kl"])) and b["sft_kl"][-1] > 0  # recorded though unweighted


def test_a_large_anchor_keeps_the_policy_nearer_the_base_than_rlhf(tiny_text):
    rlhf = _agent(tiny_text, "rlhf", lr=3e-3, grad_accum=1)
    anchored = _agent(tiny_text, "rlhf-anchor", anchor=100.0, lr=3e-3, grad_accum=1)
    runs = [rlhf.learn(8), anchored.learn(8)]
    pairs = [(str(p), str(r)) for h in runs for p, r in zip(h["prompt"], h["response"])]  # the same texts for both
    kl_rlhf, kl_anchored = _kl_to_base(rlhf, pairs), _kl_to_base(anchored, pairs)
    assert kl_rlhf > 0 and kl_anchored < 0.5 * kl_rlhf, (kl_anchored, kl_rlhf)


RESPONSES = ["Yes.", "No, it is not.", "A long and careful answer.", "", "water is light"]


def _capped(tiny_text, cap, seed=0):
    agent = agents.make("rlhf-cap", gym.make("FPO/TextRM-v0", **tiny_text), seed=seed, n_candidates=4, cap=cap)
    agent.env.reset(seed=0)
    game = agent.env.unwrapped
    game.reward_model.params = np.random.default_rng(0).normal(0, 1, game.num_params)
    return agent


def _rewards(agent):
    game = agent.env.unwrapped
    n = len(RESPONSES)
    return (game.reward_model.features([game.prompt] * n, RESPONSES) @ game.reward_model.params).astype(np.float64)


def test_the_pick_is_the_capped_argmax(tiny_text):
    agent = _capped(tiny_text, cap=1e6)
    game = agent.env.unwrapped
    r = _rewards(agent)
    order = np.argsort(r)
    for cap in (r[order[-1]] + 1.0, (r[order[-1]] + r[order[-2]]) / 2, r[order[0]] - 1.0):
        agent.config = dataclasses.replace(agent.config, cap=float(cap))
        s = agent.scores(game.prompt, game.reference, RESPONSES)
        np.testing.assert_allclose(s["reward"], r, rtol=1e-10)
        np.testing.assert_array_equal(s["score"], np.minimum(s["reward"], cap))
        if cap < r.min():  # every candidate ties at the cap: a draw among them all
            assert 0 <= agent._choose(s) < len(RESPONSES)
        else:
            state = agent.generator.get_state()
            assert agent._choose(s) == order[-1]  # above the rest, or the only one at the cap
            assert torch.equal(agent.generator.get_state(), state)  # no tie, no draw: rlhf's stream
    # A cap below the best two: a tie, whatever their RM scores above it.
    agent.config = dataclasses.replace(agent.config, cap=float(r[order[-2]]))
    s = agent.scores(game.prompt, game.reference, RESPONSES)
    assert agent._choose(s) in set(order[-2:].tolist())


def test_ties_at_the_cap_are_drawn_by_the_learners_generator(tiny_text):
    a, b = _capped(tiny_text, cap=1e6), _capped(tiny_text, cap=1e6)
    r = _rewards(a)
    tied = set(np.argsort(r)[-3:].tolist())
    cap = float(np.sort(r)[-3])
    for agent in (a, b):
        agent.config = dataclasses.replace(agent.config, cap=cap)
    game = a.env.unwrapped
    s = a.scores(game.prompt, game.reference, RESPONSES)
    torch.manual_seed(1)
    state = torch.get_rng_state()
    picks_a = [a._choose(s) for _ in range(300)]
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is not touched
    torch.manual_seed(2)
    picks_b = [b._choose(s) for _ in range(300)]
    assert picks_a == picks_b  # same seed, same draws, whatever the global seed
    assert set(picks_a) == tied
    counts = np.bincount(picks_a, minlength=len(RESPONSES))[sorted(tied)]
    assert counts.min() > 0.2 * len(picks_a)  # uniform among the tied: about 100 each
    other = _capped(tiny_text, cap=cap, seed=1)
    assert [other._choose(s) for _ in range(300)] != picks_a


def test_a_cap_above_every_score_is_rlhf(tiny_text):
    rlhf = _agent(tiny_text, "rlhf", lr=1e-2, grad_accum=2)
    capped = _agent(tiny_text, "rlhf-cap", cap=1e6, lr=1e-2, grad_accum=2)
    a, b = rlhf.learn(4), capped.learn(4)
    assert list(a["response"]) == list(b["response"])
    np.testing.assert_array_equal(a["winner_score"], b["winner_score"])
    assert all(torch.equal(x, y) for x, y in zip(_lora(rlhf), _lora(capped)))


@pytest.fixture(scope="module")
def text_env(tiny_text):
    return gym.make("FPO/TextRM-v0", **tiny_text)


@pytest.mark.parametrize(
    "learner_id, config, match",
    [
        ("rlhf-cap", {"cap": float("inf")}, "cap must be finite"),
        ("rlhf-cap", {"cap": float("nan")}, "cap must be finite"),
        ("rlhf-anchor", {"anchor": -0.1}, "anchor must be >= 0"),
        ("rlhf-anchor", {"anchor": float("inf")}, "anchor must be finite"),
        ("rlhf-anchor", {"penalty": "relaxed"}, "penalty must be 'none'"),
        ("rlhf-cap", {"penalty": "practical"}, "penalty must be 'none'"),
    ],
)
def test_bad_config_names_the_fix(text_env, learner_id, config, match):
    with pytest.raises(ValueError, match=match):
        agents.make(learner_id, text_env, **config)


def test_registered_for_the_text_game_without_importing_the_models():
    assert "text" in agents.spec("rlhf-anchor").games and "text" in agents.spec("rlhf-cap").games
    assert agents.spec("rlhf-anchor").entry_points["text"] is AnchoredTextLeader
    assert agents.spec("rlhf-cap").entry_points["text"] is CappedTextLeader
    assert issubclass(AnchoredTextLeader, TextLeader) and issubclass(CappedTextLeader, TextLeader)
    code = "import sys, agents.learners.baselines; print(sorted(m for m in ('transformers', 'peft') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("learner_id, config", [("rlhf-anchor", {"anchor": 1.0}), ("rlhf-cap", {"cap": 0.0})])
def test_save_and_load_continue_identically(tiny_text, tmp_path, learner_id, config):
    agent = _agent(tiny_text, learner_id, lr=1e-2, grad_accum=2, **config)
    agent.learn(3)  # mid-accumulation: the pending gradient is saved too
    agent.save(tmp_path / "learner.fpo")
    rest = agent.learn(3)
    loaded = agents.load(tmp_path / "learner.fpo", gym.make("FPO/TextRM-v0", **tiny_text))
    assert type(loaded) is type(agent) and loaded.config == agent.config
    again = loaded.learn(3)
    assert list(again["response"]) == list(rest["response"])
    for key in ("sft_loss", "winner_score", "true_utility") + (("sft_kl",) if "anchor" in config else ()):
        np.testing.assert_array_equal(again[key], rest[key], err_msg=key)


def test_an_anchored_run_streams_its_kl_and_resumes(tiny_text, tmp_path):
    import csv

    run = tmp_path / "run"
    agent = _agent(tiny_text, "rlhf-anchor", lr=1e-2, grad_accum=1, run_dir=str(run), checkpoint_every=2)
    agent.learn(3)  # a checkpoint after round 2; round 3 is replayed on resume
    with open(run / "metrics.csv", newline="") as fh:
        full = list(csv.DictReader(fh))
    assert len(full) == 3 and "sft_kl" in full[0] and float(full[-1]["sft_kl"]) > 0
    resumed = AnchoredTextLeader.resume(run, gym.make("FPO/TextRM-v0", **tiny_text))
    assert resumed.num_rounds == 2
    resumed.learn(1)
    with open(run / "metrics.csv", newline="") as fh:
        assert list(csv.DictReader(fh)) == full
