"""Turn a suite into jobs, skip what the store holds, run the rest on a backend.

A *job* is one learner on one game for a batch of seeds: one vector env whose copies are
the seeds, for learners whose copies are independent learners (``vector_copies_are_seeds``),
else one single env per seed. Each job is a pure function of its description: it writes
its runs to the store and returns, so any executor can run it. Backends:

- ``local`` (default): a process pool, one torch thread per worker;
- ``serial``: in this process (debugging, tests);
- ``ray``: Ray Tune trials of a few jobs each, with the suite's threads as their CPUs
  (``pip install "fpo-envs[ray]"``); ``ray_address`` joins a running cluster, else a local
  Ray instance is started; lost trials are retried (:mod:`agents.bench.ray_backend`). Workers
  import ``fpo_envs`` and ``agents`` themselves.

Every backend writes the same runs: a run's numbers depend on its key, not on who ran it.
A long run (:func:`checkpoint_every`) streams its metrics and checkpoints as it plays, so a
killed sweep resumes it from its newest checkpoint; ``FPO_CRASH_AFTER_RUNS=N`` ends a sweep
once ``N`` of its runs are stored, for tests of that (:mod:`agents.common.faults`).
"""

from __future__ import annotations

import contextlib
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable

import numpy as np

import fpo_envs
from agents.bench.store import Store, run_hash, warn
from agents.bench.suite import GameEntry, LearnerEntry, Suite
from agents.common import faults

BACKENDS = ("local", "serial", "ray")
"""Where the runs execute: a local process pool, this process one run at a time, or Ray."""


def stored_keys(env: Any, family: type | None = None) -> tuple[str, ...]:
    """What the store keeps of a run's history on ``env``'s game: its ``info_keys`` (the
    vector games': ``true_utility``, ``proxy_reward``, ``signal_norm``, ``noise_norm``,
    ``rm_error``; the text game's: ``quality_gap`` and ``response_tokens`` for the norms),
    the learner ``family``'s own records (:attr:`agents.Agent.record_keys`: the token
    policy's ``kl_to_base``) and ``diverged``."""
    info = env.unwrapped.info_keys
    own = tuple(k for k in getattr(family, "record_keys", ()) if k not in info and k != "diverged")
    return info + own + ("diverged",)


def _family(learner_id: str, env_id: str) -> type:
    import agents
    from agents.common.registration import _load_entry_point

    found = agents.spec(learner_id)
    return _load_entry_point(found.entry_points[fpo_envs.game_of_id(env_id)], found.id)


def env_kwargs(game: GameEntry, entry: LearnerEntry) -> dict:
    """The env arguments of a learner's runs on a game: what the learner registered as needing
    (an RM ensemble), then the game's, then the suite entry's own.

    A game whose env names its settings in a params class (the vector games'
    :class:`fpo_envs.core.params.GameParams`) gets them in canonical form, the settings that
    differ from the paper's (``changed()``): a setting given at its default is the same run as
    one left out, and a wrong one is an error here, before any run. The text game's arguments
    are kept as given.
    """
    import agents

    kwargs = {**agents.spec(entry.id).env_kwargs, **game.kwargs, **entry.env_kwargs}
    params_class = getattr(_env_class(game.id), "params_class", None)
    if params_class is None:
        return kwargs
    return params_class.from_kwargs(game.id, **kwargs).changed()


def run_key(suite: Suite, game: GameEntry, entry: LearnerEntry, seed: int, batch: tuple[int, int] | None) -> dict:
    """Everything that determines one run's numbers (a text-game profile by its settings, so
    a changed profile is a new run)."""
    key = {
        "env": game.id,
        "env_kwargs": env_kwargs(game, entry),
        "rounds": game.rounds,
        "learner": entry.id.rpartition(":")[2],
        "config": entry.config,
        "seed": seed,
        "batch": list(batch) if batch else None,
        "threads": suite.threads,
    }
    if "profile" in game.kwargs:
        from fpo_envs.lm.presets import get_profile

        profile = get_profile(game.kwargs["profile"])
        key["profile_settings"] = {"env": profile.env, "learner": profile.learner}
    return key


