"""``fpo-animate``: animations of collapse and its prevention, learners side by side.

Each learner plays the same game from the same seed; frames are drawn every few rounds with
the renderers of :mod:`fpo_envs.render` on axes fixed over the whole run, and written as a GIF
(Pillow) and, where ffmpeg is present (system or ``imageio-ffmpeg``), an MP4::

    fpo-animate linear                      # docs/figures/animations/linear.gif (+ .mp4)
    fpo-animate neural --seed 3 --rounds 4000
    fpo-animate token                       # rlhf, fpo-practical and fpo-relaxed, 600 rounds
    fpo-animate linear --learners rlhf fpo-practical fpo-relaxed --out my.gif

From Python, :func:`animate` returns the frames and the paths it wrote.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np

import fpo_envs  # noqa: F401  (registers the games)
from agents.common.cli import prepare_imports, whole_number
from agents.common.registration import make

GAMES = {"linear": "FPO/LinearRM-v0", "neural": "FPO/NeuralRM-v0", "token": "FPO/TokenRM-v0"}
"""The games the command draws, by name, and the env id each is made from."""
DEFAULTS = {
    "linear": {"rounds": 300, "seed": 0, "learners": ("rlhf", "fpo-relaxed")},
    "neural": {"rounds": 4000, "seed": 8, "learners": ("rlhf", "fpo-relaxed")},
    "token": {"rounds": 600, "seed": 0, "learners": ("rlhf", "fpo-practical", "fpo-relaxed")},
}
"""Defaults of the command. The neural seed is one where relaxed FPO holds while RLHF collapses,
chosen from seeds 0-15 as ``docs/animations.md`` says; one seed shows
the mechanism, the benchmark's suites give the rates. The token game runs its registered 600
rounds; its seed is the lowest of seeds 0-15 on which RLHF collapses (its ``U``, smoothed over
10 rounds, ends at or below 3/4 of its peak; it did on 15 of the 16, all but seed 12) while
practical and relaxed FPO hold (they held on all 16)."""

KEY_COLORS = [(230, 30, 30), (255, 212, 0), (255, 176, 0), (224, 123, 0), (255, 255, 255), (0, 0, 0), (31, 95, 168)]
"""The frames' marker and line colours, kept exact in a GIF's palette."""

DEFAULT_FOLDER = Path("docs/figures/animations")
"""Where the command writes without ``--out`` (made if missing)."""

LABELS = {
    "rlhf": "RLHF",
    "fpo-practical": "FPO (practical)",
    "fpo-relaxed": "FPO (relaxed)",
    "fpo-exact": "FPO (exact)",
    "rlhf-anchor": "RLHF, KL anchor",
}
"""The names the frames give the built-in learners (another learner goes by its id), each
followed by the config it was given."""


def _label(learner: str, config: dict) -> str:
    label = LABELS.get(learner, learner)
    return label + "".join(f", {k}={v}" for k, v in config.items())


def _ffmpeg() -> str | None:
    """An ffmpeg executable: the system's, or the one ``imageio-ffmpeg`` ships."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        return None


def _record(game: str, learner: str, seed: int, rounds: int, frames: int, config: dict) -> list[dict]:
    """Play ``rounds`` rounds of ``learner`` and snapshot what a frame needs ``frames`` times."""
    # One episode longer than the run: at the time limit the learner would reset the env,
    # and the last frame would show a fresh RM.
    env = gym.make(GAMES[game], max_episode_steps=rounds + 1)
    if game == "neural":
        config = {"schedule_rounds": rounds, **config}
    agent = make(learner, env, seed=seed, **config)
    marks = np.unique(np.linspace(0, rounds, frames + 1).round().astype(int))[1:]
    snaps, done, history = [], 0, []
    for mark in marks:
        chunk = agent.learn(int(mark - done))
        done = int(mark)
        history.append(chunk)
        h = {k: np.concatenate([c[k] for c in history]) for k in chunk}
        snap = {"round": done}
        if game == "linear":
            snap.update(
                trajectory=np.stack([h["signal_norm"], h["noise_norm"]], 1),
                utilities=h["true_utility"],
                proxies=h["proxy_reward"],
            )
        elif game == "token":
            token_game = env.unwrapped
            _, tokens = token_game.split_observation(agent._obs)  # the round's sequences
            # The credit of the RM after the round's update (the one the next round faces), as
            # the env's own frame shows it; the value at the round's sequences.
            snap.update(
                credit=token_game.token_credit(),
                value=token_game.token_value(tokens),
                utilities=h["true_utility"],
                proxies=h["proxy_reward"],
                hack_share=float(h["hack_share"][-1]),
            )
        else:
            rm = env.unwrapped.reward_model
            count = int(rm.buffer["count"])
            snap.update(
                params=rm.params.detach().clone(),
                samples=rm.buffer["y"][rm.buffer["y"].shape[0] - count :].numpy().astype(np.float64),
                means=np.asarray(h["theta"], dtype=np.float64),
                utilities=h["theta_true_utility"],
                proxies=h["theta_proxy_reward"],
                buffer_error=float(h["buffer_rm_error"][-1]),
            )
        snaps.append(snap)
    return snaps


