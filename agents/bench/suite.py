"""Benchmark suites: a grid of games x learners x seeds, from a TOML file or built in code.

A suite file::

    name = "my-suite"
    threads = 1                      # torch threads per run (float results depend on it)

    [[games]]
    id = "FPO/LinearRM-v0"           # a registered env id
    rounds = 300
    seeds = 100                      # seeds first_seed .. first_seed + seeds - 1
    first_seed = 0
    batch = 100                      # seeds per vector env, for learners whose copies are seeds
    kwargs = { rm_lr = 0.005 }       # env arguments
    metric_prefix = ""               # "theta_": read the Gaussian policy's metrics at its mean
    label = "fast RM"                # the report calls it "FPO/LinearRM-v0 (fast RM)"; needed
                                     # to tell apart two entries of one game (default: none)

    [[learners]]
    id = "fpo-relaxed"               # any registered id, or "my.module:my-id"
    label = "fpo-relaxed (no oracle grad)"   # default: the id
    config = { oracle_gradient = false }
    games = ["FPO/LinearRM-v0"]      # default: every game of the suite the learner runs on
                                     # (an id names every entry of that game; an entry's
                                     # name, "FPO/LinearRM-v0 (fast RM)", only that entry)
    seeds = 10                       # default: each game's seeds
    env_kwargs = { rm_ensemble = 3 } # env arguments for this learner's runs (default: what
                                     # the learner registered as needing, e.g. an RM ensemble)

A game may appear twice with different ``kwargs`` (its runs are keyed by their env arguments,
so they never mix), each entry with its own ``label``; the report has a table and figures
per entry.

The shipped suites (``paper``, ``quick``, ``text``, ``token``, ...) live beside this module.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SUITES_DIR = Path(__file__).parent / "suites"
"""The folder of the shipped suites' TOML files (a suite named without a path is looked up here)."""


class SuiteError(ValueError):
    """A suite that does not parse or names an unknown game, learner or key."""


@dataclass(frozen=True)
class GameEntry:
    """One game of a suite."""

    id: str
    rounds: int
    seeds: int
    first_seed: int = 0
    batch: int = 64
    kwargs: dict = field(default_factory=dict)
    metric_prefix: str = ""
    label: str = ""

    @property
    def name(self) -> str:
        """What the report calls it: the id, followed by the ``label`` in brackets where it has one."""
        return f"{self.id} ({self.label})" if self.label else self.id

    def named_by(self, names: tuple[str, ...] | list[str]) -> bool:
        """Whether ``names`` (a learner's ``games``, ``--game``) picks this entry: by its id
        (every entry of the game) or by its :attr:`name`."""
        return self.id in names or self.name in names


@dataclass(frozen=True)
class LearnerEntry:
    """One learner of a suite (an id with a config and a label)."""

    id: str
    label: str = ""
    config: dict = field(default_factory=dict)
    games: tuple[str, ...] | None = None
    seeds: int | None = None
    env_kwargs: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        """What the leaderboard calls it: its ``label``, else the id without a ``module:`` prefix."""
        return self.label or self.id.rpartition(":")[2]


@dataclass(frozen=True)
class Suite:
    """A grid of games x learners x seeds."""

    name: str
    games: tuple[GameEntry, ...]
    learners: tuple[LearnerEntry, ...]
    description: str = ""
    threads: int = 1

    def with_learners(self, extra: list[LearnerEntry]) -> Suite:
        """This suite with more learners (e.g. ``--learner my_module:my-algo``)."""
        return dataclasses.replace(self, learners=self.learners + tuple(extra))

    def with_overrides(self, seeds: int | None = None, rounds: int | None = None, games: list[str] | None = None) -> Suite:
        """This suite with fewer seeds or rounds, or only some games (and the learners that run on them)."""
        import fpo_envs

        entries = []
        for g in self.games:
            if games and not g.named_by(games):
                continue
            changes = {}
            if seeds is not None:
                changes["seeds"] = seeds
                changes["batch"] = min(g.batch, seeds)
            if rounds is not None:
                changes["rounds"] = rounds
            entries.append(dataclasses.replace(g, **changes))
        if games:
            unknown = sorted(set(games) - {g.id for g in self.games} - {g.name for g in self.games})
            if unknown:
                raise SuiteError(f"suite {self.name!r} has no game(s) {unknown}; its games: {[g.name for g in self.games]}")
        learners = []
        kept_games = {fpo_envs.game_of_id(g.id) for g in entries}
        for entry in self.learners:
            if games and not _runs_on(entry.id, kept_games):
                continue  # a learner of none of the games kept (ppo when only the token game is)
            if entry.games is not None:
                kept = tuple(name for name in entry.games if any(g.named_by((name,)) for g in entries))
                if not kept:
                    continue  # a learner restricted to games left out
                entry = dataclasses.replace(entry, games=kept)
            if seeds and entry.seeds:
                entry = dataclasses.replace(entry, seeds=min(entry.seeds, seeds))
            learners.append(entry)
        return dataclasses.replace(self, games=tuple(entries), learners=tuple(learners))


