"""A Gymnasium-1.x PPO loop in the style of CleanRL's ``ppo_continuous_action.py`` on the native
vector env, wrapped as CleanRL's Gymnasium-1.x port wraps every env: the check that
``gymnasium.wrappers.vector`` and a standard training loop work on ``gym.make_vec`` without
``vectorization_mode="sync"``.

Self-contained as CleanRL's single file is: the actor-critic, the rollout, GAE and the clipped
surrogate are all here. One departure, which Gymnasium's NEXT_STEP autoreset asks for: the
step after an episode's end only resets the copy (its action is ignored, its reward is 0), so
that transition is masked out of the losses, and GAE does not bootstrap across it.
"""

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pytest

import fpo_envs  # noqa: F401

torch = pytest.importorskip("torch")
nn = torch.nn


@dataclass(frozen=True)
class Args:
    env_id: str = "FPO/LinearRM-v0"
    num_envs: int = 4
    num_steps: int = 16
    """Rollout length per copy."""
    max_episode_steps: int = 6
    """A short time limit, so every rollout crosses episode ends."""
    num_updates: int = 3
    learning_rate: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 2
    update_epochs: int = 2
    clip_coef: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: int = 16


def make_envs(args: Args) -> gym.vector.VectorEnv:
    envs = gym.make_vec(args.env_id, num_envs=args.num_envs, max_episode_steps=args.max_episode_steps)
    envs = gym.wrappers.vector.FlattenObservation(envs)
    envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
    envs = gym.wrappers.vector.ClipAction(envs)
    envs = gym.wrappers.vector.NormalizeObservation(envs)
    envs = gym.wrappers.vector.TransformObservation(envs, lambda obs: np.clip(obs, -10, 10))
    envs = gym.wrappers.vector.NormalizeReward(envs, gamma=args.gamma)
    envs = gym.wrappers.vector.TransformReward(envs, lambda reward: np.clip(reward, -10, 10))
    return envs


def layer_init(layer, std=2**0.5, bias_const=0.0):
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    def __init__(self, envs, hidden):
        super().__init__()
        obs_dim = int(np.prod(envs.single_observation_space.shape))
        act_dim = int(np.prod(envs.single_action_space.shape))
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_dim, hidden)), nn.Tanh(), layer_init(nn.Linear(hidden, hidden)), nn.Tanh(),
            layer_init(nn.Linear(hidden, 1), std=1.0),
        )  # fmt: skip
        self.actor_mean = nn.Sequential(
            layer_init(nn.Linear(obs_dim, hidden)), nn.Tanh(), layer_init(nn.Linear(hidden, hidden)), nn.Tanh(),
            layer_init(nn.Linear(hidden, act_dim), std=0.01),
        )  # fmt: skip
        self.actor_logstd = nn.Parameter(torch.zeros(1, act_dim))

    def get_value(self, x):
        return self.critic(x)

    def get_action_and_value(self, x, action=None):
        action_mean = self.actor_mean(x)
        action_std = torch.exp(self.actor_logstd.expand_as(action_mean))
        probs = torch.distributions.Normal(action_mean, action_std)
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action).sum(1), probs.entropy().sum(1), self.critic(x)


