"""``fpo-animate`` writes the animation, its frames change, and bad arguments are errors."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

from agents.tools import animate  # noqa: E402


def test_linear_animation_is_written_and_its_frames_change(tmp_path):
    result = animate.animate("linear", ["rlhf", "fpo-relaxed"], seed=0, rounds=40, frames=5, out=tmp_path / "a.gif")
    frames = result["frames"]
    assert len(frames) == 5 and all(f.shape == frames[0].shape and f.dtype == np.uint8 for f in frames)
    assert all(not np.array_equal(a, b) for a, b in zip(frames, frames[1:]))
    gif = Image.open(result["gif"])
    assert gif.n_frames == 5 and gif.size == (frames[0].shape[1], frames[0].shape[0])
    if animate._ffmpeg() is not None:
        assert result["mp4"].stat().st_size > 0
    else:
        assert result["mp4"] is None


def test_neural_animation_shows_both_learners(tmp_path):
    pytest.importorskip("torch")
    result = animate.animate("neural", ["rlhf", "fpo-practical"], seed=1, rounds=30, frames=3, out=tmp_path / "n.gif", mp4=False)
    assert Image.open(result["gif"]).n_frames == 3 and result["mp4"] is None
    assert not np.array_equal(result["frames"][0], result["frames"][-1])


def test_token_animation_draws_the_default_learners_side_by_side(tmp_path):
    result = animate.animate("token", rounds=12, frames=3, out=tmp_path / "t.gif", mp4=False)
    frames = result["frames"]
    assert Image.open(result["gif"]).n_frames == 3 and result["mp4"] is None
    assert all(not np.array_equal(a, b) for a, b in zip(frames, frames[1:]))
    # Three panels (rlhf, fpo-practical, fpo-relaxed) make a wider frame than the two-panel default of another game.
    two = animate.animate("token", ["rlhf", "fpo-relaxed"], rounds=4, frames=2, out=tmp_path / "two.gif", mp4=False)
    assert frames[0].shape[0] == two["frames"][0].shape[0] and frames[0].shape[1] > two["frames"][0].shape[1]


def test_token_defaults_are_the_registered_run():
    import gymnasium as gym

    assert animate.DEFAULTS["token"]["rounds"] == gym.spec("FPO/TokenRM-v0").max_episode_steps == 600
    assert animate.DEFAULTS["token"]["learners"] == ("rlhf", "fpo-practical", "fpo-relaxed")
    assert animate.DEFAULTS["linear"]["learners"] == animate.DEFAULTS["neural"]["learners"] == ("rlhf", "fpo-relaxed")


def test_token_panel_is_the_learners_own_run():
    """A token panel's series is the run agents.make gives, and its bars are the env's credit and value."""
    import gymnasium as gym

    import agents

    snaps = animate._record("token", "fpo-practical", seed=3, rounds=10, frames=2, config={})
    env = gym.make("FPO/TokenRM-v0")
    agent = agents.make("fpo-practical", env, seed=3)
    alone = agent.learn(10)
    np.testing.assert_array_equal(snaps[-1]["utilities"], alone["true_utility"])
    assert [s["round"] for s in snaps] == [5, 10] and snaps[-1]["hack_share"] == alone["hack_share"][-1]
    game = env.unwrapped
    np.testing.assert_array_equal(snaps[-1]["credit"], game.token_credit())
    np.testing.assert_array_equal(snaps[-1]["value"], game.token_value(game.split_observation(agent._obs)[1]))


def test_the_learners_play_the_same_seed_as_alone():
    """A panel is the learner's own run: the trajectory drawn is the one agents.make gives."""
    import gymnasium as gym

    import agents

    snaps = animate._record("linear", "rlhf", seed=3, rounds=20, frames=4, config={})
    alone = agents.make("rlhf", gym.make("FPO/LinearRM-v0"), seed=3).learn(20)
    np.testing.assert_array_equal(snaps[-1]["utilities"], alone["true_utility"])
    assert [s["round"] for s in snaps] == [5, 10, 15, 20]


def test_command_line(tmp_path, capsys):
    animate.main(["linear", "--rounds", "12", "--frames", "3", "--out", str(tmp_path / "c.gif"), "--no-mp4"])
    assert "linear: 3 frames" in capsys.readouterr().out and (tmp_path / "c.gif").exists()
    animate.main(["token", "--rounds", "6", "--frames", "2", "--out", str(tmp_path / "t.gif"), "--no-mp4"])
    assert "token: 2 frames" in capsys.readouterr().out and (tmp_path / "t.gif").exists()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"game": "text"}, "unknown game"),
        ({"learners": []}, "at least one learner"),
        ({"frames": 1}, "frames must be at least 2"),
        ({"rounds": 3, "frames": 5}, "at least frames"),
        ({"configs": [{}]}, "2 learners but 1 configs"),
        ({"fps": 0}, "fps must be positive"),
        ({"game": "neural", "learners": ["ppo"]}, "not one"),
        ({"game": "token", "learners": ["ppo"]}, "not on the token game"),
    ],
)
def test_bad_arguments(kwargs, match, tmp_path):
    args = {"game": "linear", "learners": ["rlhf", "fpo-relaxed"], "rounds": 10, "frames": 2, "out": tmp_path / "x.gif", **kwargs}
    with pytest.raises(ValueError, match=match):
        animate.animate(**args)


def test_unknown_learner_names_the_registry(tmp_path):
    with pytest.raises(Exception, match="no-such-learner"):
        animate.animate("linear", ["no-such-learner"], rounds=4, frames=2, out=tmp_path / "x.gif")
