"""The text game's part of a suite's report: training curves over seeds, the held-out
evaluation with bootstrap confidence intervals, and example answers early against late.

It reads the artifacts each text run keeps (:func:`agents.bench.runner.keep_artifacts`:
every round's metrics and response, the trained adapter, the RM head it ended with) and
evaluates each trained policy once: greedy answers to the preset's evaluation prompts,
scored by the oracle (``U``) and by the RM's starting head (the same judge for every
policy) and the run's final head. Answers are cached beside the artifacts
(``eval.json``, written atomically), so a killed report resumes and a rerun only redraws.
A run stored under the text game's earlier metric names (``signal_norm`` for
``quality_gap``, :data:`fpo_envs.lm.names.RENAMED_INFO_KEYS`) is read under today's.

Statistics (rliable, bootstrapping seeds and prompts): mean oracle quality and mean RM
score of the answers with 95% CIs, and pairwise win rates: the probability that a policy's
answer to a prompt has the higher oracle quality than another's (over seed pairs, ties
one half, averaged over prompts), with 95% CIs.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from agents.bench.runner import artifacts_dir
from agents.bench.store import Store, StoreError
from fpo_envs.lm.names import with_current_names

BASE = "base"
"""The label of the untrained policy (the env's base LM, no adapter) in the evaluation."""
SMOOTH = 10
"""Rounds in the trailing mean of the training curves."""
CURVES = (
    ("true_utility", "oracle quality U"),
    ("kl_to_base", "KL to the base LM (nats)"),
    ("proxy_reward", "RM score r"),
    ("reward_gap", "r - r(reference)"),
    ("abs_rm_error", "|RM preference error|"),
    ("response_tokens", "response length (tokens)"),
)
"""The panels of the training-curves figure: each a history key and its axis label."""


def smooth(x: np.ndarray, window: int = SMOOTH) -> np.ndarray:
    """Trailing mean over ``window`` rounds (over fewer at the start)."""
    c = np.cumsum(np.insert(np.asarray(x, dtype=np.float64), 0, 0.0))
    i = np.arange(1, len(x) + 1)
    lo = np.maximum(i - window, 0)
    return (c[i] - c[lo]) / (i - lo)


def _artifacts(store: Store, h: str) -> Path:
    """The artifacts folder of a stored text run; a clear error where it is missing."""
    path = artifacts_dir(store.root, h) / "metrics.jsonl"
    if not path.exists():
        raise StoreError(
            f"text run {h} has no artifacts ({path} is missing; stored by an older fpo-bench): delete {store.path(h)} to rerun it"
        )
    return path.parent


ROUND_COLUMNS = (
    "true_utility",
    "reference_utility",
    "quality_gap",
    "proxy_reward",
    "reference_reward",
    "rm_error",
    "response_tokens",
    "kl_to_base",
)
"""The per-round metrics ``text_rounds.csv`` keeps (besides learner, seed and round); a run
stored before the learners recorded ``kl_to_base`` has it empty."""


def write_rounds_csv(training: dict[str, list[dict]], path: Path) -> Path:
    """Every round of every run as one CSV row (learner, seed, round, :data:`ROUND_COLUMNS`):
    the curves of the report, for plots and statistics of your own (lesson 4 reads it)."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["learner", "seed", "round", *ROUND_COLUMNS])
        for label, runs in training.items():
            for run in runs:
                for row in run["rows"]:
                    values = [f"{row[c]:.6g}" if isinstance(row.get(c), float) else row.get(c, "") for c in ROUND_COLUMNS]
                    writer.writerow([label, run["seed"], row["round"], *values])
    return path


def read_rounds(store: Store, h: str) -> list[dict]:
    """Every round's metrics of a stored text run, from its artifacts, under the game's
    current names (:func:`fpo_envs.lm.names.with_current_names`)."""
    lines = (_artifacts(store, h) / "metrics.jsonl").read_text().splitlines()
    return [with_current_names(json.loads(line)) for line in lines]


def curves(rows: list[dict]) -> dict[str, np.ndarray]:
    """The per-round series the figure draws."""
    get = lambda k: np.array([row.get(k, np.nan) for row in rows], dtype=np.float64)  # noqa: E731
    return {
        "kl_to_base": get("kl_to_base"),  # NaN for a run stored before the learners recorded it
        "true_utility": get("true_utility"),
        "quality_gap": get("quality_gap"),
        "proxy_reward": get("proxy_reward"),
        "reward_gap": get("proxy_reward") - get("reference_reward"),
        "abs_rm_error": np.abs(get("rm_error")),
        "response_tokens": get("response_tokens"),
    }


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".tmp-{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


class _Evaluator:
    """One env (models loaded once) that answers and scores the evaluation prompts."""

    def __init__(self, env_id: str, kwargs: dict):
        self.env_id, self.kwargs, self._env = env_id, kwargs, None

    @property
    def env(self):
        if self._env is None:
            import gymnasium as gym

            import fpo_envs  # noqa: F401

            self._env = gym.make(self.env_id, **self.kwargs)
            self._env.reset(seed=0)  # the RM at its starting head: the common judge
        return self._env

    def evaluate(self, adapter: Path | None, final_head: np.ndarray | None) -> tuple[dict, np.ndarray]:
        """A policy's greedy answers to the eval prompts with their scores (``eval.json``), and
        the RM's features of those answers (``features.npy``, which the preference check reads)."""
        from agents.tools.text_eval import greedy_answers
        from fpo_envs.lm.generation import response_ids
        from fpo_envs.lm.prompts import load_prompts

        game = self.env.unwrapped
        prompts = load_prompts(game.preset.prompts_eval, "eval")
        answers = greedy_answers(self.env, adapter, prompts)
        features = game.reward_model.features(prompts, answers)
        out = {
            "prompts": prompts,
            "answers": answers,
            "quality": [float(q) for q in game.oracle.quality(prompts, answers)],
            "tokens": [len(response_ids(game.policy_tokenizer, a)) for a in answers],
            "reward_initial": [float(v) for v in features @ game.reward_model.params],
        }
        if final_head is not None:
            out["reward_final"] = [float(v) for v in features @ final_head]
        return out, np.asarray(features, dtype=np.float64)

    def features(self, prompts: list[str], answers: list[str]) -> np.ndarray:
        """The RM's features of ``answers`` to ``prompts`` (the frozen encoder's, the same for every head)."""
        return np.asarray(self.env.unwrapped.reward_model.features(prompts, answers), dtype=np.float64)

    def close(self) -> None:
        if self._env is not None:
            self._env.close()


def _save_evaluation(folder: Path, evaluation: dict, features: np.ndarray) -> None:
    """Cache a run's evaluation beside its artifacts: ``features.npy`` first, then
    ``eval.json`` (the marker that the evaluation is done), each written atomically."""
    _save_features(folder, features)
    _write_json(folder / "eval.json", evaluation)


def _save_features(folder: Path, features: np.ndarray) -> None:
    tmp = folder / f".tmp-features.{os.getpid()}.npy"
    np.save(tmp, features)
    os.replace(tmp, folder / "features.npy")


def evaluations(store: Store, env_id: str, kwargs: dict, by_label: dict[str, list[str]]) -> dict[str, list[dict]]:
    """Per label (and ``base``): the evaluation of each run, computed once and cached (with
    the RM's features of its answers, which :func:`preference_errors` reads)."""
    evaluator = _Evaluator(env_id, kwargs)
    digest = hashlib.sha256(json.dumps({"env": env_id, "kwargs": kwargs}, sort_keys=True).encode()).hexdigest()[:24]
    base_dir = store.root / "artifacts" / f"base-{digest}"
    try:
        out = {}
        if not (base_dir / "eval.json").exists():
            base_dir.mkdir(parents=True, exist_ok=True)
            _save_evaluation(base_dir, *evaluator.evaluate(None, None))
        out[BASE] = [json.loads((base_dir / "eval.json").read_text())]
        for label, hashes in by_label.items():
            out[label] = []
            for h in hashes:
                folder = _artifacts(store, h)
                if not (folder / "eval.json").exists():
                    _save_evaluation(folder, *evaluator.evaluate(folder / "adapter", np.load(folder / "rm_params.npy")))
                out[label].append(json.loads((folder / "eval.json").read_text()))
        return out
    finally:
        evaluator.close()


UPPER = "gold-bon"
"""The learner whose answers the RM-preference check compares every other learner's with: the
upper bound that picks by the judge itself (best-of-N by ``U``)."""


def _features(evaluator: _Evaluator, folder: Path, run: dict) -> np.ndarray:
    """The RM features of a run's evaluation answers: ``features.npy``, which :func:`evaluations`
    writes beside ``eval.json``; computed (and cached) here only for an evaluation cached
    before it did, so the evaluator loads the models only then."""
    path = folder / "features.npy"
    if not path.exists():
        _save_features(folder, evaluator.features(run["prompts"], run["answers"]))
    return np.load(path)


def preference_errors(
    store: Store, env_id: str, kwargs: dict, by_label: dict[str, list[str]], evals: dict[str, list[dict]]
) -> dict:
    """How often each learner's final RM prefers the worse of its policy's answer and the
    upper bound's (:data:`UPPER`) by the judge, on the eval prompts.

    For a learner's run of seed index ``i`` and the upper bound's run of the same index, on each
    eval prompt whose two greedy answers differ in ``U``: an error where the RM's scores of the two
    answers order them the other way (a tie in the RM's score counts one half). Rates are per
    seed over those prompts; the final head is the run's, the starting head (``r0``, the same
    for every run) is the baseline a learning RM is compared with. Also the share of prompts
    where the final RM scores the learner's answer above the upper bound's while the judge ranks
    it below: the "RM prefers the worse answer" rate. Empty where the suite has no upper bound.
    """
    if UPPER not in by_label:
        return {}
    evaluator = _Evaluator(env_id, kwargs)
    try:
        upper_runs = [(_artifacts(store, h), run) for h, run in zip(by_label[UPPER], evals[UPPER])]
        upper_features = [_features(evaluator, folder, run) for folder, run in upper_runs]
        out = {}
        for label, hashes in by_label.items():
            if label == UPPER:
                continue
            rows = []
            for i, (h, run) in enumerate(zip(hashes, evals[label])):
                if i >= len(upper_runs):
                    break
                folder = _artifacts(store, h)
                upper = upper_runs[i][1]
                if upper["prompts"] != run["prompts"]:
                    raise StoreError(f"runs {h} and {by_label[UPPER][i]} answered different eval prompts")
                f_own, f_up = _features(evaluator, folder, run), upper_features[i]
                du = np.asarray(run["quality"]) - np.asarray(upper["quality"])
                judged = np.abs(du) > 1e-9
                row = {"seed_index": i, "prompts": int(judged.sum())}
                for name, head in (("final", np.load(folder / "rm_params.npy")), ("initial", None)):
                    if head is None:
                        dr = np.asarray(run["reward_initial"]) - np.asarray(upper["reward_initial"])
                    else:
                        dr = f_own @ head - f_up @ head
                    wrong = np.where(dr == 0, 0.5, (np.sign(dr) != np.sign(du)).astype(float))
                    row[f"error_{name}"] = float(wrong[judged].mean()) if judged.any() else float("nan")
                    worse = du < -1e-9
                    row[f"prefers_worse_{name}"] = float(((dr > 0) & worse).sum() / max(worse.sum(), 1))
                rows.append(row)
            out[label] = rows
        return out
    finally:
        evaluator.close()


ITERATION_KEYS = (("reward_gap", "r - r(ref)"), ("quality_gap", "U - U(ref)"), ("response_tokens", "tokens"))
"""What the within-iteration table follows (history key, column name): the RM's score and the
judge's against the reference answer to the same prompt (which takes out most of the prompt's
difficulty), and the length."""


def _per_seed(training: dict[str, list[dict]], keys: tuple, statistic) -> dict[str, dict[str, np.ndarray]]:
    """Per learner and key of ``keys`` (``(history key, column name)`` pairs): ``statistic`` of each
    seed's series of that key, the seeds whose series is too short for it (``None``) left out."""
    out = {}
    for label, runs in training.items():
        out[label] = {}
        for key, _ in keys:
            values = [statistic(np.asarray(run[key], dtype=np.float64)) for run in runs]
            out[label][key] = np.array([v for v in values if v is not None])
    return out


def iteration_slopes(training: dict[str, list[dict]], m: int) -> dict[str, dict[str, np.ndarray]]:
    """Per learner and :data:`ITERATION_KEYS` key: each seed's mean least-squares slope per round
    of the key against the round's position inside an iteration of a loop whose RM is retrained
    every ``m`` rounds (rounds ``k m`` to ``k m + m - 1`` are scored by one RM; only whole iterations
    count). A positive slope of ``r - r(ref)`` with a negative one of ``U - U(ref)`` is the policy
    climbing a fixed RM while the judge's score falls."""
    position = np.arange(m, dtype=np.float64) - (m - 1) / 2

    def slope(x: np.ndarray) -> float | None:
        whole = len(x) // m
        if whole == 0:
            return None
        blocks = x[: whole * m].reshape(whole, m)
        return float((blocks @ position).mean() / (position @ position))

    return _per_seed(training, ITERATION_KEYS, slope)


def _mean_intervals(scores: dict[str, np.ndarray], reps: int, seed: int) -> dict[str, tuple[float, float, float]]:
    """Per label: the mean of its ``(seeds, 1)`` scores with rliable's 95% percentile bootstrap
    interval over seeds, ``(mean, low, high)``; one bootstrap over every label of ``scores``."""
    from agents.bench.stats import _intervals, _rliable

    _, metrics = _rliable()
    points, cis = _intervals(scores, lambda x: np.array([metrics.aggregate_mean(x)]), reps, seed)
    return {label: (float(points[label][0]), *(float(v) for v in cis[label][:, 0])) for label in scores}


def _seed_mean_table(
    values: dict[str, dict[str, np.ndarray]], keys: tuple, column: str, digits: int, reps: int, seed: int
) -> list[str]:
    """A table of :func:`_per_seed` values: per learner, the seeds, and per key the mean over seeds
    with its 95% bootstrap CI (``-`` where no seed has a value); columns ``f"{column} {name}"``."""
    lines = [
        "| learner | seeds | " + " | ".join(f"{column} {name}" for _, name in keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    for label, by_key in values.items():
        cells = []
        for key, _ in keys:
            v = by_key[key]
            cells.append("-" if len(v) == 0 else _ci(_mean_intervals({label: v[:, None]}, reps, seed)[label], digits))
        lines.append(f"| {label} | {max(len(v) for v in by_key.values())} | " + " | ".join(cells) + " |")
    return lines


def _iteration_lines(slopes: dict[str, dict[str, np.ndarray]], m: int, reps: int, seed: int) -> list[str]:
    return [
        "",
        f"### Inside an iteration: the RM is retrained every {m} rounds",
        "",
        f"Slope per round of each quantity against the round's position among the {m} rounds one RM scores, "
        "averaged over the run's whole iterations; mean over seeds with a 95% bootstrap CI over seeds (rliable). "
        "r - r(ref) rising while U - U(ref) falls is the policy climbing a fixed RM against the judge.",
        "",
        *_seed_mean_table(slopes, ITERATION_KEYS, "slope of", 4, reps, seed),
    ]


LATE_KEYS = (("quality_gap", "U - U(ref)"), ("reward_gap", "r - r(ref)"))
"""What the late-change table follows (history key, column name): the judge's and the RM's view of
the policy's answer against the reference answer to the same prompt."""


def late_changes(training: dict[str, list[dict]]) -> dict[str, dict[str, np.ndarray]]:
    """Per learner and :data:`LATE_KEYS` key: each seed's mean over the last fifth of the rounds
    minus its mean over the middle three fifths. Unlike the fall from a peak (a noisy curve's
    maximum always lies above its end), this difference of two fixed windows is zero in
    expectation for a policy that stops improving, so a CI below zero is a fall."""

    def change(x: np.ndarray) -> float | None:
        fifth = len(x) // 5
        return None if fifth == 0 else float(x[-fifth:].mean() - x[fifth:-fifth].mean())

    return _per_seed(training, LATE_KEYS, change)


def _late_lines(changes: dict[str, dict[str, np.ndarray]], rounds: int, reps: int, seed: int) -> list[str]:
    fifth = max(rounds // 5, 1)
    return [
        "",
        f"### The end against the middle: the last {fifth} rounds minus rounds {fifth + 1}-{rounds - fifth}",
        "",
        "Per seed, the mean over the last fifth of the rounds minus the mean over the middle three fifths; mean over "
        "seeds with a 95% bootstrap CI over seeds (rliable). U - U(ref) falling while r - r(ref) rises is the RM "
        "rating the policy's answers higher as the judge rates them lower.",
        "",
        *_seed_mean_table(changes, LATE_KEYS, "change of", 3, reps, seed),
    ]


def preference_statistics(errors: dict, reps: int = 2000, seed: int = 0) -> dict:
    """Per learner: the mean over seeds of each rate of :func:`preference_errors` with its 95%
    bootstrap CI over seeds (rliable's percentile intervals of the mean)."""
    if not errors:
        return {}
    out = {}
    keys = ("error_final", "error_initial", "prefers_worse_final", "prefers_worse_initial")
    for key in keys:
        scores = {label: np.array([[r[key]] for r in rows if not np.isnan(r[key])]) for label, rows in errors.items()}
        scores = {label: m for label, m in scores.items() if len(m)}
        if not scores:
            continue
        for label, interval in _mean_intervals(scores, reps, seed).items():
            out.setdefault(label, {})[key] = interval
    for label, rows in errors.items():
        out.setdefault(label, {})["prompts"] = float(np.mean([r["prompts"] for r in rows]))
    return out


def eval_statistics(evals: dict[str, list[dict]], reps: int = 2000, seed: int = 0) -> dict:
    """Means with CIs and pairwise win rates with CIs (module docstring)."""
    from agents.bench.stats import _intervals, _rliable, probability_of_improvement

    _, metrics = _rliable()
    seeds = max(len(v) for v in evals.values())
    matrices = {}
    for label, runs in evals.items():
        m = {k: np.array([run[k] for run in runs], dtype=np.float64) for k in ("quality", "tokens", "reward_initial")}
        if len(runs) == 1 and seeds > 1:  # the base policy is deterministic: one row stands for every seed
            m = {k: np.repeat(v, seeds, axis=0) for k, v in m.items()}
        matrices[label] = m

    def intervals(score_dict: dict, func) -> tuple[dict, dict]:
        return _intervals(score_dict, func, reps, seed, task_bootstrap=True)  # over seeds and prompts

    mean = lambda x: np.array([metrics.aggregate_mean(x)])  # noqa: E731
    table = {}
    for key in ("quality", "reward_initial", "tokens"):
        points, cis = intervals({label: m[key] for label, m in matrices.items()}, mean)
        for label in matrices:
            table.setdefault(label, {})[key] = (float(points[label][0]), *(float(v) for v in cis[label][:, 0]))
    labels = list(matrices)
    pairs = {f"{a}|{b}": [matrices[a]["quality"], matrices[b]["quality"]] for a in labels for b in labels if a != b}
    points, cis = intervals(pairs, probability_of_improvement)  # rliable's definition, vectorized
    wins = {tuple(k.split("|")): (float(np.squeeze(points[k])), *(float(v) for v in np.ravel(cis[k]))) for k in pairs}
    return {"labels": labels, "means": table, "wins": wins, "seeds": seeds, "prompts": matrices[labels[0]]["quality"].shape[1]}


def _ci(value: tuple, digits: int = 3) -> str:
    return f"{value[0]:.{digits}f} [{value[1]:.{digits}f}, {value[2]:.{digits}f}]"


def markdown(
    game: Any,
    training: dict[str, list[dict]],
    statistics: dict,
    evals: dict[str, list[dict]],
    preferences: dict | None = None,
    reps: int = 2000,
    seed: int = 0,
) -> str:
    """The text game's report as Markdown: training means, the held-out evaluation with its CIs, example answers."""
    fifth = max(game.rounds // 5, 1)
    lines = [
        f"## The text game: {game.id}, {game.rounds} rounds, env arguments {json.dumps(game.kwargs, sort_keys=True)}",
        "",
        f"### Training: means over the first and last {fifth} rounds, mean over seeds [lowest, highest seed]",
        "",
        "| learner | seeds | U | U - U(ref) | RM score r | tokens | KL to base |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, runs in training.items():
        cells = []
        for key in ("true_utility", "quality_gap", "proxy_reward", "response_tokens", "kl_to_base"):
            first = np.array([c[key][:fifth].mean() for c in runs])
            last = np.array([c[key][-fifth:].mean() for c in runs])
            digits = 1 if key == "response_tokens" else 3
            cells.append(
                f"{first.mean():.{digits}f} -> {last.mean():.{digits}f} [{last.min():.{digits}f}, {last.max():.{digits}f}]"
            )
        lines.append(f"| {label} | {len(runs)} | " + " | ".join(cells) + " |")
    labels = statistics["labels"]
    lines += [
        "",
        f"### Held-out evaluation: greedy answers to {statistics['prompts']} eval prompts, {statistics['seeds']} seeds",
        "",
        "Means with 95% bootstrap CIs over seeds and prompts (rliable); r0: the RM's starting head, the same judge "
        "for every policy. Win rate: P(the row's answer has the higher oracle quality than the column's), seed "
        "pairs, ties one half, averaged over prompts, with its 95% CI.",
        "",
        "| policy | oracle quality U | RM score r0 | tokens | " + " | ".join(f"win vs {b}" for b in labels) + " |",
        "|---|---|---|---|" + "---|" * len(labels),
    ]
    for a in labels:
        m = statistics["means"][a]
        wins = ["-" if a == b else _ci(statistics["wins"][(a, b)], 2) for b in labels]
        lines.append(
            f"| {a} | {_ci(m['quality'])} | {_ci(m['reward_initial'])} | {m['tokens'][0]:.1f} | " + " | ".join(wins) + " |"
        )
    lines += _peaks(training)
    lines += _late_lines(late_changes(training), game.rounds, reps, seed)
    m = int(game.kwargs.get("retrain_every", 1))
    if m > 1:
        lines += _iteration_lines(iteration_slopes(training, m), m, reps, seed)
    if preferences:
        lines += _preference_lines(preferences)
    lines += ["", "### Example answers", ""]
    lines += _examples(training, evals)
    return "\n".join(lines) + "\n"


def _peaks(training: dict[str, list[dict]]) -> list[str]:
    """Where each learner's smoothed U peaks, and how far it has fallen from the peak by the end."""
    lines = [
        "",
        f"### Does U peak and fall? ({SMOOTH}-round trailing mean of U, per seed)",
        "",
        "| learner | peak U | round of the peak | final U | fall from the peak | seeds falling > 0.25 |",
        "|---|---|---|---|---|---|",
    ]
    for label, runs in training.items():
        sm = [smooth(c["true_utility"]) for c in runs]
        peaks = np.array([x.max() for x in sm])
        at = np.array([int(np.argmax(x)) + 1 for x in sm])
        final = np.array([x[-1] for x in sm])
        fall = peaks - final
        lines.append(
            f"| {label} | {peaks.mean():.3f} | {np.median(at):.0f} (median) | {final.mean():.3f} | "
            f"{fall.mean():.3f} [{fall.min():.3f}, {fall.max():.3f}] | {int((fall > 0.25).sum())} of {len(runs)} |"
        )
    return lines


def _preference_lines(preferences: dict) -> list[str]:
    lines = [
        "",
        f"### Does the final RM prefer the worse answer? Each learner's greedy eval answers against {UPPER}'s",
        "",
        f"Per seed, on the eval prompts where the learner's answer and {UPPER}'s (same seed index) differ in U: "
        "the share the RM orders against the judge (error), and the share of the prompts where the learner's "
        "answer is the worse by U that the RM scores above it (prefers worse). Final: the run's own RM at the end; "
        "r0: the starting head. Mean over seeds with a 95% bootstrap CI over seeds.",
        "",
        "| learner | prompts compared | error, final RM | error, r0 | prefers worse, final RM | prefers worse, r0 |",
        "|---|---|---|---|---|---|",
    ]
    for label, m in preferences.items():
        cells = [
            _ci(m[k], 2) if k in m else "-"
            for k in ("error_final", "error_initial", "prefers_worse_final", "prefers_worse_initial")
        ]
        lines.append(f"| {label} | {m['prompts']:.1f} | " + " | ".join(cells) + " |")
    return lines


def _quote(text: str, limit: int = 220) -> str:
    text = " ".join(text.split())
    return (text[:limit] + "...") if len(text) > limit else text


def _examples(training: dict[str, list[dict]], evals: dict[str, list[dict]]) -> list[str]:
    lines = ["Training responses of each learner's first seed, its first three rounds and its last three:", ""]
    for label, runs in training.items():
        rows = runs[0]["rows"]
        lines.append(f"**{label}**")
        lines.append("")
        for when, picked in (("early", rows[:3]), ("late", rows[-3:])):
            for row in picked:
                lines.append(
                    f"- {when}, round {row['round'] + 1}, U {row['true_utility']:.2f}, r {row['proxy_reward']:.2f}, "
                    f"{row['response_tokens']} tokens. *{_quote(row['prompt'], 90)}* -> {_quote(row['response'])}"
                )
        lines.append("")
    base = evals[BASE][0]
    lines += ["Greedy answers to the first three eval prompts (each learner's first seed):", ""]
    for i in range(min(3, len(base["prompts"]))):
        lines.append(f"*{_quote(base['prompts'][i], 120)}*")
        lines.append("")
        for label, runs in evals.items():
            run = runs[0]
            lines.append(f"- {label} (U {run['quality'][i]:.2f}, r0 {run['reward_initial'][i]:.2f}): {_quote(run['answers'][i])}")
        lines.append("")
    return lines


def plot_curves(training: dict[str, list[dict]], path: Path, title: str) -> None:
    """The text game's training curves per learner: mean over seeds, band from lowest to highest seed."""
    from agents.bench.plots import colors_for, pyplot

    plt = pyplot()
    colors = colors_for(list(training))
    # Constrained layout keeps every axis label inside the figure (tight_layout cut the lower-left one).
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), sharex=True, layout="constrained")
    for ax, (key, name) in zip(axes.flat, CURVES):
        for label, runs in training.items():
            ys = np.stack([smooth(c[key]) for c in runs])
            x = np.arange(1, ys.shape[1] + 1)
            color = colors[label]
            ax.plot(x, ys.mean(0), color=color, lw=2, label=f"{label} (mean of {len(runs)} seeds)")
            ax.fill_between(x, ys.min(0), ys.max(0), color=color, alpha=0.18, lw=0)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("round")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=len(names), fontsize=10, frameon=False)
    fig.suptitle(f"{title}\n{SMOOTH}-round trailing means; line: mean over seeds, band: lowest to highest seed", fontsize=12)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_kl(training: dict[str, list[dict]], path: Path, title: str) -> None:
    """U and the RM's score against the policy's KL to the base LM, per learner: the smoothed
    per-round means over seeds (the over-optimization plot of Gao et al. 2022)."""
    from agents.bench.plots import colors_for, pyplot

    plt = pyplot()
    colors = colors_for(list(training))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, key, name in ((axes[0], "true_utility", "oracle quality U"), (axes[1], "proxy_reward", "RM score r")):
        for label, runs in training.items():
            kl = np.stack([smooth(c["kl_to_base"]) for c in runs]).mean(0)
            ys = np.stack([smooth(c[key]) for c in runs]).mean(0)
            if np.isnan(kl).all():
                continue
            ax.plot(np.sqrt(np.maximum(kl, 0.0)), ys, color=colors[label], lw=2, label=label)
            ax.plot(np.sqrt(max(kl[-1], 0.0)), ys[-1], "o", color=colors[label])
        ax.set_xlabel("sqrt(KL to the base LM), nats^0.5")
        ax.set_ylabel(f"{name}, {SMOOTH}-round trailing mean")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=9, frameon=False)
    fig.suptitle(f"{title}\nmean over seeds; a dot marks the last round", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_eval(statistics: dict, path: Path, title: str) -> None:
    """The held-out evaluation: each policy's mean oracle quality and starting-RM score with their 95% CIs."""
    from agents.bench.plots import pyplot

    plt = pyplot()
    labels = statistics["labels"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, name in ((axes[0], "quality", "oracle quality U"), (axes[1], "reward_initial", "RM score r0 (starting head)")):
        values = [statistics["means"][label][key] for label in labels]
        y = np.arange(len(labels))
        ax.errorbar(
            [v[0] for v in values],
            y,
            xerr=[[v[0] - v[1] for v in values], [v[2] - v[0] for v in values]],
            fmt="o",
            capsize=4,
        )
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        ax.set_xlabel(f"mean {name}, 95% CI")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(game: Any, store: Store, jobs: list[dict], out: Path, reps: int = 2000, seed: int = 0, plots: bool = True) -> Path:
    """Write ``text_report.md`` (and ``text_curves.png``, ``text_eval.png``) for one text game
    of a suite; returns the report's path."""
    by_label: dict[str, list[str]] = {}
    for job in jobs:
        if job["env"] == game.id:
            by_label.setdefault(job["label"], []).extend(job["hashes"])
    training = {}
    for label, hashes in by_label.items():
        training[label] = []
        for h in hashes:
            rows = read_rounds(store, h)
            training[label].append({"rows": rows, "seed": store.header(h)["key"]["seed"], **curves(rows)})
    write_rounds_csv(training, Path(out) / "text_rounds.csv")
    evals = evaluations(store, game.id, game.kwargs, by_label)
    statistics = eval_statistics(evals, reps, seed)
    preferences = preference_statistics(preference_errors(store, game.id, game.kwargs, by_label, evals), reps, seed)
    report = Path(out) / "text_report.md"
    report.write_text(markdown(game, training, statistics, evals, preferences, reps, seed))
    if plots:
        where = f"{game.id}, {json.dumps(game.kwargs, sort_keys=True)}"
        plot_curves(training, Path(out) / "text_curves.png", f"{where}: training")
        plot_kl(training, Path(out) / "text_kl.png", f"{where}: U and r against the KL to the base LM")
        plot_eval(statistics, Path(out) / "text_eval.png", f"{where}: greedy answers to the eval prompts")
    return report