def _check_parent(path: Path) -> None:
    """A file is written only into a folder that exists: a mistyped path is an error, not a new tree."""
    if not path.parent.is_dir():
        raise ValueError(f"the folder {path.parent} does not exist: create it first (only the file {path.name} is written)")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give the GIF's file path, e.g. {path / 'animation.gif'}")


def _check_arguments(game, learners, seed, rounds, frames, out, fps, configs):
    """Every argument of :func:`animate` checked before any run: ``(learners, seed, rounds, out,
    configs)`` with the game's defaults filled in."""
    from agents.common.config import check_seed
    from agents.common.registration import spec

    if game not in GAMES:
        raise ValueError(f"unknown game {game!r}; fpo-animate draws {sorted(GAMES)}")
    learners = DEFAULTS[game]["learners"] if learners is None else learners
    if not learners:
        raise ValueError("give at least one learner")
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 2:
        raise ValueError(f"frames must be at least 2, got {frames!r}")
    configs = list(configs) if configs is not None else [{} for _ in learners]
    if len(configs) != len(learners):
        raise ValueError(f"{len(learners)} learners but {len(configs)} configs")
    check_seed(seed)
    seed = DEFAULTS[game]["seed"] if seed is None else seed
    rounds = DEFAULTS[game]["rounds"] if rounds is None else rounds
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1:
        raise ValueError(f"rounds must be a whole number >= 1, got {rounds!r}")
    if rounds < frames:
        raise ValueError(f"rounds ({rounds}) must be at least frames ({frames})")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    for learner in learners:
        spec(learner, game)  # an unknown id, or one of another game, is an error naming the registered ones
    if out is not None:
        out = Path(out)
        if out.suffix.lower() != ".gif":
            raise ValueError(f"out is the GIF's path and must end in .gif, got {str(out)!r}")
        _check_parent(out)
    if game == "neural":
        from agents.common.registration import _load_entry_point
        from agents.families.gaussian import GaussianLeader

        for learner in learners:
            family = _load_entry_point(spec(learner, "neural").entry_points["neural"], learner)
            if not (isinstance(family, type) and issubclass(family, GaussianLeader)):
                raise ValueError(
                    f"fpo-animate neural draws a Gaussian policy's mean and schedules; {learner!r} is not one "
                    "(learners of the neural game's built-in family: rlhf, fpo-practical, fpo-relaxed, fpo-exact, ...)"
                )
    return list(learners), seed, rounds, out, configs


def animate(
    game: str = "linear",
    learners: Sequence[str] | None = None,
    seed: int | None = None,
    rounds: int | None = None,
    frames: int = 100,
    out: str | Path | None = None,
    fps: int = 12,
    mp4: bool = True,
    configs: Sequence[dict] | None = None,
) -> dict[str, Any]:
    """Animate ``learners`` side by side on ``game`` (``"linear"``, ``"neural"`` or ``"token"``).

    Args:
        game: which game; learners: registered learner ids, one panel each.
        seed, rounds, learners: the seed every learner plays, the run's length, and the learners
            (each ``None``: the game's defaults, :data:`DEFAULTS`).
        frames: how many frames (evenly spaced rounds); fps: frames per second of the files.
        out: the GIF's path, in a folder that exists (default ``docs/figures/animations/<game>.gif``,
            its folder made if missing); the MP4 goes beside it.
        mp4: also write an MP4 where ffmpeg is present.
        configs: per-learner config overrides (a dict each), passed to :func:`agents.make`.

    Returns:
        ``{"frames": [uint8 arrays], "gif": path, "mp4": path or None}``.

    Raises:
        ValueError: a bad argument (an unknown game or learner, too few frames or rounds, a
            negative seed, an ``out`` whose folder does not exist), before anything runs.

    The neural game's float results depend on torch's thread count (its docstring says why),
    and that game amplifies them: the command sets one thread; from Python, set it yourself
    (``torch.set_num_threads(1)``) to get the committed animation.
    """
    learners, seed, rounds, out, configs = _check_arguments(game, learners, seed, rounds, frames, out, fps, configs)
    runs = [_record(game, learner, seed, rounds, frames, config) for learner, config in zip(learners, configs)]
    labels = [_label(learner, config) for learner, config in zip(learners, configs)]
    env = gym.make(GAMES[game]).unwrapped
    title = f"{GAMES[game]}, seed {seed}:"
    draw = {"linear": _draw_linear, "neural": _draw_neural, "token": _draw_token}[game]
    images = draw(env, runs, labels, title)
    if out is None:  # the documented default folder is made; a folder the caller names must exist
        out = DEFAULT_FOLDER / f"{game}.gif"
        out.parent.mkdir(parents=True, exist_ok=True)
    gif = write_gif(images, out, fps)
    video = write_mp4(images, out.with_suffix(".mp4"), fps) if mp4 else None
    return {"frames": images, "gif": gif, "mp4": video}


