"""Learners registered as plugins, the way an installed package registers its own: exact
foresight, the baselines (anchor, cap), RM ensembles, performative prediction (RRM, PerfGD)."""