def plan(suite: Suite) -> list[dict]:
    """Every job of the suite, each with the keys and hashes of the runs it produces."""
    import agents

    jobs = []
    for game in suite.games:
        game_name = fpo_envs.game_of_id(game.id)
        for entry in suite.learners:
            if game_name not in agents.spec(entry.id).games or (entry.games is not None and not game.named_by(entry.games)):
                continue
            family = _family(entry.id, game.id)
            vector = getattr(family, "vector_copies_are_seeds", False)
            n = min(entry.seeds or game.seeds, game.seeds)
            seeds = list(range(game.first_seed, game.first_seed + n))
            if vector:
                # Fixed batches: batch k holds seeds first_seed + k*B ..., so adding seeds adds batches.
                batches = [seeds[i : i + game.batch] for i in range(0, n, game.batch)]
            else:
                batches = [[s] for s in seeds]
            shared_stream = vector and not getattr(family, "copies_match_single_envs", False)
            for batch in batches:
                span = (batch[0], len(batch)) if shared_stream else None
                keys = [run_key(suite, game, entry, s, span) for s in batch]
                jobs.append(
                    {
                        "env": game.id,
                        "game": game.name,
                        "env_kwargs": env_kwargs(game, entry),
                        "rounds": game.rounds,
                        "learner": entry.id,
                        "config": entry.config,
                        "label": entry.name,
                        "seeds": batch,
                        "vector": vector,
                        "checkpoint_every": checkpoint_every(game.id, vector),
                        "threads": suite.threads,
                        "metric_prefix": game.metric_prefix,
                        "keys": keys,
                        "hashes": [run_hash(k) for k in keys],
                    }
                )
    return jobs


def _summary(history: dict[str, np.ndarray], optimum: float) -> dict[str, float]:
    """A run's header summary: the optimum, the final and peak true utility, the final proxy
    and the final value of each of the game's own metrics and the learner's own records
    (``final_signal_norm`` and ``final_noise_norm`` in the vector games, ``final_quality_gap``
    and ``final_response_tokens`` in the text game, ``final_rm_margin_to_optimum``,
    ``final_hack_share`` and ``final_kl_to_base`` in the token game)."""
    u = np.asarray(history["true_utility"], dtype=np.float64)
    own = [k for k in history if k not in fpo_envs.INFO_KEYS + ("diverged", "theta")]
    return {
        "optimum": optimum,
        "final_true_utility": float(u[-1]),
        "peak_true_utility": float(u.max()),
        "final_proxy_reward": float(history["proxy_reward"][-1]),
        **{f"final_{k}": float(history[k][-1]) for k in own},
        "diverged_rounds": int(np.sum(history["diverged"])),
    }


def run_job(job: dict, store_root: str) -> list[str]:
    """Play one job and store its runs (safe to call in any process)."""
    import gymnasium as gym

    import agents
    import fpo_envs  # noqa: F401 - registers the envs in this worker

    try:
        import torch

        torch.set_num_threads(job["threads"])
    except ImportError:
        pass
    store = Store(store_root, check=False)
    prefix, rounds = job["metric_prefix"], job["rounds"]

    def stored(h: dict, i: int | None, keys: tuple[str, ...], info: tuple[str, ...]) -> dict[str, np.ndarray]:
        # The suite's metric prefix where the learner records it (the Gaussian policy's
        # theta_ metrics), else the env's own info; stored under the game's keys. The
        # learner's own records (keys outside the env's info) are stored as recorded.
        at = prefix if prefix and prefix + "true_utility" in h else ""
        pick = (lambda v: v[:rounds]) if i is None else (lambda v: v[:rounds, i])
        out = {k: pick(h[at + k] if k in info else h[k]) for k in keys}
        if "theta" in h and at:
            out["theta"] = pick(h["theta"])
        return out

    family = _family(job["learner"], job["env"])
    histories = []
    if job["vector"]:
        env = gym.make_vec(job["env"], num_envs=len(job["seeds"]), **job["env_kwargs"])
        h = agents.make(job["learner"], env, seed=job["seeds"][0], **job["config"]).learn(rounds)
        keys, info = stored_keys(env, family), env.unwrapped.info_keys
        histories = [stored(h, i, keys, info) for i in range(len(job["seeds"]))]
        optimum = env.unwrapped.optimum()[1]
    else:
        for seed, h in zip(job["seeds"], job["hashes"]):
            env = gym.make(job["env"], **job["env_kwargs"])
            if job.get("checkpoint_every"):
                history = _checkpointed_run(job, env, seed, Path(store_root) / "work" / h)
            else:
                history = agents.make(job["learner"], env, seed=seed, **job["config"]).learn(rounds)
            histories.append(stored(history, None, stored_keys(env, family), env.unwrapped.info_keys))
            optimum = env.unwrapped.optimum()[1]
    done = []
    for key, history in zip(job["keys"], histories):
        summary = _summary(history, float(optimum))
        arrays = {k: np.asarray(v, dtype=np.float32 if k != "diverged" else bool) for k, v in history.items()}
        done.append(store.write(key, arrays, summary))
    return done


