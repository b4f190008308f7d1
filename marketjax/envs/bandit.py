"""Chang et al. (2020)'s Bandit: one state, four arms, reward (k + 1)/5.

Their ``OneStateOneStepKActionEnv(4)``: arm k pays (k + 1)/(4 + 1), i.e. 0.2, 0.4,
0.6, 0.8, and every episode is one step long, so Q*(0, k) = (k + 1)/5 at any γ.
"""

from __future__ import annotations

from marketjax.envs.tabular import TabularEnv, TabularParams

NUM_ARMS = 4


def make_bandit() -> tuple[TabularEnv, TabularParams]:
    """``(env, env_params)`` of ``ChangBandit`` (for ``register_env``)."""
    k = NUM_ARMS
    env = TabularEnv(
        "ChangBandit",
        next_state=[[0] * k],
        reward=[[(a + 1) / (k + 1) for a in range(k)]],
        terminal=[[True] * k],
        start=0,
        max_steps=1,
    )
    return env, env.default_params
