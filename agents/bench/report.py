"""The suite's leaderboard (Markdown, CSV), per-seed results (CSV) and figures, from the store.

Everything here reads the store only, so a report is recomputed without rerunning; it is
skipped when the runs (their keys and their files' checksums) and options it would read are
those of the report already written. Tables and figures are per game entry of the suite
(:attr:`agents.bench.suite.GameEntry.name`: the id, with its label where two entries share
one); a game whose runs record more than the shared metrics gets its own columns
(:data:`EXTRA_COLUMNS`) and, for the token game, its over-optimisation figure.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

import numpy as np

import fpo_envs
from agents.bench import stats
from agents.bench.store import Store
from agents.bench.suite import GameEntry, Suite

REPORT_VERSION = 6
"""Part of a report's signature: raise it when what the report writes changes, so a report
already written is rewritten rather than skipped as up to date."""
CURVE_KEYS = ("true_utility", "noise_norm")
"""The panels of a vector game's curves figure."""
TEXT_CURVE_KEYS = ("true_utility", "response_tokens")
"""The panels of the text game's curves figure (its answers' length where the vector games have the noise norm)."""
TOKEN_CURVE_KEYS = ("true_utility", "hack_share")
"""The panels of the token game's curves figure (the share of hack tokens in the output where
the vector games have the noise norm; its over-optimisation figure draws the rest)."""
MARGIN_WINDOW = 10
"""Rounds at the end of a run over which the token game's ``rm_margin_to_optimum`` is averaged:
a seed whose mean margin over them is above zero ends with the RM preferring the learner's
output to the optimum ``y*`` (``rm_prefers_output``)."""
PEAK_FALL = 0.75
"""The token game's collapse as its docstring defines it: ``U``, smoothed over
:data:`MARGIN_WINDOW` rounds, ends at or below this share of its own peak (``falls_from_peak``),
and the RM ends preferring the output to the optimum (``collapses``). The leaderboard's collapse
rate (the final score below :data:`agents.bench.stats.COLLAPSE_BELOW` of ``U*``) counts a token
learner that holds its start (about 0.41 of ``U*``) as collapsed."""
EXTRA_COLUMNS = {
    "rm_prefers_output": "RM prefers output",
    "falls_from_peak": "U falls from peak",
    "collapses": "falls and RM prefers",
    "final_kl_to_base": "final KL to base",
}
"""A game's own per-seed figures (:attr:`agents.bench.stats.LearnerScores.extras`) and their
leaderboard headings, shown for the games whose runs have them: the share of seeds whose RM
ends preferring the output to ``y*`` (:data:`MARGIN_WINDOW`), and the mean exact
``KL(pi || pi_0)`` at the last round (the token learners' ``kl_to_base`` record)."""


def _curve_keys(env_id: str) -> tuple[str, ...]:
    return {"text": TEXT_CURVE_KEYS, "token": TOKEN_CURVE_KEYS}.get(fpo_envs.game_of_id(env_id), CURVE_KEYS)


def _game_name(job: dict) -> str:
    # Jobs planned before game entries had names are keyed by their env id.
    return job.get("game", job["env"])