def _draw_linear(env, runs, labels, title) -> list[np.ndarray]:
    from fpo_envs.render import PhasePortrait, PortraitPanel

    every = np.concatenate([run[-1]["trajectory"] for run in runs])
    s_star = float(np.linalg.norm(env.oracle.ideal[: env.signal_dims]))
    limits = (max(every[:, 0].max() * 1.08, 2 * s_star), max(every[:, 1].max() * 1.08, 1.0))
    horizon = runs[0][-1]["round"]
    renderer = PhasePortrait(env.oracle, env.signal_dims, labels=labels, limits=limits, title=title, horizon=horizon)
    images = []
    for snaps in zip(*runs):
        panels = [PortraitPanel(s["trajectory"], s["utilities"], s["proxies"]) for s in snaps]
        images.append(renderer.draw(panels, snaps[0]["round"]))
    return images


def _draw_neural(env, runs, labels, title) -> list[np.ndarray]:
    import torch

    from fpo_envs.render import BlindSpotMap, BlindSpotPanel, plane_coordinates

    s = env.signal_dims
    e1 = np.zeros(env.dim)
    e1[:s] = env.oracle.ideal[:s] / np.linalg.norm(env.oracle.ideal[:s])
    every = np.concatenate(
        [plane_coordinates(run[-1]["means"], e1, s) for run in runs]
        + [plane_coordinates(snap["samples"], e1, s) for run in runs for snap in run]
    )
    s_star = float(np.linalg.norm(env.oracle.ideal[:s]))
    limits = (min(every[:, 0].min(), -0.5) - 0.3, max(every[:, 0].max(), 2 * s_star) + 0.3, max(every[:, 1].max(), 1.5) * 1.1)
    renderer = BlindSpotMap(env.oracle, s, labels=labels, limits=limits, title=title, horizon=runs[0][-1]["round"])
    template = env.reward_model
    images = []
    for snaps in zip(*runs):
        panels = []
        for snap in snaps:
            rm = template.replace(snap["params"])
            panels.append(
                BlindSpotPanel(
                    reward=lambda y, rm=rm: rm.reward(torch.as_tensor(y, dtype=rm.params.dtype)).numpy(),
                    samples=snap["samples"],
                    means=snap["means"],
                    utilities=snap["utilities"],
                    proxies=snap["proxies"],
                    buffer_error=snap["buffer_error"],
                )
            )
        with torch.no_grad():
            images.append(renderer.draw(panels, snaps[0]["round"]))
    return images


def _draw_token(env, runs, labels, title) -> list[np.ndarray]:
    from fpo_envs.render import TokenCreditPlot

    bars = np.concatenate([np.abs(np.r_[s["credit"], s["value"]]) for run in runs for s in run])
    limit = max(float(bars[np.isfinite(bars)].max()) * 1.05, 1.0)
    series = np.concatenate([np.r_[run[-1]["utilities"], run[-1]["proxies"]] for run in runs])
    top = max(1.05 * env.oracle.peak, float(series[np.isfinite(series)].max()) * 1.05)
    renderer = TokenCreditPlot(
        env.vocab_size,
        env.hack_tokens,
        labels=labels,
        title=title,
        limit=limit,
        horizon=runs[0][-1]["round"],
        series_top=top,
        optimum=env.optimal_utility,
    )
    images = []
    for snaps in zip(*runs):
        images.append(
            renderer.draw(
                [s["credit"] for s in snaps],
                [s["value"] for s in snaps],
                [(s["utilities"], s["proxies"]) for s in snaps],
                snaps[0]["round"],
                hack_shares=[s["hack_share"] for s in snaps],
            )
        )
    return images


