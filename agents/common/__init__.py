"""What every learner shares: the :class:`~agents.common.base.Agent` base and its config
checks, objectives and penalties, the registry, the learner file format, reward wrappers."""
