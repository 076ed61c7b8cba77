"""The policy family of each game (the gradient leader, the Gaussian leader, the text leader)
and stable-baselines3's PPO on the vector games."""
