"""algo chang: config checks and a seconds-long Bandit run whose bids order right."""

import jax
import numpy as np
import pytest

from marketjax.algos.chang import chang_report
from marketjax.core.config import ConfigError
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.runner import compile_run

TINY = {
    "name": "chang_tiny",
    "algo": "chang",
    "env": "ChangBandit",
    "seed": 0,
    "num_seeds": 2,
    "num_envs": 256,
    "total_env_steps": 256 * 150,
    "runner": {"num_chunks": 3, "progress": False, "checkpoint": False},
    # a larger policy step than their 4e-5 so that seconds suffice
    "chang": {"rollout_steps": 1, "policy_lr": 0.003, "minibatch_size": 256},
}


def test_bad_configs_name_the_key():
    with pytest.raises(ConfigError, match="'env'"):
        parse_train_config({**TINY, "env": "CartPole-v1"})
    with pytest.raises(ConfigError, match="minibatch_size"):
        parse_train_config({**TINY, "chang": {**TINY["chang"], "minibatch_size": 300}})
    with pytest.raises(ConfigError, match="auction"):
        parse_train_config({**TINY, "chang": {"auction": "vickrey"}})


def test_short_bandit_run_orders_the_bids_and_keeps_the_books():
    config = parse_train_config(TINY)
    run = compile_run(config)
    state = run.init(run.keys, run.params)
    for _ in range(run.schedule.num_chunks):
        state, metrics = run.chunk(state, run.params)
    report = chang_report(state, config)
    bids = np.asarray(report["mean_bids"][0])
    assert list(np.argsort(bids)) == [0, 1, 2, 3], bids  # 0.2 < 0.4 < 0.6 < 0.8
    assert report["greedy_matches_optimal"]
    assert report["optimal_pairs"] == [[0, 3]]
    np.testing.assert_allclose(report["q_star"], [[0.2, 0.4, 0.6, 0.8]], atol=1e-7)
    imbalance = jax.vmap(run.trainer.books_imbalance)(state)
    assert float(np.max(imbalance)) < 1e-5
    assert float(np.min(metrics["mean_return"])) > 0.6