def collect(suite: Suite, store: Store, jobs: list[dict], curves: bool = True) -> dict[str, dict[str, stats.LearnerScores]]:
    """Per game entry (its name), per learner label: the per-seed scores, the game's own
    figures (:data:`EXTRA_COLUMNS`, where the runs have what they need) and the histories
    for the figures (each key every run of the learner has)."""
    from agents.bench.plots import TOKEN_KEYS

    per_game: dict[str, dict[str, stats.LearnerScores]] = {}
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for job in jobs:
        grouped.setdefault((_game_name(job), job["env"], job["label"]), []).extend(job["hashes"])
    for (name, env_id, label), hashes in grouped.items():
        text = fpo_envs.game_of_id(env_id) == "text"
        keys = _curve_keys(env_id) + ("signal_norm", "theta") + TOKEN_KEYS
        if text:  # a text run stored under the metric names of before, read under today's
            from fpo_envs.lm.names import RENAMED_INFO_KEYS, with_current_names

            keys += tuple(RENAMED_INFO_KEYS)
        seeds, finals, peaks, gaps, noises, histories, extras = [], [], [], [], [], {}, {}
        for h in hashes:
            header, history = store.read(h, keys if curves else ("rm_margin_to_optimum", "true_utility"))
            s = header["summary"]
            if text:
                history, s = with_current_names(history), with_current_names(s)
            optimum = s["optimum"]
            seeds.append(header["key"]["seed"])
            finals.append(s["final_true_utility"] / optimum)
            peaks.append(s["peak_true_utility"] / optimum)
            gaps.append((s["final_proxy_reward"] - s["final_true_utility"]) / optimum)
            noises.append(s.get("final_noise_norm", np.nan))  # the vector games' noise; none in the text game
            if "rm_margin_to_optimum" in history:
                margin = float(np.mean(history["rm_margin_to_optimum"][-MARGIN_WINDOW:]))
                extras.setdefault("rm_prefers_output", []).append(float(margin > 0))
                u = np.asarray(history["true_utility"], dtype=np.float64)
                smooth = np.convolve(u, np.ones(MARGIN_WINDOW) / MARGIN_WINDOW, "valid") if len(u) >= MARGIN_WINDOW else u
                falls = float(len(smooth) > 0 and smooth[-1] <= PEAK_FALL * smooth.max())
                extras.setdefault("falls_from_peak", []).append(falls)
                extras.setdefault("collapses", []).append(float(falls and margin > 0))
            if "final_kl_to_base" in s:
                extras.setdefault("final_kl_to_base", []).append(s["final_kl_to_base"])
            for k, v in history.items():
                if curves:
                    histories.setdefault(k, []).append(v)
        # A figure or column only where every run has it (a run stored before a record existed lacks it).
        n = len(hashes)
        histories = {k: v for k, v in histories.items() if len(v) == n}
        extras = {k: v for k, v in extras.items() if len(v) == n}
        per_game.setdefault(name, {})[label] = stats.LearnerScores(
            label,
            np.array(seeds),
            np.array(finals),
            np.array(peaks),
            np.array(gaps),
            np.array(noises),
            {k: np.stack(v, axis=1) for k, v in histories.items()},
            {k: np.array(v) for k, v in extras.items()},
        )
    return per_game


