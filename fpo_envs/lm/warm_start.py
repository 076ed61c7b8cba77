"""A text-game RM head that starts with preferences of its own, and a known blind spot.

The paper's RM is a *trained* preference model whose head keeps learning; a random head has
nothing to exploit or entrench. ``rm_init="warm"`` fits the head once per preset, like a
reward model fitted to human preference data:

1. the base policy (no adapter) samples ``warm_samples`` responses to every training prompt
   (and to every evaluation prompt, held out), from a generator seeded with ``warm_seed``;
2. each pair of responses to one prompt gets the soft label
   ``p = sigmoid(U(y_a) - U(y_b) + rm_bias * b(y_a, y_b))``: the oracle's preference plus a
   documented bias ``b`` that real preference data carries;
3. the head is the L2-regularised logistic regression of ``p`` on the RM's feature
   differences ``[e(y_a), 1] - [e(y_b), 1]`` (Newton's method, deterministic).

Biases (``rm_bias_kind``):

- ``length``: ``b = n_a - n_b``, the difference in response tokens. Longer answers are
  preferred by human raters and by the reward models trained on their labels beyond what
  their quality explains (Singhal et al., 2023, "A Long Way to Go: Investigating Length
  Correlations in RLHF"; Dubois et al., 2024, length-controlled AlpacaEval), and RLHF then
  lengthens answers. ``rm_bias`` is in units of ``U`` per token: 0.05 makes 20 more tokens
  worth one unit of oracle quality. ``rm_bias = 0`` fits the oracle alone.

The labelled samples and the fitted head are cached in ``warm-rm/`` under the cache root
(:func:`fpo_envs.lm.loading.cache_root`: ``$FPO_ENVS_CACHE``, else ``~/.cache/fpo-envs``),
under hashes of every preset field that shapes them and the model files' sizes (the samples
apart from the bias, so another ``rm_bias`` refits in seconds); each cache file holds its
key and is rebuilt, never used, when the key does not match. The fit's agreement with the
oracle on the held-out pairs is ``env.unwrapped.warm_start_report``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from fpo_envs.core.numerics import sigmoid

BIAS_KINDS = ("length",)
"""The biases a warm head can carry (the preset's ``rm_bias_kind``; the module docstring)."""
VERSION = 1
"""Version of the fit, part of every cache key: raising it refits every cached head."""
L2 = 1e-2
"""Ridge of the logistic regression (per pair), which keeps the head finite on separable pairs."""


def _fingerprint(source: str) -> str:
    """Sizes of the files behind a model source, so a changed model changes the cache key."""
    from fpo_envs.lm.loading import resolve_source

    try:
        path, _, _ = resolve_source(source)
    except Exception:  # noqa: BLE001 - a hub id: its name is the fingerprint
        return source
    root = Path(path)
    files = sorted(root.rglob("*")) if root.is_dir() else [root]
    return ";".join(f"{f.name}:{f.stat().st_size}" for f in files if f.is_file())


def cache_key(preset: Any) -> dict:
    """Everything the warm head depends on."""
    fields = dataclasses.asdict(preset)
    if fields["judge"] == "likelihood":
        # The constraints judge's settings do not touch a likelihood-judged fit: a head cached
        # before they existed keeps its key.
        for name in ("judge", "utility_scale", "guard_floor", "guard_width", "retrain_every"):
            del fields[name]
    return {
        "version": VERSION,
        "preset": fields,
        "models": {k: _fingerprint(fields[k]) for k in ("policy_model", "rm_encoder") if fields[k]},
    }


def _samples(
    env: Any, prompts: list[str], rng_seed: int
) -> tuple[list[str], list[list[str]], list[np.ndarray], list[np.ndarray]]:
    """Base-policy responses per prompt, their oracle qualities and token lengths."""
    import torch

    from fpo_envs.lm.generation import generate, response_ids

    p = env.preset
    generator = torch.Generator().manual_seed(rng_seed)
    responses, qualities, lengths = [], [], []
    for prompt in prompts:
        texts, _ = generate(
            env.policy_base,
            env.policy_tokenizer,
            [prompt] * p.warm_samples,
            generator,
            **p.sampling(),
        )
        responses.append(texts)
        qualities.append(env.oracle.quality([prompt] * len(texts), texts))
        lengths.append(np.array([len(response_ids(env.policy_tokenizer, t)) for t in texts], dtype=np.float64))
    return prompts, responses, qualities, lengths


def _pairs(env: Any, data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feature differences, oracle quality differences and length differences of every pair."""
    prompts, responses, qualities, lengths = data
    diffs, du, dn = [], [], []
    for prompt, texts, u, n in zip(prompts, responses, qualities, lengths):
        features = env.reward_model.features([prompt] * len(texts), texts)
        for a, b in itertools.combinations(range(len(texts)), 2):
            diffs.append(features[a] - features[b])
            du.append(u[a] - u[b])
            dn.append(n[a] - n[b])
    return np.array(diffs), np.array(du), np.array(dn)


def fit_head(diffs: np.ndarray, targets: np.ndarray, l2: float = L2, iterations: int = 50) -> np.ndarray:
    """The logistic regression of soft labels ``targets`` on ``diffs`` (Newton's method)."""
    n, p = diffs.shape
    w = np.zeros(p)
    for _ in range(iterations):
        s = sigmoid(diffs @ w)
        grad = diffs.T @ (s - targets) / n + l2 * w
        hessian = (diffs * (s * (1 - s))[:, None]).T @ diffs / n + l2 * np.eye(p)
        step = np.linalg.solve(hessian, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w


def _agreement(scores: np.ndarray, truth: np.ndarray) -> float:
    """Share of pairs (ties in ``truth`` left out) the scores order as the truth does."""
    keep = truth != 0
    return float(np.mean(np.sign(scores[keep]) == np.sign(truth[keep]))) if keep.any() else float("nan")


def _cached_samples(env: Any, train_prompts: list[str], eval_prompts: list[str], key: dict) -> tuple:
    """The labelled base-policy samples, cached apart from the head: they do not depend on the
    bias, so fitting another ``rm_bias`` reuses them."""
    from fpo_envs.lm.loading import cache_root

    p = env.preset
    sample_key = json.loads(json.dumps(key))
    for field in ("rm_bias", "rm_bias_kind", "rm_lr", "rm_init", "rm_init_std"):
        sample_key["preset"].pop(field, None)
    sample_key["prompts"] = [train_prompts, eval_prompts]
    digest = hashlib.sha256(json.dumps(sample_key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_root() / "warm-rm" / f"samples-{digest}.json"
    if path.exists():
        stored = json.loads(path.read_text())
        if stored.get("key") == sample_key:
            return tuple(
                (d["prompts"], d["responses"], [np.array(q) for q in d["qualities"]], [np.array(n) for n in d["lengths"]])
                for d in stored["sets"]
            )
    sets = (_samples(env, train_prompts, p.warm_seed), _samples(env, eval_prompts, p.warm_seed + 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(
        json.dumps(
            {
                "key": sample_key,
                "sets": [
                    {
                        "prompts": s[0],
                        "responses": s[1],
                        "qualities": [q.tolist() for q in s[2]],
                        "lengths": [n.tolist() for n in s[3]],
                    }
                    for s in sets
                ],
            }
        )
    )
    os.replace(tmp, path)
    return sets


def warm_head(env: Any, train_prompts: list[str], eval_prompts: list[str]) -> tuple[np.ndarray, dict]:
    """The warm head for ``env``'s preset (cached), and its report.

    Returns:
        the head (the RM's ``num_params`` weights, bias last) and a dict of the fit's
        ``train_pairs``, ``held_out_pairs`` and its agreement (the share of pairs ordered as)
        with the oracle, the biased labels and the longer answer, on the held-out pairs.
    """
    from fpo_envs.lm.loading import cache_root

    p = env.preset
    key = cache_key(p)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_root() / "warm-rm" / f"head-{digest}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            stored = json.loads(str(data["key"]))
            if stored == json.loads(json.dumps(key)):
                return data["head"].copy(), json.loads(str(data["report"]))
        # A file under this name whose key differs is stale (or a hash collision): refit.
    train, held_out = _cached_samples(env, train_prompts, eval_prompts, key)
    diffs, du, dn = _pairs(env, train)
    bias = p.rm_bias * dn
    head = fit_head(diffs, sigmoid(du + bias))
    test_diffs, test_du, test_dn = _pairs(env, held_out)
    scores = test_diffs @ head
    report = {
        "rm_bias": p.rm_bias,
        "rm_bias_kind": p.rm_bias_kind,
        "train_pairs": int(len(du)),
        "held_out_pairs": int(len(test_du)),
        "held_out_agreement_with_oracle": _agreement(scores, test_du),
        "held_out_agreement_with_biased_labels": _agreement(scores, test_du + p.rm_bias * test_dn),
        "held_out_agreement_longer_preferred": _agreement(scores, test_dn),
        "train_agreement_with_oracle": _agreement(diffs @ head, du),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, head=head, key=np.asarray(json.dumps(key, sort_keys=True)), report=np.asarray(json.dumps(report)))
    os.replace(tmp, path)
    return head, report
