"""The wide market with coupled Equ, a shared budget and CAPITALISM's entry and exit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marketjax.algos import wide
from marketjax.core.config import ConfigError
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.runner import as_params

CONFIG = {
    "name": "tiny_wide_selection",
    "algo": "wide",
    "env": "MultiCatch-2",
    "num_envs": 32,
    "num_seeds": 1,
    "total_env_steps": 32 * 8 * 40,
    "wide": {
        "num_agents": 4,
        "hidden": [16],
        "rollout_steps": 8,
        "valuation": "coupled",
        "coupling": -0.4,
        "budget": "shared",
        "learning": "selection",
        "initial_wealth": 2.0,
        "allowance": 2.0,
        "rent": 0.02,
        "exit_threshold": 0.1,
        "curvature": 0.2,
        "explore_fraction": 0.3,
    },
}
UPDATES = 40


@pytest.fixture(scope="module")
def trained():
    config = parse_train_config(CONFIG)
    trainer = wide.make_trainer(config)
    params = as_params(trainer.params)

    @jax.jit
    def run(key, params):
        def body(ts, _):
            ts, metrics = trainer.update(ts, params)
            market = ts.market
            newcomer = market.population.age == 0
            kept = jnp.max(jnp.where(newcomer[None, :, None], market.holdings, 0.0))
            return ts, {**metrics, "newcomer_holdings": kept}

        return jax.lax.scan(body, trainer.init(key, params), None, length=UPDATES)

    return config, params, run


def test_bankrupt_leave_entrants_enter_and_the_books_balance(trained):
    _, params, run = trained
    state, m = run(jax.random.key(0), params)
    m = jax.tree.map(np.asarray, m)
    assert m["exits"].sum() > 0 and m["entries"].sum() == m["exits"].sum()
    assert m["minted"].sum() == pytest.approx(2.0 * m["entries"].sum(), rel=1e-5)
    # Entrants start with nothing: the leavers' holdings went back to the bank.
    assert m["newcomer_holdings"].max() == 0.0
    assert m["books_imbalance"].max() <= 1e-5
    assert m["capped_fraction"].mean() > 0.0  # the shared budget binds
    assert m["equ_converged_fraction"].min() == 1.0
    assert m["equ_residual_max"].max() <= 1e-4
    assert m["equ_iterations_mean"].max() >= 1.0  # Equ actually iterated
    books = state.market.books
    total = float(jnp.sum(state.market.population.wealth) + books.bank.value)
    assert total == pytest.approx(float(books.expected_total()), rel=1e-5, abs=1e-4)


def test_a_run_whose_clearing_fails_says_so_in_its_summary(trained):
    """Same compiled program; only the (sweepable) tolerance is out of float32's
    reach, so Equ cannot converge: the metrics and the summary report it."""
    config, params, run = trained
    state, m = run(jax.random.key(0), {**params, "equ_tol": jnp.float32(1e-12)})
    assert float(np.min(m["equ_converged_fraction"])) < 1.0
    summary = wide.report(jax.tree.map(lambda x: x[None], state), config, None)
    assert summary["equ_unconverged"] > 0 and "warning" in summary
    assert "did not converge" in summary["warning"]
    good, _ = run(jax.random.key(0), params)
    assert "warning" not in wide.report(
        jax.tree.map(lambda x: x[None], good), config, None
    )


def test_a_coupling_that_breaks_positive_definiteness_is_refused_naming_the_key():
    """MultiCatch-4: C = c((1-ρ)I + ρ11ᵀ) is PD only for ρ > -1/3."""
    bad = {
        **CONFIG,
        "env": "MultiCatch-4",
        "wide": {**CONFIG["wide"], "coupling": -0.4},
    }
    with pytest.raises(ConfigError, match=r"'wide\.coupling' must lie in"):
        parse_train_config(bad)
    ok = {**bad, "wide": {**bad["wide"], "coupling": -0.3}}
    assert parse_train_config(ok).algo_config.coupling == pytest.approx(-0.3)
