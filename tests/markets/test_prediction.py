"""Prediction market (seed 004): the Kelly trade is optimal, money is conserved and
counted, nobody is overdrawn, wealth flows to the informed, the run writes its files."""

import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from marketjax import lmsr
from marketjax.markets import prediction as pm
from marketjax.markets.ledger import books_imbalance


def utility(q, held, belief, dq, b):
    w = held + dq - lmsr.trade_cost(q, dq, b)
    return float(jnp.sum(belief * jnp.log(w)))


def test_kelly_trade_is_a_best_response():
    q = jnp.array([0.3, -0.2, 0.1])
    held = jnp.array([0.4, 0.7, 0.2])
    belief = jnp.array([0.6, 0.1, 0.3])
    b = 0.5
    dq = pm.kelly_trade(q, held, belief, b)
    assert abs(float(lmsr.trade_cost(q, dq, b))) < 1e-5  # the trade costs nothing
    assert float(jnp.min(held + dq)) > 0.0  # and cannot bankrupt the trader
    best = utility(q, held, belief, dq, b)
    assert best > utility(q, held, belief, jnp.zeros(3), b) + 1e-3
    for delta in 0.02 * jax.random.normal(jax.random.key(0), (50, 3)):
        assert utility(q, held, belief, dq + delta, b) <= best + 1e-6


def test_a_rich_kelly_trader_moves_the_price_to_its_belief():
    belief = jnp.array([0.7, 0.2, 0.1])
    dq = pm.kelly_trade(jnp.zeros(3), jnp.full(3, 1000.0), belief, 1.0)
    np.testing.assert_allclose(np.asarray(lmsr.prices(dq, 1.0)), belief, atol=2e-3)
    # a trader that agrees with the price does not trade
    none = pm.kelly_trade(jnp.zeros(2), jnp.ones(2), jnp.array([0.5, 0.5]), 1.0)
    np.testing.assert_allclose(np.asarray(none), 0.0, atol=1e-5)


def synthetic(key, batches, batch, k=3):
    """Trader 0 knows the label (0.8 on it), 1 is noise, 2 is wrong on purpose."""
    ky, kn = jax.random.split(key)
    y = jax.random.randint(ky, (batches * batch,), 0, k)
    onehot = jax.nn.one_hot(y, k)
    good = 0.8 * onehot + 0.2 / k
    noise = jax.nn.softmax(3.0 * jax.random.normal(kn, (batches * batch, k)), -1)
    bad = 0.8 * jnp.roll(onehot, 1, axis=-1) + 0.2 / k
    return jnp.stack([good, noise, bad], axis=1), y


def test_money_is_conserved_counted_and_nobody_is_overdrawn():
    beliefs, y = synthetic(jax.random.key(1), 6, 8)
    params = pm.PredictionParams(jnp.float32(0.2), jnp.float32(0.9))
    state = pm.init(3)
    step = jax.jit(pm.step, static_argnames="rounds")
    total0 = float(jnp.sum(state.wealth))
    for j in range(6):
        sl = slice(8 * j, 8 * j + 8)
        before = state.wealth
        state, rec = step(jax.random.key(j), state, beliefs[sl], y[sl], params)
        # what traders gained is exactly what the market maker lost
        np.testing.assert_allclose(
            float(jnp.sum(rec.payoff)), float(jnp.sum(rec.maker_loss)), atol=1e-5
        )
        assert float(jnp.max(rec.maker_loss)) <= lmsr.max_loss(0.2, 3) + 1e-5
        # a trader loses at most its stake across the batch
        assert bool(jnp.all(rec.payoff >= -0.9 * before - 1e-6))
        assert bool(jnp.all(state.wealth > 0))
    subsidy = -float(state.books.bank.value)
    np.testing.assert_allclose(
        float(jnp.sum(state.wealth)), total0 + subsidy, rtol=1e-6
    )
    assert float(books_imbalance(state.books, state.wealth)) < 1e-6
    assert 0 < subsidy <= 48 * 0.2 * math.log(3)


def test_wealth_moves_to_the_informed_trader_and_prices_follow():
    beliefs, y = synthetic(jax.random.key(2), 20, 16)
    params = pm.PredictionParams(jnp.float32(0.1), jnp.float32(0.5))
    train = jax.jit(pm.train, static_argnames=("batch", "rounds"))
    state, rec = train(jax.random.key(3), pm.init(3), beliefs, y, params, batch=16)
    share = state.wealth / jnp.sum(state.wealth)
    assert float(share[0]) > 0.95
    # late markets price the truth like the informed trader does (0.8 + 0.2/3)
    late = rec.prices[-5:].reshape(-1, 3)
    truth = jnp.take_along_axis(late, y[-80:, None], axis=-1)
    assert float(jnp.mean(truth)) > 0.8
    early = jnp.take_along_axis(rec.prices[0], y[:16, None], axis=-1)
    assert float(jnp.mean(truth)) > float(jnp.mean(early))


def test_script_writes_a_run_directory(tmp_path):
    out = tmp_path / "run"
    root = pathlib.Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    cmd = [
        sys.executable, str(root / "scripts/prediction_market.py"), "--out", str(out),
        "dataset=breast_cancer", "num_traders=6", "num_noise=2", "batch=8",
        "features_per_trader=[1,2]", "rounds=1",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["test"]) >= {"market", "logistic_regression", "traders_average"}
    assert summary["money_imbalance"] < 1e-5
    assert summary["test"]["market"]["accuracy"] > 0.8
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == summary["examples"]["market"] // 8
    assert (out / "wealth.png").stat().st_size > 0
