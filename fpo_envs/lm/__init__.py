"""Language-model plumbing of the text game, one module per job: presets and profiles
(:mod:`~fpo_envs.lm.presets`), model sources and loading (:mod:`~fpo_envs.lm.loading`),
chat formatting and sampling (:mod:`~fpo_envs.lm.generation`), likelihood scoring
(:mod:`~fpo_envs.lm.scoring`), prompt sets (:mod:`~fpo_envs.lm.prompts`), the RM head's
warm start (:mod:`~fpo_envs.lm.warm_start`) and the game's metric names across versions
(:mod:`~fpo_envs.lm.names`). The models built on them are in
:mod:`fpo_envs.models` (the LM oracle :mod:`~fpo_envs.models.lm_oracle`, the encoder RM
:mod:`~fpo_envs.models.encoder`), the game in :mod:`fpo_envs.games.text`.

Heavy imports (torch, transformers, peft, bitsandbytes) happen in these modules only when a
text game is made; a missing one raises ``DependencyNotInstalled`` naming the ``pip install``
that fixes it.
"""
