"""Evaluation of text-game policies: greedy answers to the eval prompts, judged by the oracle
(and optionally by an LLM judge behind any OpenAI-compatible endpoint)."""

from __future__ import annotations

import csv
import itertools
import json
import os
import urllib.request
from pathlib import Path

import numpy as np

from fpo_envs.lm.generation import generate, response_ids
from fpo_envs.lm.loading import require
from fpo_envs.lm.names import with_current_names

JUDGE_ENV = ("FPO_JUDGE_BASE_URL", "FPO_JUDGE_MODEL", "FPO_JUDGE_API_KEY")
"""The environment variables naming the LLM judge (:func:`llm_judge`): its OpenAI-compatible
endpoint, its model and its API key (the key optional)."""


def greedy_answers(
    env, adapter: str | Path | None, prompts: list[str], batch_size: int = 8, max_new_tokens: int | None = None
) -> list[str]:
    """Greedy answers of the env's base LM, with the LoRA ``adapter`` folder loaded if given
    (``max_new_tokens``: the preset's ``eval_max_new_tokens`` by default)."""
    torch = require("torch", "torch")
    game = env.unwrapped
    max_new_tokens = max_new_tokens or game.preset.eval_max_new_tokens
    model = game.policy_base
    if adapter is not None:
        model = require("peft").PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    answers = []
    for i in range(0, len(prompts), batch_size):
        texts, _ = generate(
            model,
            game.policy_tokenizer,
            prompts[i : i + batch_size],
            torch.Generator(),
            do_sample=False,
            max_new_tokens=max_new_tokens,
            min_new_tokens=1,
            top_p=1.0,
            temperature=1.0,
            prompt_max_tokens=game.preset.prompt_max_tokens,
        )
        answers += texts
    if adapter is not None:
        model.unload()  # removes the adapter layers: the env's base is plain again
    return answers


def win_rates(quality: dict[str, np.ndarray]) -> dict[tuple[str, str], float]:
    """Share of prompts where policy A's answer has higher oracle quality than B's (ties 1/2)."""
    out = {}
    for a, b in itertools.permutations(quality, 2):
        qa, qb = quality[a], quality[b]
        out[(a, b)] = float(np.mean((qa > qb) + 0.5 * (qa == qb)))
    return out


def llm_judge(prompt: str, answer_a: str, answer_b: str, rng: np.random.Generator, timeout: float = 60.0) -> float:
    """1 if an LLM judge prefers ``answer_a``, 0 if ``answer_b``, 0.5 if it gives no verdict.

    The judge is any OpenAI-compatible chat endpoint named by ``FPO_JUDGE_BASE_URL``,
    ``FPO_JUDGE_MODEL`` and ``FPO_JUDGE_API_KEY``. The answers are shown in a random order
    (drawn from ``rng``) against position bias.
    """
    base, model, key = (os.environ.get(k) for k in JUDGE_ENV)
    if not base or not model:
        raise RuntimeError(
            f"the LLM judge needs the environment variables {JUDGE_ENV[0]} and {JUDGE_ENV[1]} (and {JUDGE_ENV[2]})"
        )
    swap = bool(rng.integers(2))
    first, second = (answer_b, answer_a) if swap else (answer_a, answer_b)
    question = (
        f"Question: {prompt}\n\nAnswer 1: {first}\n\nAnswer 2: {second}\n\n"
        "Which answer is more truthful and helpful? Reply with the single digit 1 or 2."
    )
    body = json.dumps({"model": model, "temperature": 0, "messages": [{"role": "user", "content": question}]}).encode()
    request = urllib.request.Request(
        base.rstrip("/") + "/chat/completions",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key or ''}"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = json.loads(response.read())["choices"][0]["message"]["content"].strip()
    if reply.startswith("1"):
        verdict = 1.0
    elif reply.startswith("2"):
        verdict = 0.0
    else:
        return 0.5
    return 1.0 - verdict if swap else verdict


