"""One module per game: :mod:`~fpo_envs.games.linear`, :mod:`~fpo_envs.games.neural`,
:mod:`~fpo_envs.games.text`; :mod:`~fpo_envs.games.vector` is what the vector games share."""