CHECKPOINT_EVERY = 10
"""Rounds between the checkpoints of a long run (the text game's), so a killed sweep loses
at most this many rounds of the run it was playing."""


def checkpoint_every(game_id: str, vector: bool) -> int:
    """Rounds between the checkpoints of a run of ``game_id`` (0: none). A single-env run of a
    game whose env declares ``long_rounds`` (the text game: seconds a round, minutes a run) is
    played in a run directory under ``<store>/work/`` and resumed from its newest checkpoint
    after a kill, the same way for any learner (:func:`_checkpointed_run`); the other runs take
    seconds and are rerun."""
    return CHECKPOINT_EVERY if not vector and getattr(_env_class(game_id), "long_rounds", False) else 0


def _env_class(game_id: str) -> Any:
    """The single-env class registered as ``game_id`` (imported; nothing is built)."""
    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    entry_point = gym.spec(game_id).entry_point
    return load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point


def _checkpointed_run(job: dict, env: Any, seed: int, work: Path) -> dict[str, np.ndarray]:
    """One run in the run directory ``work``, through the learner contract: played with the
    callbacks that stream its metrics and checkpoint it every ``job["checkpoint_every"]`` rounds
    (:func:`agents.common.callbacks.run_callbacks`), resumed from its newest checkpoint
    (:meth:`agents.Agent.resume`) if a killed sweep left one; its history read back from the
    streamed metrics (every round, including those played before the kill)."""
    import json
    import shutil

    import agents
    from agents.common.callbacks import run_callbacks

    if agents.Agent.checkpoints(work):
        agent = agents.Agent.resume(work, env)
    else:
        agent = agents.make(job["learner"], env, seed=seed, **job["config"])
    callbacks = run_callbacks(work, job["checkpoint_every"], tensorboard=False)
    agent.learn(max(job["rounds"] - agent.num_rounds, 0), callback=callbacks)
    rows = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    if fpo_envs.game_of_id(job["env"]) == "text":  # rows streamed before the text game's metrics were renamed
        from fpo_envs.lm.names import with_current_names

        rows = [with_current_names(row) for row in rows]
    history = {k: np.array([row[k] for row in rows]) for k in stored_keys(env, type(agent))}
    keep_artifacts(agent, work, artifacts_dir(work.parent.parent, work.name))
    shutil.rmtree(work, ignore_errors=True)  # the run is stored; its checkpoints are no longer needed
    return history


def artifacts_dir(store_root: str | Path, h: str) -> Path:
    """Where a checkpointed run keeps what its history does not hold: every round's metrics
    and response (``metrics.jsonl``), the trained adapter and the RM head it ended with."""
    return Path(store_root) / "artifacts" / h


