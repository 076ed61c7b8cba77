"""The suite's leaderboard (Markdown, CSV), per-seed results (CSV) and figures, from the store.

Everything here reads the store only, so a report is recomputed without rerunning; it is
skipped when the runs (their keys and their files' checksums) and options it would read are
those of the report already written.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np

import fpo_envs
from agents.bench import stats
from agents.bench.store import Store
from agents.bench.suite import Suite

REPORT_VERSION = 5
"""Part of a report's signature: raise it when what the report writes changes, so a report
already written is rewritten rather than skipped as up to date."""
CURVE_KEYS = ("true_utility", "noise_norm")
"""The panels of a vector game's curves figure."""
TEXT_CURVE_KEYS = ("true_utility", "response_tokens")
"""The panels of the text game's curves figure (its answers' length where the vector games have the noise norm)."""


def _curve_keys(env_id: str) -> tuple[str, ...]:
    return TEXT_CURVE_KEYS if fpo_envs.game_of_id(env_id) == "text" else CURVE_KEYS


def collect(suite: Suite, store: Store, jobs: list[dict], curves: bool = True) -> dict[str, dict[str, stats.LearnerScores]]:
    """Per game, per learner label: the per-seed scores (and histories for the figures)."""
    per_game: dict[str, dict[str, stats.LearnerScores]] = {}
    grouped: dict[tuple[str, str], list[str]] = {}
    for job in jobs:
        grouped.setdefault((job["env"], job["label"]), []).extend(job["hashes"])
    for (env_id, label), hashes in grouped.items():
        text = fpo_envs.game_of_id(env_id) == "text"
        keys = _curve_keys(env_id) + ("signal_norm", "theta")
        if text:  # a text run stored under the metric names of before, read under today's
            from fpo_envs.lm.names import RENAMED_INFO_KEYS, with_current_names

            keys += tuple(RENAMED_INFO_KEYS)
        seeds, finals, peaks, gaps, noises, histories = [], [], [], [], [], {}
        for h in hashes:
            header, history = store.read(h, keys if curves else ())
            s = header["summary"]
            if text:
                history, s = with_current_names(history), with_current_names(s)
            optimum = s["optimum"]
            seeds.append(header["key"]["seed"])
            finals.append(s["final_true_utility"] / optimum)
            peaks.append(s["peak_true_utility"] / optimum)
            gaps.append((s["final_proxy_reward"] - s["final_true_utility"]) / optimum)
            noises.append(s.get("final_noise_norm", np.nan))  # the vector games' noise; none in the text game
            for k, v in history.items():
                histories.setdefault(k, []).append(v)
        per_game.setdefault(env_id, {})[label] = stats.LearnerScores(
            label,
            np.array(seeds),
            np.array(finals),
            np.array(peaks),
            np.array(gaps),
            np.array(noises),
            {k: np.stack(v, axis=1) for k, v in histories.items()},
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
        "runs": [(j["env"], j["label"], j["hashes"], [store.checksum(h) for h in j["hashes"]]) for j in jobs],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _ci(row: dict, name: str, digits: int = 3) -> str:
    return f"{row[name]:.{digits}f} [{row[name + '_low']:.{digits}f}, {row[name + '_high']:.{digits}f}]"


def markdown(suite: Suite, tables: dict[str, list[dict]], aggregate: list[dict]) -> str:
    """The leaderboard of ``suite`` as Markdown: a table per game and, across games, ``aggregate``."""
    game = {g.id: g for g in suite.games}
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
    for env_id, rows in tables.items():
        g = game[env_id]
        where = " at the policy mean theta" if g.metric_prefix == "theta_" else ""
        lines += [
            f"### {env_id}: {g.rounds} rounds{where}",
            "",
            "| learner | seeds | IQM | median | collapse rate | mean peak | mean drop | mean gap | P(> rlhf) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            poi = _ci(row, "p_improve", 2) if "p_improve" in row else "-"
            lines.append(
                f"| {row['learner']} | {row['seeds']} | {_ci(row, 'iqm')} | {_ci(row, 'median')} | "
                f"{_ci(row, 'collapse_rate', 2)} | {row['mean_peak']:.3f} | {row['mean_drop']:.3f} | "
                f"{row['mean_final_gap']:.3f} | {poi} |"
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
    tables = {env_id: stats.game_table(scores, reps, seed) for env_id, scores in per_game.items()}
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

            text_report.write(g, store, jobs, out, reps, seed, plots)
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


def _figures(suite, per_game, tables, aggregate, matrices, out: Path, reps: int, seed: int) -> None:
    import gymnasium as gym

    import fpo_envs  # noqa: F401
    from agents.bench import plots

    game = {g.id: g for g in suite.games}
    interval_tables = dict(tables)
    if aggregate and len(tables) > 1:
        interval_tables["all games"] = aggregate
    plots.plot_interval_estimates(interval_tables, out / "interval_estimates.png", f"suite {suite.name}: final true utility")
    for env_id, scores in per_game.items():
        g = game[env_id]
        env = gym.make(env_id, **g.kwargs).unwrapped
        optimum = env.optimum()[1] if hasattr(env, "optimum") else None
        runs = {label: s.histories for label, s in scores.items()}
        where = " (policy mean theta)" if g.metric_prefix == "theta_" else ""
        plots.plot_curves(runs, _curve_keys(env_id), out / f"curves_{_slug(env_id)}.png", f"{env_id}{where}", optimum)
        if any("theta" in h for h in runs.values()):
            plots.plot_pca_portrait(
                {label: h["theta"] for label, h in runs.items() if "theta" in h},
                env.oracle,
                out / f"portrait_{_slug(env_id)}.png",
                f"{env_id}: the policy mean's path",
            )
        elif hasattr(env, "signal_dims") and "signal_norm" in next(iter(runs.values())):
            plots.plot_phase_portrait(
                runs, env.oracle, env.signal_dims, out / f"portrait_{_slug(env_id)}.png", f"{env_id}: signal against noise"
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
