"""Chang et al. (2020)'s Chain: a 1 × 6 line, actions left/right, goal at the end.

Their ``OneHotChainK(6)``: start at state 0; action 0 moves left (staying at 0 at the
wall), action 1 moves right; entering state 5 pays 0.8 and ends the episode; every
other step pays 0; the time limit is 4 · (height − 1 + width − 1) = 20 steps. Moving
right from s is worth Q*(s, R) = 0.8 · γ^(4 − s).
"""

from __future__ import annotations

from marketjax.envs.tabular import TabularEnv, TabularParams

LENGTH = 6
GOAL_REWARD = 0.8
LEFT, RIGHT = 0, 1


def make_chain() -> tuple[TabularEnv, TabularParams]:
    """``(env, env_params)`` of ``ChangChain`` (for ``register_env``)."""
    goal = LENGTH - 1
    next_state, reward, terminal = [], [], []
    for s in range(LENGTH):
        moves = [max(s - 1, 0), min(s + 1, goal)]
        if s == goal:  # never acted in (the episode ended on entering it)
            moves = [goal, goal]
        next_state.append(moves)
        reward.append(
            [GOAL_REWARD if (s != goal and m == goal) else 0.0 for m in moves]
        )
        terminal.append([s == goal or m == goal for m in moves])
    env = TabularEnv(
        "ChangChain", next_state, reward, terminal, start=0, max_steps=4 * (LENGTH - 1)
    )
    return env, env.default_params