def write_gif(frames: Sequence[np.ndarray], path: str | Path, fps: int = 12, hold_last_s: float = 2.0) -> Path:
    """Write ``frames`` as a looping GIF (the last frame held ``hold_last_s``); returns the path."""
    from PIL import Image

    path = Path(path)
    _check_parent(path)
    # One palette for the whole animation, taken from frames across it, without dithering:
    # frames then differ only where the picture changes, which GIF stores compactly.
    picks = [frames[i] for i in np.linspace(0, len(frames) - 1, min(len(frames), 8)).round().astype(int)]
    # The markers' colours are few pixels; a band of each keeps them exact in the palette.
    keys = np.array(KEY_COLORS, dtype=np.uint8)
    band = np.repeat(np.repeat(keys[None], 40, axis=0), max(1, picks[0].shape[1] // len(keys)) + 1, axis=1)
    sample = np.concatenate(picks + [band[:, : picks[0].shape[1]]], axis=0)
    palette = Image.fromarray(sample).quantize(colors=255, method=Image.Quantize.MEDIANCUT)
    images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    durations = [round(1000 / fps)] * len(images)
    durations[-1] += round(1000 * hold_last_s)
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=True)
    return path


def write_mp4(frames: Sequence[np.ndarray], path: str | Path, fps: int = 12) -> Path | None:
    """Write ``frames`` as an H.264 MP4 through ffmpeg; ``None`` (nothing written) without ffmpeg."""
    import subprocess

    exe = _ffmpeg()
    if exe is None:
        return None
    path = Path(path)
    _check_parent(path)
    h, w = frames[0].shape[:2]
    cmd = [exe, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps)]
    # yuv420p (what browsers play) needs even sides: pad by a pixel where one is odd.
    cmd += ["-i", "-", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-pix_fmt", "yuv420p", "-c:v", "libx264", str(path)]
    subprocess.run(cmd, input=b"".join(np.ascontiguousarray(f).tobytes() for f in frames), check=True)
    return path


def _defaults(key: str) -> str:
    """The games' defaults of ``key`` in a line, for the command's help."""
    shown = lambda v: " ".join(v) if isinstance(v, tuple) else str(v)  # noqa: E731
    return "; ".join(f"{game} {shown(d[key])}" for game, d in DEFAULTS.items())


def main(argv: list[str] | None = None) -> None:
    """The command: a bad argument is one argparse line (``fpo-animate: error: ...``, exit 2),
    found before any run."""
    parser = argparse.ArgumentParser(prog="fpo-animate", description=__doc__.split("\n")[0])
    parser.add_argument(
        "game", choices=sorted(GAMES) + ["all"], help="which game ('all': every one, to docs/figures/animations/)"
    )
    parser.add_argument(
        "--learners",
        nargs="+",
        default=None,
        help="registered learner ids, one panel each ('module:id' imports module first, from the working folder too; "
        f"defaults: {_defaults('learners')})",
    )
    parser.add_argument(
        "--seed", type=whole_number(0), default=None, help=f"the seed every learner plays (defaults: {_defaults('seed')})"
    )
    parser.add_argument(
        "--rounds", type=whole_number(1), default=None, help=f"length of the run (defaults: {_defaults('rounds')})"
    )
    parser.add_argument("--frames", type=whole_number(2), default=100)
    parser.add_argument("--fps", type=whole_number(1), default=12)
    parser.add_argument("--out", default=None, help="the GIF's path, in a folder that exists (one game only)")
    parser.add_argument("--no-mp4", action="store_true", help="write the GIF only")
    args = parser.parse_args(argv)
    if args.game == "all" and args.out:
        parser.error("--out names one file: give one game")
    games = sorted(GAMES) if args.game == "all" else [args.game]
    try:
        prepare_imports()  # the working folder on sys.path, as for fpo-bench
        for game in games:
            _check_arguments(game, args.learners, args.seed, args.rounds, args.frames, args.out, args.fps, None)
    except (ValueError, ImportError) as err:
        parser.error(str(err))
    try:
        import torch

        torch.set_num_threads(1)  # the runs are small; one thread keeps them reproducible
    except ImportError:
        pass
    for game in games:
        result = animate(game, args.learners, args.seed, args.rounds, args.frames, args.out, args.fps, not args.no_mp4)
        wrote = [str(result["gif"])] + ([str(result["mp4"])] if result["mp4"] else [])
        print(f"{game}: {len(result['frames'])} frames -> {', '.join(wrote)}")


if __name__ == "__main__":
    main()