def _runs_on(learner_id: str, games: set[str]) -> bool:
    """Whether the learner is registered for one of ``games``; an unknown learner is left in,
    for :func:`check_suite` to name."""
    import agents

    try:
        return bool(set(agents.spec(learner_id).games) & games)
    except (ValueError, ImportError):
        return True


def _entry(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise SuiteError(f"{where}: expected a table, got {raw!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SuiteError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    missing = sorted(
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in raw
    )
    if missing:
        raise SuiteError(f"{where}: missing key(s) {missing}")
    raw = dict(raw)
    if "games" in raw and raw["games"] is not None:
        raw["games"] = tuple(raw["games"])
    return cls(**raw)


def suite_from_dict(data: dict, name: str = "suite") -> Suite:
    """Build and check a :class:`Suite` from parsed TOML (or any dict of the same shape)."""
    known = {"name", "description", "threads", "games", "learners"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SuiteError(f"suite {name!r}: unknown key(s) {unknown}; known: {sorted(known)}")
    games = tuple(_entry(GameEntry, g, f"suite {name!r}, games[{i}]") for i, g in enumerate(data.get("games", [])))
    learners = tuple(
        _entry(LearnerEntry, entry, f"suite {name!r}, learners[{i}]") for i, entry in enumerate(data.get("learners", []))
    )
    suite = Suite(
        name=data.get("name", name),
        games=games,
        learners=learners,
        description=data.get("description", ""),
        threads=int(data.get("threads", 1)),
    )
    check_suite(suite)
    return suite


def check_suite(suite: Suite) -> None:
    """Every game a registered env id with sane numbers; every learner registered for a game
    it names, its config built for each of its games (so a bad key or value stops the suite
    before any run starts); labels unique. Raises :class:`SuiteError` naming what is wrong."""
    import gymnasium as gym

    import agents
    import fpo_envs

    if not suite.games or not suite.learners:
        raise SuiteError(f"suite {suite.name!r} needs at least one game and one learner")
    for g in suite.games:
        if g.id not in gym.registry:
            raise SuiteError(f"suite {suite.name!r}: unknown game {g.id!r}; registered: {list(fpo_envs.ENV_IDS)}")
        if g.id not in fpo_envs.ENV_IDS:
            raise SuiteError(f"suite {suite.name!r}: {g.id!r} is not an fpo-envs game; games: {list(fpo_envs.ENV_IDS)}")
        for key in ("rounds", "seeds", "batch"):
            value = getattr(g, key)
            if not isinstance(value, int) or value < 1:
                raise SuiteError(f"suite {suite.name!r}, game {g.id}: {key} must be a whole number >= 1, got {value!r}")
        if not isinstance(g.label, str):
            raise SuiteError(f"suite {suite.name!r}, game {g.id}: label must be a string, got {g.label!r}")
    names = [g.name for g in suite.games]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise SuiteError(
            f"suite {suite.name!r}: game entry {twice} appears twice; give each entry of one game a distinct `label`"
        )
    labels = [entry.name for entry in suite.learners]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise SuiteError(f"suite {suite.name!r}: learner label(s) {duplicates} appear twice; give each a distinct label")
    suite_games = {g.id for g in suite.games} | set(names)
    for index, entry in enumerate(suite.learners):
        try:
            found = agents.spec(entry.id)
        except (ValueError, ImportError) as err:
            raise SuiteError(f"suite {suite.name!r}: {err}") from err
        where = f"suite {suite.name!r}, learners[{index}] ({entry.name!r})"
        if not isinstance(entry.config, dict):
            raise SuiteError(f"{where}: config must be a table of settings, got {entry.config!r}")
        if entry.games is not None:
            unknown = sorted(set(entry.games) - suite_games)
            if unknown:
                raise SuiteError(f"suite {suite.name!r}, learner {entry.name!r}: game(s) {unknown} are not in the suite")
        runs_on = [g for g in suite.games if fpo_envs.game_of_id(g.id) in found.games]
        if not runs_on:
            raise SuiteError(
                f"suite {suite.name!r}: learner {entry.id!r} runs on the {', '.join(found.games)} game(s), "
                f"none of which is in the suite"
            )
        for game in dict.fromkeys(fpo_envs.game_of_id(g.id) for g in runs_on if entry.games is None or g.named_by(entry.games)):
            try:
                agents.common.registration.check_config(entry.id, game, entry.config)
            except (TypeError, ValueError, ImportError) as err:
                raise SuiteError(f"{where}, config on the {game} game: {err}") from err


def load_suite(name_or_path: str | Path) -> Suite:
    """A shipped suite by name (``paper``, ``quick``, ``text``, ``token``, ...) or a TOML file by path."""
    path = Path(name_or_path)
    if not path.suffix and (SUITES_DIR / f"{name_or_path}.toml").exists():
        path = SUITES_DIR / f"{name_or_path}.toml"
    if not path.exists():
        raise SuiteError(f"no suite {str(name_or_path)!r}: give a TOML file or one of {shipped_suites()}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise SuiteError(f"{path} does not parse as TOML: {err}") from err
    try:
        return suite_from_dict(data, name=path.stem)
    except SuiteError as err:
        raise SuiteError(f"{path}: {err}") from err


def shipped_suites() -> list[str]:
    """The names of the suites this package ships (``paper``, ``quick``, ...)."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))
