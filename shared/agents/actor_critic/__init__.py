"""What IMPALA and PPO share: the actor-critic network, its policies, and the unroll's items.

Not an agent (it has no ``Config``): ``shared/agents/impala/`` and ``shared/agents/ppo/`` build on
it. ``networks`` (separate policy and value MLPs, a categorical or Gaussian policy head as a
``distrax`` distribution), ``actor`` (the sampling and evaluation policies, with observation
normalization by the published statistics), ``sequences`` (the unroll as replay items in a queue
table, and which of their steps are transitions), ``normalization`` (running mean and variance).
"""