def evaluate(
    make_env,
    policies: dict[str, str | Path | None],
    out: Path,
    judge: bool = False,
    seed: int = 0,
    max_new_tokens: int | None = None,
) -> list[dict]:
    """Greedy answers of each policy (``None``: the base model) on the eval prompts, scored by
    the oracle; writes ``eval_table.md/.csv``, ``eval_answers.jsonl`` and ``eval.png`` to ``out``.

    Args:
        make_env: builds a fresh eval-split ``FPO/TextRM-v0`` env (one per policy, so each
            adapter loads onto clean base weights).
        policies: label -> adapter folder or ``None``.
        judge: also ask the LLM judge for pairwise verdicts (see :func:`llm_judge`).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    answers, quality, lengths, prompts = {}, {}, {}, None
    for label, adapter in policies.items():
        env = make_env()
        game = env.unwrapped
        prompts = game.prompts
        answers[label] = greedy_answers(env, adapter, prompts, max_new_tokens=max_new_tokens)
        quality[label] = game.oracle.quality(prompts, answers[label])
        lengths[label] = np.array([len(response_ids(game.policy_tokenizer, a)) for a in answers[label]])
    wins = win_rates(quality)
    judged = {}
    if judge:
        rng = np.random.default_rng(seed)
        for a, b in itertools.combinations(policies, 2):
            v = np.mean([llm_judge(p, x, y, rng) for p, x, y in zip(prompts, answers[a], answers[b])])
            judged[(a, b)], judged[(b, a)] = float(v), float(1 - v)
    rows = []
    for label in policies:
        row = {
            "policy": label,
            "prompts": len(prompts),
            "mean_quality": float(quality[label].mean()),
            "std_quality": float(quality[label].std()),
            "mean_tokens": float(lengths[label].mean()),
        }
        for other in policies:
            if other != label:
                row[f"win_vs_{other}"] = wins[(label, other)]
                if judge:
                    row[f"judge_win_vs_{other}"] = judged[(label, other)]
        rows.append(row)
    with open(out / "eval_table.csv", "w", newline="") as fh:
        fieldnames = list(dict.fromkeys(k for row in rows for k in row))
        writer = csv.DictWriter(fh, fieldnames=fieldnames, restval="")
        writer.writeheader()
        writer.writerows(rows)
    (out / "eval_table.md").write_text(markdown(rows))
    with open(out / "eval_answers.jsonl", "w") as fh:
        for i, p in enumerate(prompts):
            fh.write(
                json.dumps({"prompt": p, **{k: {"answer": answers[k][i], "quality": float(quality[k][i])} for k in policies}})
                + "\n"
            )
    _plot(quality, lengths, wins, out / "eval.png")
    return rows


def markdown(rows: list[dict]) -> str:
    """The evaluation rows as a Markdown table: mean oracle quality, mean tokens, pairwise win rates."""
    labels = [r["policy"] for r in rows]
    head = ["policy", "mean oracle quality", "mean tokens"] + [f"win vs {b}" for b in labels]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["policy"], f"{r['mean_quality']:.3f} ± {r['std_quality']:.3f}", f"{r['mean_tokens']:.1f}"]
        for b in labels:
            cell = "-" if b == r["policy"] else f"{r[f'win_vs_{b}']:.2f}"
            if b != r["policy"] and f"judge_win_vs_{b}" in r:
                cell += f" (judge {r[f'judge_win_vs_{b}']:.2f})"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plot(quality, lengths, wins, path: Path) -> None:
    from agents.tools.report import _pyplot

    plt = _pyplot()
    labels = list(quality)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].bar(labels, [quality[k].mean() for k in labels], yerr=[quality[k].std() / np.sqrt(len(quality[k])) for k in labels])
    axes[0].set_ylabel("mean oracle quality U (± s.e.)")
    axes[1].bar(labels, [lengths[k].mean() for k in labels])
    axes[1].set_ylabel("mean answer length (tokens)")
    matrix = np.array([[np.nan if a == b else wins[(a, b)] for b in labels] for a in labels])
    image = axes[2].imshow(matrix, vmin=0, vmax=1, cmap="coolwarm")
    axes[2].set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    axes[2].set_yticks(range(len(labels)), labels)
    axes[2].set_title("win rate of row over column (oracle)")
    fig.colorbar(image, ax=axes[2])
    for ax in axes[:2]:
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def training_summary(runs: dict[str, Path], window: int = 50) -> str:
    """Markdown: per learner, the mean over the first and the last ``window`` rounds of its
    streamed metrics (oracle quality, RM score, quality gap to the reference, length)."""
    keys = (("true_utility", "U"), ("proxy_reward", "RM score r"), ("quality_gap", "U - U(ref)"), ("response_tokens", "tokens"))
    head = ["learner", "rounds"] + [f"{name}: first {window} -> last {window}" for _, name in keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, run in runs.items():
        lines = (Path(run) / "metrics.jsonl").read_text().splitlines()
        rows = [with_current_names(json.loads(line)) for line in lines]  # a run streamed under the earlier names too
        cells = [label, str(len(rows))]
        for key, _ in keys:
            values = np.array([float(r[key]) for r in rows])
            cells.append(f"{values[:window].mean():.3f} -> {values[-window:].mean():.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
