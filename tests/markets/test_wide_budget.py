"""The wide market's budget: the box bound of the cap and the shared default.

An agent is never asked to pay more than its valuation of the bundle it gets, and
that bundle lies in ``0 <= x <= s``; so the cap may bound what the agent can pay by
``min(½ q⁺ᵀC⁻¹q⁺, q⁺·s)`` (``markets/wide_clear.py``). Under the default shared
budget, the B episodes of one step together never take more than the agent's wealth.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marketjax.agents.population import Population
from marketjax.algos import wide
from marketjax.experiment.registry import parse_train_config
from marketjax.markets.wide import WideMarketParams
from marketjax.markets.wide_clear import SUPPLY, cap_bids, clear


def test_the_box_bound_caps_at_what_a_unit_can_cost_not_at_sup_v():
    """One agent, one good in supply 1, q = 100, c = 0.1, room 50 (derived by hand).

    Unconstrained, sup v = q²/2c = 50,000, so the first wave's rule scales the bid by
    sqrt(50 / 50,000): 3.1623. On the box x <= 1 the agent can pay at most q·1, so
    the bid needs scaling only to 50; alone in the market it buys the unit at
    p = q − c·1 = 49.9 <= 50.
    """
    raw = jnp.full((1, 1, 1), 100.0, jnp.float32)
    room = jnp.asarray([50.0], jnp.float32)
    c = jnp.float32(0.1)
    np.testing.assert_allclose(cap_bids(raw, room, c)[0, 0, 0], 3.16228, rtol=1e-5)
    boxed = cap_bids(raw, room, c, supply=SUPPLY)
    np.testing.assert_allclose(boxed[0, 0, 0], 50.0, rtol=1e-6)
    price, alloc = clear(boxed[:, :, 0], jnp.float32(SUPPLY), c)
    np.testing.assert_allclose(price[0], 49.9, rtol=1e-6)
    assert float(price[0] * alloc[0, 0]) <= 50.0
    # Where sup v is the smaller bound (values below c), the old rule is kept.
    small = jnp.full((1, 1, 2), 0.05, jnp.float32)  # sup v = 2·0.05²/0.2 = 0.025
    tight = jnp.asarray([0.01], jnp.float32)
    np.testing.assert_allclose(
        cap_bids(small, tight, c, supply=SUPPLY), cap_bids(small, tight, c)
    )


@pytest.mark.parametrize("coupling", [0.0, -0.4, 0.5])
def test_payments_never_exceed_the_room_under_the_box_bound(coupling):
    """500 random economies (4 agents, 3 goods): p·x_i <= room_i at equilibrium,
    and the box bound never cuts a bid more than the first wave's rule."""
    from marketjax.mechanisms import quadratic_equ as qe

    k_q, k_w = jax.random.split(jax.random.key(11))
    b, n, g, c = 500, 4, 3, jnp.float32(0.3)
    raw = 4.0 * jax.random.normal(k_q, (b, n, g)) + 3.0
    room = jax.random.uniform(k_w, (n,), minval=0.0, maxval=3.0)
    rho = jnp.float32(coupling)
    boxed = cap_bids(raw, room, c, rho, SUPPLY)
    old = cap_bids(raw, room, c, rho)
    assert bool(jnp.all(jnp.abs(boxed) >= jnp.abs(old) - 1e-6))
    p0 = jnp.zeros((b, g))
    eq = jax.jit(lambda q: qe.solve_batch(q, c, rho, SUPPLY, p0, tol=1e-6))(boxed)
    paid = jnp.einsum("bg,bng->bn", eq.prices, eq.allocation)
    assert bool(jnp.all(eq.converged))
    assert bool(jnp.all(paid <= room[None] + 1e-4))
    assert float(jnp.mean((boxed != raw).any(-1))) > 0.1  # the cap binds often


@pytest.mark.parametrize("valuation", ["separable", "coupled"])
def test_the_default_shared_budget_never_overdraws_across_256_episodes(valuation):
    """Default config (``wide.budget`` unset, hence ``shared``), B = 256 episodes,
    wealth 0.5 or less: summed over all episodes of a step, what an agent pays for
    its bundles never exceeds its wealth before the step."""
    config = parse_train_config(
        {
            "name": "overdraw",
            "algo": "wide",
            "env": "MultiCatch-2",
            "num_envs": 256,
            "total_env_steps": 256 * 16,
            "wide": {"num_agents": 4, "hidden": [8], "valuation": valuation},
        }
    )
    assert config.algo_config.budget == "shared"
    market = wide.build_market(config, config.num_envs)
    n = 4
    k_nets, k_w, k_run = jax.random.split(jax.random.key(5), 3)
    nets = jax.vmap(market.nets.init)(jax.random.split(k_nets, n))
    # Large bids: scale every network's output layer up.
    nets = jax.tree.map(lambda x: 30.0 * x, nets)
    population = Population(
        params=nets,
        wealth=jax.random.uniform(k_w, (n,), minval=0.0, maxval=0.5),
        alive=jnp.ones((n,), bool),
        age=jnp.zeros((n,), jnp.int32),
        parent=jnp.full((n,), -1, jnp.int32),
    )
    params = WideMarketParams(
        gamma=jnp.float32(0.99),
        rent=jnp.float32(0.0),
        curvature=jnp.float32(0.1),
        explore=jnp.float32(0.1),
        coupling=jnp.float32(-0.3),
        equ_tol=jnp.float32(1e-4),
    )

    @jax.jit
    def run(key):
        def body(state, key):
            before = state.population.wealth
            state, rec = market.step(key, state, params)
            paid = jnp.einsum("bg,bng->n", rec.price, rec.allocation)
            return state, (before, paid, rec.capped)

        state = market.init(k_run, population)
        return jax.lax.scan(body, state, jax.random.split(key, 12))[1]

    before, paid, capped = jax.tree.map(np.asarray, run(jax.random.key(6)))
    assert capped.mean() > 0.5  # the budget binds
    assert np.all(paid <= np.maximum(before, 0.0) * (1 + 1e-5) + 1e-6)