def train(args: Args, seed: int = 1) -> dict:
    """CleanRL's loop; returns what the test checks (losses, parameters, episode statistics)."""
    envs = make_envs(args)
    agent = Agent(envs, args.hidden)
    initial = {k: v.clone() for k, v in agent.state_dict().items()}
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    obs_shape, act_shape = envs.single_observation_space.shape, envs.single_action_space.shape
    n, steps = args.num_envs, args.num_steps
    obs = torch.zeros((steps, n) + obs_shape)
    actions = torch.zeros((steps, n) + act_shape)
    logprobs, rewards, dones, values = (torch.zeros((steps, n)) for _ in range(4))
    valid = torch.zeros((steps, n), dtype=torch.bool)  # False: NEXT_STEP's reset step

    next_obs, _ = envs.reset(seed=seed)
    next_obs, next_done = torch.Tensor(next_obs), torch.zeros(n)
    losses, episodes, reset_steps = [], [], 0
    for _ in range(args.num_updates):
        for step in range(steps):
            obs[step], dones[step] = next_obs, next_done
            valid[step] = next_done == 0  # the step after a done only resets the copy
            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(next_obs)
                values[step] = value.flatten()
            actions[step], logprobs[step] = action, logprob
            next_obs, reward, terminations, truncations, infos = envs.step(action.numpy())
            reset_steps += int((~valid[step]).sum())
            next_done = np.logical_or(terminations, truncations)
            rewards[step] = torch.tensor(reward).view(-1)
            next_obs, next_done = torch.Tensor(next_obs), torch.Tensor(next_done)
            if "episode" in infos:
                for i in np.flatnonzero(infos["_episode"]):
                    episodes.append((float(infos["episode"]["r"][i]), int(infos["episode"]["l"][i])))

        with torch.no_grad():  # GAE
            next_value = agent.get_value(next_obs).reshape(1, -1)
            advantages = torch.zeros_like(rewards)
            lastgaelam = 0
            for t in reversed(range(steps)):
                if t == steps - 1:
                    nextnonterminal, nextvalues = 1.0 - next_done, next_value
                else:
                    nextnonterminal, nextvalues = 1.0 - dones[t + 1], values[t + 1]
                delta = rewards[t] + args.gamma * nextvalues * nextnonterminal - values[t]
                advantages[t] = lastgaelam = delta + args.gamma * args.gae_lambda * nextnonterminal * lastgaelam
            returns = advantages + values

        keep = valid.reshape(-1)
        b_obs = obs.reshape((-1,) + obs_shape)[keep]
        b_logprobs, b_actions = logprobs.reshape(-1)[keep], actions.reshape((-1,) + act_shape)[keep]
        b_advantages, b_returns = advantages.reshape(-1)[keep], returns.reshape(-1)[keep]
        batch_size = len(b_obs)
        minibatch_size = batch_size // args.num_minibatches
        b_inds = np.arange(batch_size)
        for _ in range(args.update_epochs):
            np.random.default_rng(len(losses)).shuffle(b_inds)
            for start in range(0, batch_size - minibatch_size + 1, minibatch_size):
                mb = b_inds[start : start + minibatch_size]
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[mb], b_actions[mb])
                ratio = (newlogprob - b_logprobs[mb]).exp()
                mb_adv = b_advantages[mb]
                mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss = torch.max(-mb_adv * ratio, -mb_adv * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)).mean()
                v_loss = 0.5 * ((newvalue.view(-1) - b_returns[mb]) ** 2).mean()
                loss = pg_loss - args.ent_coef * entropy.mean() + v_loss * args.vf_coef
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()
                losses.append((pg_loss.item(), v_loss.item()))
    return {"agent": agent, "initial": initial, "losses": losses, "episodes": episodes, "reset_steps": reset_steps, "envs": envs}


def test_cleanrl_ppo_trains_on_the_native_vector_env():
    args = Args()
    with torch.random.fork_rng():  # CleanRL seeds torch globally; the test leaves it as it was
        torch.manual_seed(1)
        run = train(args)
    losses = np.array(run["losses"])
    updates = args.num_updates * args.update_epochs * args.num_minibatches
    assert losses.shape == (updates, 2) and np.isfinite(losses).all()
    changed = [k for k, v in run["agent"].state_dict().items() if not torch.equal(v, run["initial"][k])]
    assert {"actor_logstd", "actor_mean.0.weight", "critic.0.weight"} <= set(changed)
    # Every copy finished episodes at the time limit (or at a diverged RM), each followed by one
    # reset step that NEXT_STEP spends and the loop masks out.
    episodes = run["episodes"]
    total = args.num_updates * args.num_steps
    assert len(episodes) >= args.num_envs * (total // (args.max_episode_steps + 1))
    assert all(1 <= length <= args.max_episode_steps and np.isfinite(r) for r, length in episodes)
    assert len(episodes) - args.num_envs <= run["reset_steps"] <= len(episodes)
    wrapper = run["envs"]
    while not isinstance(wrapper, gym.wrappers.vector.RecordEpisodeStatistics):
        wrapper = wrapper.env
    assert wrapper.episode_count == len(episodes) and list(wrapper.length_queue) == [length for _, length in episodes]
