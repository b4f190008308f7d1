"""``marketjax replay`` of a wide market: prices and holdings per good per step."""

import json
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image

from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.replay import replay
from marketjax.experiment.train_io import train_and_write

NUM_AGENTS = 3
EPISODES = 4
GOODS = 2  # MultiCatch-2: one good per board
STEPS = 9  # every board's ball lands at step 9, together


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    config = parse_train_config(
        {
            "name": "wide",
            "algo": "wide",
            "env": f"MultiCatch-{GOODS}",
            "num_envs": 8,
            "total_env_steps": 8 * 8 * 2,
            "runner": {"num_chunks": 2, "out_dir": str(out), "progress": False},
            "wide": {"num_agents": NUM_AGENTS, "hidden": [8], "rollout_steps": 8},
        }
    )
    train_and_write(config)
    run = out / "wide"
    summary = replay(run, episodes=EPISODES)
    lines = (run / "replay" / "replay.jsonl").read_text().splitlines()
    return run, summary, [json.loads(x) for x in lines]


def test_every_good_is_held_in_full_and_controlled_by_a_holder(replayed):
    _, summary, rows = replayed
    assert summary["goods"] == GOODS
    for r in rows:
        assert len(r["prices"]) == GOODS
        assert np.shape(r["holdings"]) == (GOODS, NUM_AGENTS)
        for g in range(GOODS):
            held = r["holdings"][g]
            assert sum(held) == pytest.approx(1.0, abs=1e-3)  # supply 1, cleared
            assert min(held) >= 0.0
            assert held[r["controllers"][g]] > 0.0  # only a holder acts on g
            assert r["actions"][g] in (0, 1, 2)  # left, stay, right
    assert summary["mean_price"] == pytest.approx(
        np.mean([p for r in rows for p in r["prices"]]), rel=1e-4
    )
    assert summary["top_holding"] == pytest.approx(
        np.mean([max(h) for r in rows for h in r["holdings"]]), rel=1e-3
    )
    assert 0.0 <= summary["capped_fraction"] <= 1.0


def test_episodes_are_whole_multicatch_episodes_and_returns_their_sums(replayed):
    _, summary, rows = replayed
    by_episode = defaultdict(list)
    for r in rows:
        by_episode[r["episode"]].append(r)
    assert sorted(by_episode) == list(range(EPISODES))
    returns = []
    for steps in by_episode.values():
        assert [r["step"] for r in steps] == list(range(STEPS))
        assert [r["done"] for r in steps] == [False] * (STEPS - 1) + [True]
        for r in steps:
            assert r["reward"] == pytest.approx(sum(r["factor_rewards"]))
        assert all(f == 0.0 for r in steps[:-1] for f in r["factor_rewards"])
        assert all(f in (-1.0, 1.0) for f in steps[-1]["factor_rewards"])
        returns.append(sum(r["reward"] for r in steps))
    assert summary["returns"] == pytest.approx(returns)
    assert summary["return_mean"] == pytest.approx(np.mean(returns))
    assert summary["finished"] == EPISODES


def test_pictures_goods_wealth_and_frames(replayed):
    run, summary, _ = replayed
    for name in ("goods.png", "wealth.png", "frames.png"):
        assert (run / "replay" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["frames"] is True
    assert Image.open(run / "replay" / "frames.gif").n_frames == STEPS