def test_a_step_never_takes_more_than_the_wealth_even_at_a_negative_price():
    """Two agents, one good, c = 3 (wide_complements.yaml), zero bids, wealth 0.01.

    Derived by hand: zero bids pass the cap; Equ clears at p = (0 + 0 − 3·1)/2 = −1.5
    with x = 0.5 each. Agent 0 held the whole unit and sells it at γp: it gets
    0.5·1.5 = 0.75 for what it takes and pays 0.99·1.5 = 1.485 for what it gives
    up, a net −0.735 from an account holding 0.01 (docs/wide_market.md: "no
    account is overdrawn by bids, whatever B").
    """
    from marketjax.markets.wide import settle

    c = jnp.float32(3.0)
    wealth = jnp.asarray([0.01, 0.01], jnp.float32)
    bids = cap_bids(jnp.zeros((1, 2, 1)), wealth, c, supply=SUPPLY)
    price, alloc = clear(jnp.swapaxes(bids, 1, 2), SUPPLY, c)
    alloc = jnp.swapaxes(alloc, 1, 2)
    np.testing.assert_allclose(price[0], [-1.5])
    np.testing.assert_allclose(alloc[0, :, 0], [0.5, 0.5])
    held = jnp.asarray([[[1.0], [0.0]]], jnp.float32)
    gamma, zero = jnp.float32(0.99), jnp.zeros((1, 1))
    unlimited = settle(price, alloc, held, zero, gamma, 0.0)[0]
    np.testing.assert_allclose(unlimited, [-0.735, 0.75], rtol=1e-5)
    # Limited liability: agent 0 pays 0.745 of the 1.485 (all it has after the
    # 0.75 it was paid to take half the unit back); the bank covers 0.745.
    delta, bank, rewards_in, rent_out = settle(
        price, alloc, held, zero, gamma, 0.0, wealth
    )
    np.testing.assert_allclose(delta, [-0.01, 0.75], rtol=1e-5)
    assert bool(jnp.all(wealth + delta >= 0.0))
    np.testing.assert_allclose(
        float(jnp.sum(delta) + bank), float(rewards_in - rent_out), atol=1e-6
    )


def test_the_box_bound_takes_a_supply_per_good():
    """supply f32[G] = (1, 2), q = (100, 100), c = 0.1, room 50 (by hand):
    A = 2·100²/0.2 = 100,000 and S = 100·1 + 100·2 = 300, so
    κ = max(sqrt(50/1e5), 50/300) = 1/6."""
    raw = jnp.full((1, 1, 2), 100.0, jnp.float32)
    room = jnp.asarray([50.0], jnp.float32)
    supply = jnp.asarray([1.0, 2.0], jnp.float32)
    capped = cap_bids(raw, room, jnp.float32(0.1), supply=supply)
    np.testing.assert_allclose(capped[0, 0], [100.0 / 6, 100.0 / 6], rtol=1e-6)


@pytest.mark.parametrize(
    ("budget", "expected"), [("per_episode", 2.23607), ("shared", 25.0)]
)
def test_per_episode_keeps_the_first_waves_cap_and_shared_takes_the_box(
    budget, expected
):
    """MultiCatch-2 (G = 2), B = 1, q = 100 on both goods, c = 0.1, wealth 50, no
    rent (by hand). per_episode, the first wave's rule kept to replay its runs:
    room 50, A = 2·100²/0.2 = 1e5, κ = sqrt(50/1e5), bid 2.23607. shared: room
    50·(1 − 1e-4), S = 200, κ = room/200, bid ≈ 25."""
    config = parse_train_config(
        {
            "name": "cap",
            "algo": "wide",
            "env": "MultiCatch-2",
            "num_envs": 1,
            "total_env_steps": 16,
            "wide": {"num_agents": 1, "hidden": [8], "budget": budget},
        }
    )
    market = wide.build_market(config, 1)
    params = WideMarketParams(
        jnp.float32(0.99), jnp.float32(0.0), jnp.float32(0.1), jnp.float32(0.0)
    )
    raw = jnp.full((1, 1, 2), 100.0, jnp.float32)
    bids = market.capped_bids(raw, jnp.asarray([50.0], jnp.float32), params)
    np.testing.assert_allclose(bids[0, 0], [expected, expected], rtol=2e-4)