def keep_artifacts(agent: Any, work: Path, target: Path) -> None:
    """Write a finished run's artifacts to ``target`` atomically (a folder renamed into place)."""
    import shutil

    if target.exists():
        return
    tmp = target.with_name(f".tmp-{target.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy(work / "metrics.jsonl", tmp / "metrics.jsonl")
    agent.save_artifacts(tmp)
    np.save(tmp / "rm_params.npy", agent.env.unwrapped.reward_model.params)
    os.replace(tmp, target)


def check_workers(workers: Any) -> int:
    """``workers`` (processes, or Ray trials at once), or a ``ValueError``: a whole number >= 1."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1, got {workers!r}")
    return workers


def execute(
    jobs: list[dict],
    store: Store,
    backend: str = "local",
    workers: int = 2,
    progress: bool = True,
    ray_address: str | None = None,
    ray_options: dict | None = None,
) -> int:
    """Run ``jobs`` (those with runs missing from ``store``) on ``backend``; returns how many
    jobs were played.

    Before a job is skipped, each of its stored runs is verified (:func:`verify_stored`): a
    corrupt one is moved to quarantine with a warning and its job is played again. Every run
    written is recorded in the store's index (size and sha256) as its job finishes, so the
    next sweep verifies it without decoding it.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    check_workers(workers)
    try:
        verify_stored(jobs, store)
        todo = [job for job in jobs if not all(store.has(h) for h in job["hashes"])]
        if not todo:
            return 0
        if backend == "ray":  # joined (or started) before the bar shows; left as the sweep ends
            from agents.bench import ray_backend

            session = ray_backend.Session(store.root, workers, address=ray_address, **(ray_options or {}))
        else:
            session = contextlib.nullcontext()
        with session:
            return _execute(todo, store, backend, workers, progress, session)
    finally:
        store.save_index()


def _execute(todo: list[dict], store: Store, backend: str, workers: int, progress: bool, session: Any) -> int:
    """:func:`execute` once the backend is ready: play ``todo`` and record each job's runs."""
    bar = _bar(len(todo), progress)
    saved, recorded, runs_stored = time.monotonic(), set(), 0

    def finished(job: dict) -> None:
        nonlocal saved, runs_stored
        for h in job["hashes"]:
            store.record(h)
        recorded.add(id(job))
        runs_stored += len(job["hashes"])
        if time.monotonic() - saved > INDEX_SAVE_EVERY_S:  # a killed sweep loses only recent records
            store.save_index()
            saved = time.monotonic()
        bar.update()
        faults.after_runs(runs_stored)  # the crash point FPO_CRASH_AFTER_RUNS (agents.common.faults)

    try:
        if backend == "serial":
            for job in todo:
                run_job(job, str(store.root))
                finished(job)
        elif backend == "local":
            _run_local(todo, store, workers, finished)
        else:
            session.run(todo, finished, run_job)
    finally:
        bar.close()
        for job in todo:  # a failed sweep: record what the jobs it did not hear back from wrote (each file is whole)
            if id(job) not in recorded:
                for h in job["hashes"]:
                    if store.has(h):
                        store.record(h)
    return len(todo)


INDEX_SAVE_EVERY_S = 30.0
"""Seconds between writes of the store's index during a sweep (each write is the whole index)."""


def verify_stored(jobs: list[dict], store: Store) -> list[str]:
    """Verify every stored run of ``jobs`` (:meth:`Store.verify`); move each corrupt one (and
    a text run's artifacts) to ``<store>/quarantine/`` with a warning that names the file,
    why, and where it went. Returns the hashes moved: their jobs are then played again."""
    moved = []
    for job in jobs:
        for seed, h in zip(job["seeds"], job["hashes"]):
            if not store.has(h) or (why := store.verify(h)) is None:
                continue
            path, artifacts = store.path(h), artifacts_dir(store.root, h)
            extra = " (with its artifacts folder)" if artifacts.exists() else ""
            target = store.quarantine(h, also=(artifacts,))
            warn(f"{path} is {why}; moved it to {target}{extra}; rerunning it ({job['label']} on {job['env']}, seed {seed})")
            moved.append(h)
    return moved


def _bar(total: int, enabled: bool) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with the text extra
        enabled = False
    if not enabled:

        class _Silent:
            def update(self, n: int = 1) -> None:
                pass

            def close(self) -> None:
                pass

        return _Silent()
    return tqdm(total=total, desc="fpo-bench runs", unit="job")


def _run_local(jobs: list[dict], store: Store, workers: int, done: Callable[[dict], None]) -> None:
    # Largest jobs first, so the pool does not end on one long job.
    jobs = sorted(jobs, key=lambda j: -j["rounds"] * len(j["seeds"]))
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        pending = {pool.submit(run_job, job, str(store.root)): job for job in jobs}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                job = pending.pop(future)
                future.result()  # a failed job stops the sweep; finished runs stay stored
                done(job)
