"""Chang et al. (2020)'s Duality: alternate between two states, or be absorbed.

Their ``Duality(absorbing_reward=-1, big_reward=0.5, small_reward=0.3)``: states 0
and 1 and an absorbing state 2; (0, 0) → 2 paying 0; (0, 1) → 1 paying 0.5;
(1, 0) → 0 paying 0.5; (1, 1) → 1 paying 0.3; state 2 pays −1 for every action
forever. It never terminates: the time limit is the sampler's (their
``env.eplen`` = 10 steps), here gymnax's ``max_steps_in_episode``. At γ = 0.99
alternating is worth Q*(1, 0) = 0.5/(1 − γ) = 50.0 against staying, Q*(1, 1) =
0.3 + γ·50 = 49.8.
"""

from __future__ import annotations

from marketjax.envs.tabular import TabularEnv, TabularParams

TIME_LIMIT = 10


def make_duality() -> tuple[TabularEnv, TabularParams]:
    """``(env, env_params)`` of ``ChangDuality`` (for ``register_env``)."""
    env = TabularEnv(
        "ChangDuality",
        next_state=[[2, 1], [0, 1], [2, 2]],
        reward=[[0.0, 0.5], [0.5, 0.3], [-1.0, -1.0]],
        terminal=[[False, False]] * 3,
        start=0,
        max_steps=TIME_LIMIT,
    )
    return env, env.default_params
