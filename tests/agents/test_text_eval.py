"""Evaluation of text policies: win rates, the optional LLM judge (against a loopback server), tables."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("peft")

import agents  # noqa: E402
import fpo_envs  # noqa: E402,F401
from agents.tools.text_eval import evaluate, llm_judge, win_rates  # noqa: E402


def test_win_rates_count_ties_as_half():
    w = win_rates({"a": np.array([1.0, 2.0, 3.0]), "b": np.array([0.0, 2.0, 4.0])})
    assert w[("a", "b")] == pytest.approx(0.5) and w[("b", "a")] == pytest.approx(0.5)
    w = win_rates({"a": np.array([1.0, 1.0]), "b": np.array([0.0, 0.0])})
    assert w[("a", "b")] == 1.0 and w[("b", "a")] == 0.0


class _Judge(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that prefers whichever answer says GOOD."""

    seen = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.path, self.headers.get("Authorization"), body["model"]))
        text = body["messages"][0]["content"]
        first = text.split("Answer 1:")[1].split("Answer 2:")[0]
        reply = json.dumps({"choices": [{"message": {"content": "1" if "GOOD" in first else "2"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def test_llm_judge_talks_to_an_openai_compatible_endpoint(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Judge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("FPO_JUDGE_BASE_URL", f"http://127.0.0.1:{server.server_port}/v1")
        monkeypatch.setenv("FPO_JUDGE_MODEL", "judge-model")
        monkeypatch.setenv("FPO_JUDGE_API_KEY", "secret")
        rng = np.random.default_rng(0)
        # Whatever order the answers are shown in, the verdict is for the GOOD one.
        assert [llm_judge("Q?", "GOOD answer", "bad answer", rng) for _ in range(8)] == [1.0] * 8
        assert [llm_judge("Q?", "bad answer", "GOOD answer", rng) for _ in range(8)] == [0.0] * 8
        assert _Judge.seen[0] == ("/v1/chat/completions", "Bearer secret", "judge-model")
    finally:
        server.shutdown()


def test_llm_judge_without_configuration_is_a_clear_error(monkeypatch):
    for key in ("FPO_JUDGE_BASE_URL", "FPO_JUDGE_MODEL"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match="FPO_JUDGE_BASE_URL"):
        llm_judge("Q?", "a", "b", np.random.default_rng(0))


def test_evaluate_writes_tables_for_base_and_trained_policies(tiny_text, tmp_path):
    env = gym.make("FPO/TextRM-v0", **tiny_text)
    agent = agents.make("rlhf", env, seed=0, n_candidates=2, grad_accum=1, lr=1e-2)
    agent.learn(3)
    agent.save_adapter(tmp_path / "adapter")
    rows = evaluate(
        lambda: gym.make("FPO/TextRM-v0", split="eval", **tiny_text),
        {"base": None, "rlhf": tmp_path / "adapter"},
        tmp_path / "eval",
        max_new_tokens=4,
    )
    assert [r["policy"] for r in rows] == ["base", "rlhf"] and rows[0]["prompts"] == 36
    assert rows[0]["win_vs_rlhf"] + rows[1]["win_vs_base"] == pytest.approx(1.0)
    for name in ("eval_table.md", "eval_table.csv", "eval_answers.jsonl", "eval.png"):
        assert (tmp_path / "eval" / name).stat().st_size > 0
    answers = [json.loads(line) for line in (tmp_path / "eval" / "eval_answers.jsonl").read_text().splitlines()]
    assert len(answers) == 36 and set(answers[0]) == {"prompt", "base", "rlhf"}


def test_training_summary_compares_first_and_last_rounds(tmp_path):
    from agents.tools.text_eval import training_summary

    run = tmp_path / "rlhf"
    run.mkdir()
    rows = [{"true_utility": float(i), "proxy_reward": 0.0, "quality_gap": 1.0, "response_tokens": 10} for i in range(10)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = training_summary({"rlhf": run}, window=3)
    assert "| rlhf | 10 | 1.000 -> 8.000 | 0.000 -> 0.000 | 1.000 -> 1.000 | 10.000 -> 10.000 |" in table
