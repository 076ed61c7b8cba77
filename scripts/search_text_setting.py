"""The setting search behind the text game's ``loop`` profile: short runs of ``rlhf`` and
``fpo-relaxed`` on search seeds (disjoint from the reported seeds) under candidate
settings of the default SmolLM2/MiniLM preset, and the curves of what was tried.

    python scripts/search_text_setting.py                 # every candidate, 60 rounds, seed 100
    python scripts/search_text_setting.py --only lr1e-3-bias0.1 --rounds 100
    python scripts/search_text_setting.py --profile gold --out results/text-gold-search   # the gold profile's grid
    python scripts/search_text_setting.py --profile gold --learners rlhf --rounds 80 --out results/text-gold-search

Runs go through the benchmark harness's store (``--out``/store), so a killed search resumes
and a rerun only redraws. Writes ``search.md`` (per candidate and learner: U, RM score and
length over the first and last fifth of the rounds) and ``search.png`` (oracle quality
against the base policy's reference, and RM score, over rounds; one column per candidate).
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import numpy as np

from agents.bench.runner import execute, plan
from agents.bench.store import Store
from agents.bench.suite import GameEntry, LearnerEntry, Suite
from agents.bench.text_report import smooth
from fpo_envs.lm.names import with_current_names

# Every candidate: 4 candidates of 24 tokens (a round in about 4 s on one core), one SFT
# step per round (no accumulation), the warm RM head with length bias 0.1; what varies is
# the policy's step size and the RM head's.
BASE_ENV = {"max_new_tokens": 24}
BASE_LEARNER = {"n_candidates": 4, "max_new_tokens": 24, "grad_accum": 1}
CANDIDATES = {
    # round 1: the RM head at lr 1e-3 follows the oracle fast; a policy at lr 1e-3 degenerates
    "lr1e-3-rm1e-3": ({"rm_init": "warm", "rm_bias": 0.1, "rm_lr": 1e-3}, {"lr": 1e-3}),
    # round 2: a slower RM (it keeps its warm preferences longer) and slower policies
    "lr1e-3-rm1e-4": ({"rm_init": "warm", "rm_bias": 0.1, "rm_lr": 1e-4}, {"lr": 1e-3}),
    "lr3e-4-rm1e-4": ({"rm_init": "warm", "rm_bias": 0.1, "rm_lr": 1e-4}, {"lr": 3e-4}),
    "lr1e-4-rm1e-4": ({"rm_init": "warm", "rm_bias": 0.1, "rm_lr": 1e-4}, {"lr": 1e-4}),
    "lr3e-4-rm1e-3": ({"rm_init": "warm", "rm_bias": 0.1, "rm_lr": 1e-3}, {"lr": 3e-4}),
}
GOLD_CANDIDATES = {
    # The gold profile as it ships: a random RM head at lr 1e-3, policy lr 3e-4.
    "gold": ({}, {}),
    # A length-biased warm head (the loop profile's blind spot) under the gold judge.
    "gold-warm-bias0.1": ({"rm_init": "warm", "rm_bias": 0.1}, {}),
    # A faster RM head: it learns the judge's labels 10x faster, so the policy has more to
    # climb and more to exploit; a faster policy; the RM held for 10 rounds between retrainings.
    "gold-rm1e-2": ({"rm_lr": 1e-2}, {}),
    "gold-lr1e-3": ({}, {"lr": 1e-3}),
    "gold-rm1e-2-lr1e-3": ({"rm_lr": 1e-2}, {"lr": 1e-3}),
    "gold-retrain10": ({"retrain_every": 10}, {}),
}
"""``--profile gold``: candidates on top of the ``gold`` profile (``rlhf``, ``fpo-relaxed`` and the
``gold-bon`` upper bound each, unless ``--learners`` names others)."""
LEARNERS = ("rlhf", "fpo-relaxed")
GOLD_LEARNERS = (*LEARNERS, "gold-bon")


def candidate_suite(name: str, rounds: int, seed: int, learners: tuple[str, ...] | None = None) -> Suite:
    """One candidate's runs: its learners (``learners``, default the grid's) on ``seed``."""
    if name in GOLD_CANDIDATES:
        env, learner = GOLD_CANDIDATES[name]
        env, learners = {"profile": "gold", **env}, learners or GOLD_LEARNERS
    else:
        (env, learner), learners = CANDIDATES[name], learners or LEARNERS
        env, learner = {**BASE_ENV, **env}, {**BASE_LEARNER, **learner}
    game = GameEntry("FPO/TextRM-v0", rounds=rounds, seeds=1, first_seed=seed, batch=1, kwargs=env)
    return Suite(
        name=f"text-search-{name}",
        games=(game,),
        learners=tuple(LearnerEntry(id=i, config=dict(learner)) for i in learners),
        threads=1,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="loop", choices=["loop", "gold"], help="the candidates' grid (default: loop's)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(CANDIDATES) + sorted(GOLD_CANDIDATES),
        help="candidates to run (default: all of the grid)",
    )
    parser.add_argument(
        "--learners", nargs="+", choices=sorted({*LEARNERS, *GOLD_LEARNERS}), help="learners to run (default: the grid's)"
    )
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--seed", type=int, default=100, help="search seed (the reports use seeds 0-4)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="results/text-search")
    args = parser.parse_args(argv)
    names = args.only or list(GOLD_CANDIDATES if args.profile == "gold" else CANDIDATES)
    store = Store(Path(args.out) / "store")
    learners = tuple(args.learners) if args.learners else None
    suites = {name: candidate_suite(name, args.rounds, args.seed, learners) for name in names}
    jobs = {name: plan(s) for name, s in suites.items()}
    execute([j for js in jobs.values() for j in js], store, workers=args.workers)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fifth = max(args.rounds // 5, 1)
    lines = [
        f"## Setting search: the {args.profile} grid, seed {args.seed}",
        "",
        f"{args.rounds} rounds; means over the first and last {fifth} rounds.",
        "",
        "| candidate | learner | U: first -> last | U - U(ref): first -> last | RM score r: first -> last "
        "| tokens: first -> last | U - U(ref), 10-round mean: peak (round) -> last | r, 10-round mean: at the peak -> last |",
        "|---|---|---|---|---|---|---|---|",
    ]
    # Candidates in blocks of at most 3 columns, each block two rows (U - U(ref) above, r below),
    # so that a grid of six stays readable at the documentation's width.
    ncols = min(3, len(names))
    blocks = -(-len(names) // ncols)
    fig, grid = plt.subplots(2 * blocks, ncols, figsize=(4.4 * ncols, 3.3 * 2 * blocks), squeeze=False, sharex=True)
    axes = np.empty((2, len(names)), dtype=object)
    for i in range(len(names)):
        axes[0, i], axes[1, i] = grid[2 * (i // ncols), i % ncols], grid[2 * (i // ncols) + 1, i % ncols]
    for i in range(len(names), blocks * ncols):  # the empty cells of a last, short block
        grid[2 * (i // ncols), i % ncols].set_visible(False)
        grid[2 * (i // ncols) + 1, i % ncols].set_visible(False)
    for col, name in enumerate(names):
        for job in jobs[name]:
            _, h = store.read(job["hashes"][0])
            h = with_current_names(h)  # a run stored under the text game's earlier metric names too
            u, gap, r, n = (
                np.asarray(h[k], dtype=np.float64) for k in ("true_utility", "quality_gap", "proxy_reward", "response_tokens")
            )
            # The peak of the smoothed gap over full 10-round windows only (a window of one round
            # at the start is a single prompt's luck), and the RM's smoothed score there.
            gap_sm, r_sm = smooth(gap), smooth(r)
            full = min(9, len(gap) - 1)
            peak = full + int(np.argmax(gap_sm[full:]))
            lines.append(
                f"| {name} | {job['label']} | {u[:fifth].mean():.3f} -> {u[-fifth:].mean():.3f} | "
                f"{gap[:fifth].mean():+.3f} -> {gap[-fifth:].mean():+.3f} | "
                f"{r[:fifth].mean():.3f} -> {r[-fifth:].mean():.3f} | {n[:fifth].mean():.1f} -> {n[-fifth:].mean():.1f} | "
                f"{gap_sm[peak]:+.2f} ({peak + 1}) -> {gap_sm[-1]:+.2f} | {r_sm[peak]:.3f} -> {r_sm[-1]:.3f} |"
            )
            rounds = np.arange(1, len(u) + 1)
            axes[0, col].plot(rounds, gap_sm, label=job["label"])
            axes[1, col].plot(rounds, r_sm, label=job["label"])
        axes[0, col].set_title(name, fontsize=10)
        axes[1, col].set_xlabel("round")
    for ax in axes[0]:
        ax.axhline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_ylabel("U - U(reference)")
    for ax in axes[1]:
        ax.set_ylabel("RM score r")
    axes[0, 0].legend(fontsize=9)
    title = (
        f"Text game setting search (seed {args.seed}), what was tried: per candidate, the oracle's U against the base "
        "policy's reference answer to the same prompt (0: as good as the base) above, the RM's score below; "
        "10-round trailing means"
    )
    fig.suptitle(textwrap.fill(title, width=42 * ncols), fontsize=11)  # wrapped to the figure's width
    fig.tight_layout()
    out = Path(args.out)
    fig.savefig(out / "search.png", dpi=110)
    (out / "search.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out / 'search.md'} and {out / 'search.png'}")


if __name__ == "__main__":
    main()
