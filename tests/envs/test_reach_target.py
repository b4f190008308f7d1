"""ReachTarget against hand-computed transitions: unit steps, the consumer's sale."""

import jax
import jax.numpy as jnp

from marketjax.envs.reach_target import DOWN, SELL, UP, ReachState, ReachTarget


def state(x, target):
    return ReachState(time=jnp.int32(0), x=jnp.int32(x), target=jnp.int32(target))


def test_unit_steps_move_x_and_selling_on_target_pays_one_and_ends():
    env = ReachTarget(8)
    params = env.default_params
    s = state(5, 7)
    for a, x, obs in [(UP, 6, [1, 0, 0]), (UP, 7, [0, 0, 1]), (DOWN, 6, [1, 0, 0])]:
        o, s, r, term, _ = env.step_env(jax.random.key(0), s, jnp.int32(a), params)
        assert (int(s.x), float(r), bool(term)) == (x, 0.0, False)
        assert o.tolist() == obs
    _, s, r, term, _ = env.step_env(jax.random.key(0), state(7, 7), SELL, params)
    assert (float(r), bool(term)) == (1.0, True)
    _, s, r, term, _ = env.step_env(jax.random.key(0), state(8, 7), SELL, params)
    assert (float(r), bool(term)) == (0.0, True)  # the consumer pays nothing


def test_instances_start_d_steps_away_and_truncate_after_3d_max_plus_2():
    env = ReachTarget(8)
    for d in range(9):
        _, s = env.reset_difficulty(jax.random.key(d), d)
        assert abs(int(s.target) - int(s.x)) == d
    assert env.default_params.max_steps_in_episode == 26