def _signature(suite: Suite, store: Store, jobs: list[dict], reps: int, seed: int, plots: bool) -> str:
    # The runs' checksums too: a run rewritten under the same key (a corrupt one rerun) is new input.
    content = {
        "version": REPORT_VERSION,
        "suite": suite.name,
        "reps": reps,
        "seed": seed,
        "plots": plots,
        "runs": [(_game_name(j), j["label"], j["hashes"], [store.checksum(h) for h in j["hashes"]]) for j in jobs],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _ci(row: dict, name: str, digits: int = 3) -> str:
    return f"{row[name]:.{digits}f} [{row[name + '_low']:.{digits}f}, {row[name + '_high']:.{digits}f}]"


def markdown(suite: Suite, tables: dict[str, list[dict]], aggregate: list[dict]) -> str:
    """The leaderboard of ``suite`` as Markdown: a table per game entry (``tables`` by entry
    name) and, across games, ``aggregate``."""
    game = {g.name: g for g in suite.games}
    extra = {name for rows in tables.values() for row in rows for name in EXTRA_COLUMNS if name in row}
    lines = [
        f"## Leaderboard: suite `{suite.name}`",
        "",
        "Score: final true utility / U(y*) per seed. IQM, median over seeds and collapse rate (share of seeds whose "
        f"score ends below {stats.COLLAPSE_BELOW}) with stratified-bootstrap 95% CIs; P(> rlhf): probability of "
        "improvement over `rlhf` with its CI; peak and drop (peak minus final) are means of normalised utilities; gap: "
        "final proxy minus true utility, over U(y*). Across games, IQM, median and collapse rate are over all runs "
        "pooled (seeds x games). Bootstrap and probability of improvement computed with rliable.",
        "",
    ]
    notes = []
    if "rm_prefers_output" in extra:
        notes.append(
            "RM prefers output: share of seeds whose RM margin of the output over the optimum y* "
            f"(rm_margin_to_optimum), averaged over the last {MARGIN_WINDOW} rounds, is above zero"
        )
    if "falls_from_peak" in extra:
        notes.append(
            f"U falls from peak: share of seeds whose true utility, smoothed over {MARGIN_WINDOW} rounds, ends at or "
            f"below {PEAK_FALL} of its own peak; falls and RM prefers: both at once (the token game's collapse)"
        )
    if "final_kl_to_base" in extra:
        notes.append("final KL to base: mean over seeds of the exact KL(pi || pi_0) of the last round's policy")
    if notes:
        lines += ["; ".join(notes) + "; each with its bootstrap 95% CI.", ""]
    for name, rows in tables.items():
        g = game[name]
        where = " at the policy mean theta" if g.metric_prefix == "theta_" else ""
        columns = [c for c in EXTRA_COLUMNS if any(c in row for row in rows)]
        lines += [
            f"### {name}: {g.rounds} rounds{where}",
            "",
            "| learner | seeds | IQM | median | collapse rate | mean peak | mean drop | mean gap | P(> rlhf) |"
            + "".join(f" {EXTRA_COLUMNS[c]} |" for c in columns),
            "|---|---|---|---|---|---|---|---|---|" + "---|" * len(columns),
        ]
        for row in rows:
            poi = _ci(row, "p_improve", 2) if "p_improve" in row else "-"
            lines.append(
                f"| {row['learner']} | {row['seeds']} | {_ci(row, 'iqm')} | {_ci(row, 'median')} | "
                f"{_ci(row, 'collapse_rate', 2)} | {row['mean_peak']:.3f} | {row['mean_drop']:.3f} | "
                f"{row['mean_final_gap']:.3f} | {poi} |" + "".join(f" {_ci(row, c, 2) if c in row else '-'} |" for c in columns)
            )
        lines.append("")
    if aggregate and len(tables) > 1:
        lines += [
            f"### All games: the first {aggregate[0]['seeds']} seeds of each game pooled, bootstrap strata per game",
            "",
            "| learner | runs | IQM of all runs | median of all runs | collapse rate of all runs | P(> rlhf), mean over games |",
            "|---|---|---|---|---|---|",
        ]
        for row in aggregate:
            poi = _ci(row, "p_improve", 2) if "p_improve" in row else "-"
            lines.append(
                f"| {row['learner']} | {row['seeds']} x {row['games']} | {_ci(row, 'iqm')} | {_ci(row, 'median')} | "
                f"{_ci(row, 'collapse_rate', 2)} | {poi} |"
            )
        lines.append("")
    return "\n".join(lines)


def write(
    suite: Suite,
    store: Store,
    jobs: list[dict],
    out: Path,
    reps: int = 2000,
    seed: int = 0,
    plots: bool = True,
    force: bool = False,
) -> Path:
    """Write ``leaderboard.md``/``.csv``, ``per_seed.csv`` and the figures to ``out``; returns
    the leaderboard's path. Skipped when ``out`` already holds this exact report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    signature = _signature(suite, store, jobs, reps, seed, plots)
    stamp = out / "report.json"
    board = out / "leaderboard.md"
    if not force and board.exists() and stamp.exists() and json.loads(stamp.read_text()).get("signature") == signature:
        return board
    per_game = collect(suite, store, jobs, curves=plots)
    tables = {name: stats.game_table(scores, reps, seed) for name, scores in per_game.items()}
    aggregate, matrices = stats.aggregate_table(per_game, reps, seed) if len(per_game) > 1 else ([], {})
    board.write_text(markdown(suite, tables, aggregate))
    _write_csv(
        out / "leaderboard.csv",
        [{"game": g, **row} for g, rows in tables.items() for row in rows] + [{"game": "all", **row} for row in aggregate],
    )
    _write_csv(
        out / "per_seed.csv",
        [
            {
                "game": g,
                "learner": label,
                "seed": int(s.seeds[i]),
                "final_norm": float(s.final[i]),
                "peak_norm": float(s.peak[i]),
                "final_gap_norm": float(s.gap[i]),
                "final_noise_norm": float(s.noise[i]),
                **{name: float(values[i]) for name, values in s.extras.items()},
            }
            for g, scores in per_game.items()
            for label, s in scores.items()
            for i in range(len(s.final))
        ],
    )
    if plots:
        _figures(suite, per_game, tables, aggregate, matrices, out, reps, seed)
    for g in suite.games:
        if fpo_envs.game_of_id(g.id) == "text":
            from agents.bench import text_report

            text_report.write(g, store, [j for j in jobs if _game_name(j) == g.name], out, reps, seed, plots)
    stamp.write_text(json.dumps({"signature": signature}))
    return board


def _write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _slug(env_id: str) -> str:
    return env_id.split("/")[-1].split("-")[0].lower()


def _file_stem(game: GameEntry) -> str:
    """A game entry's part of its figures' file names: ``linearrm``, ``tokenrm_retrain-every-25``."""
    label = re.sub(r"[^a-z0-9]+", "-", game.label.lower()).strip("-")
    return _slug(game.id) + (f"_{label}" if label else "")


def _figures(suite, per_game, tables, aggregate, matrices, out: Path, reps: int, seed: int) -> None:
    import gymnasium as gym

    import fpo_envs  # noqa: F401
    from agents.bench import plots

    game = {g.name: g for g in suite.games}
    interval_tables = dict(tables)
    if aggregate and len(tables) > 1:
        interval_tables["all games"] = aggregate
    plots.plot_interval_estimates(interval_tables, out / "interval_estimates.png", f"suite {suite.name}: final true utility")
    for name, scores in per_game.items():
        g = game[name]
        env = gym.make(g.id, **g.kwargs).unwrapped
        optimum = env.optimum()[1] if hasattr(env, "optimum") else None
        runs = {label: s.histories for label, s in scores.items()}
        where = " (policy mean theta)" if g.metric_prefix == "theta_" else ""
        stem = _file_stem(g)
        plots.plot_curves(runs, _curve_keys(g.id), out / f"curves_{stem}.png", f"{name}{where}", optimum)
        if any("theta" in h for h in runs.values()):
            plots.plot_pca_portrait(
                {label: h["theta"] for label, h in runs.items() if "theta" in h},
                env.oracle,
                out / f"portrait_{stem}.png",
                f"{name}: the policy mean's path",
            )
        elif hasattr(env, "signal_dims") and "signal_norm" in next(iter(runs.values())):
            plots.plot_phase_portrait(
                runs, env.oracle, env.signal_dims, out / f"portrait_{stem}.png", f"{name}: signal against noise"
            )
        if fpo_envs.game_of_id(g.id) == "token" and any(all(k in h for k in plots.TOKEN_KEYS) for h in runs.values()):
            retrain = env.params.retrain_every
            plots.plot_token_game(
                runs,
                out / f"token_{stem}.png",
                f"{name}: {g.rounds} rounds, RM retrained every {f'{retrain} rounds' if retrain > 1 else 'round'}",
                optimum,
                retrain_every=retrain,
            )
        env.close()
    if not matrices and len(per_game) == 1:
        matrices = {label: s.final[:, None] for label, s in next(iter(per_game.values())).items()}
    if matrices:
        taus = np.linspace(0.0, 1.05, 106)
        profiles, cis = stats.performance_profiles(matrices, taus, reps, seed)
        plots.plot_performance_profiles(
            profiles, cis, taus, out / "performance_profiles.png", f"suite {suite.name}: performance profiles, all games"
        )
