"""``marketjax replay``: a trained deep market's replay agrees with its own books."""

import json
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image

from marketjax.experiment.config import ConfigError
from marketjax.experiment.frames import BAND, SCALE, frame
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.replay import replay
from marketjax.experiment.replay_plots import agent_colour
from marketjax.experiment.train_io import train_and_write

NUM_AGENTS = 3
EPISODES = 5
CATCH_STEPS = 9  # bsuite Catch: the ball falls from row 0 to row 9, one per step


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    config = parse_train_config(
        {
            "name": "tiny",
            "algo": "deep",
            "env": "Catch-bsuite",
            "num_envs": 8,
            "num_seeds": 2,
            "total_env_steps": 8 * 8 * 2,
            "runner": {"num_chunks": 2, "out_dir": str(out), "progress": False},
            "deep": {
                "num_agents": NUM_AGENTS,
                "family": "linear",
                "rollout_steps": 8,
                "auction": "vickrey",
            },
        }
    )
    train_and_write(config)
    run = out / "tiny"
    summary = replay(run, episodes=EPISODES)
    rows = [
        json.loads(x)
        for x in (run / "replay" / "replay.jsonl").read_text().splitlines()
    ]
    return run, summary, rows


def _episodes(rows):
    by_episode = defaultdict(list)
    for row in rows:
        by_episode[row["episode"]].append(row)
    return by_episode


def test_each_episode_is_one_whole_catch_episode(replayed):
    _, summary, rows = replayed
    episodes = _episodes(rows)
    assert sorted(episodes) == list(range(EPISODES))
    for steps in episodes.values():
        assert [r["step"] for r in steps] == list(range(CATCH_STEPS))
        assert [r["done"] for r in steps] == [False] * (CATCH_STEPS - 1) + [True]
        # Catch pays only when the ball lands: 0 before, then +1 or -1.
        assert [r["reward"] for r in steps[:-1]] == [0.0] * (CATCH_STEPS - 1)
        assert steps[-1]["reward"] in (-1.0, 1.0)
    assert summary["finished"] == EPISODES


def test_returns_are_the_sums_of_the_recorded_rewards(replayed):
    _, summary, rows = replayed
    episodes = _episodes(rows)
    sums = [sum(r["reward"] for r in episodes[e]) for e in range(EPISODES)]
    assert summary["returns"] == sums
    assert summary["return_mean"] == pytest.approx(np.mean(sums))
    assert summary["return_std"] == pytest.approx(np.std(sums))


def test_greedy_vickrey_owner_is_the_top_bidder_and_pays_the_second_bid(replayed):
    _, summary, rows = replayed
    for r in rows:
        assert -1 <= r["owner"] < NUM_AGENTS
        agents = [a for a, _ in r["top_bids"]]
        bids = [b for _, b in r["top_bids"]]
        assert len(set(agents)) == len(agents) and set(agents) <= {0, 1, 2}
        assert bids == sorted(bids, reverse=True)
        if r["owner"] >= 0:  # explore = 0: the auction alone decides
            assert r["owner"] == agents[0]
            assert r["paid"] == pytest.approx(bids[1], rel=1e-6)
            assert r["owner_wealth"] is not None
    assert summary["explore"] == 0.0
    assert summary["bank_acted_frac"] == pytest.approx(
        np.mean([r["owner"] < 0 for r in rows])
    )
    assert summary["mean_price"] == pytest.approx(np.mean([r["paid"] for r in rows]))


def test_pictures_are_pngs(replayed):
    run, _, _ = replayed
    for name in ("ownership.png", "wealth.png", "frames.png"):
        data = (run / "replay" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name


def test_bad_run_dir_is_one_line_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "marketjax.cli", "replay", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"config error: replay: {tmp_path / 'nope'} is not a run directory"
    ]


def test_corrupt_checkpoint_and_bad_episodes_are_config_errors(replayed, tmp_path):
    run, _, _ = replayed
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "config.yaml").write_text((run / "config.yaml").read_text())
    (copy / "checkpoint.msgpack").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"checkpoint is corrupt.*is empty"):
        replay(copy)
    with pytest.raises(ConfigError, match="'--episodes' must be >= 1"):
        replay(run, episodes=0)


def test_a_chang_run_is_refused_before_its_checkpoint_is_read(tmp_path):
    (tmp_path / "config.yaml").write_text(
        "name: c\nalgo: chang\nenv: ChangBandit\ntotal_env_steps: 64\n"
    )
    (tmp_path / "checkpoint.msgpack").write_bytes(b"")
    with pytest.raises(
        ConfigError,
        match=r"^replay supports deep and wide markets \(and ppo: returns only\); "
        r"got chang$",
    ):
        replay(tmp_path)


def test_frames_show_the_board_under_the_owners_colour(replayed):
    run, summary, rows = replayed
    assert summary["frames"] is True
    gif = Image.open(run / "replay" / "frames.gif")
    assert gif.n_frames == CATCH_STEPS  # episode 0, every step
    strip = Image.open(run / "replay" / "frames.png").convert("RGB")
    w, h = 5 * SCALE, 10 * SCALE + BAND  # Catch: 10 rows x 5 columns
    assert strip.size == (CATCH_STEPS * (w + 4) - 4, h)
    px = np.asarray(strip)
    for r in [r for r in rows if r["episode"] == 0]:
        x0 = r["step"] * (w + 4)
        band = px[BAND // 2, x0 + w - 2]  # right end of the band: no text there
        want = np.array(agent_colour(r["owner"], NUM_AGENTS)[:3]) * 255
        np.testing.assert_allclose(band, want.astype(np.uint8), atol=1)
        board = px[BAND:, x0 : x0 + w][SCALE // 2 :: SCALE, SCALE // 2 :: SCALE]
        dark = (board.sum(-1) == 0).astype(int)  # [10, 5]: ball and paddle
        assert dark[9].sum() == 1  # the paddle, on the bottom row
        assert dark.sum() in (1, 2)  # + the ball (on the paddle at the end)


def test_frame_of_a_catch_observation_is_its_board():
    obs = np.zeros((10, 5), np.float32)
    obs[3, 1] = obs[9, 4] = 1.0
    img = frame("Catch-bsuite", obs.reshape(-1), (10, 5))
    assert img.shape == (10 * SCALE, 5 * SCALE, 3)
    cells = img[SCALE // 2 :: SCALE, SCALE // 2 :: SCALE, 0]
    np.testing.assert_array_equal(cells == 0, obs == 1)


def test_a_ppo_run_gets_its_evaluation_returns(tmp_path):
    config = parse_train_config(
        {
            "name": "ppo",
            "algo": "ppo",
            "env": "Catch-bsuite",
            "num_envs": 4,
            "total_env_steps": 4 * 8 * 2,
            "runner": {"num_chunks": 2, "out_dir": str(tmp_path), "progress": False},
            "ppo": {"num_steps": 8, "num_minibatches": 2, "hidden": [8]},
        }
    )
    train_and_write(config)
    summary = replay(tmp_path / "ppo", episodes=6)
    written = json.loads((tmp_path / "ppo" / "replay" / "summary.json").read_text())
    assert written == summary
    assert summary["algo"] == "ppo" and summary["finished"] == 6
    # A Catch episode pays exactly once, +1 (caught) or -1 (missed).
    assert len(summary["returns"]) == 6
    assert set(summary["returns"]) <= {-1.0, 1.0}
    assert summary["return_mean"] == pytest.approx(np.mean(summary["returns"]))
    assert summary["return_std"] == pytest.approx(np.std(summary["returns"]))
    assert not (tmp_path / "ppo" / "replay" / "replay.jsonl").exists()
    # Frames of episode 0 (Catch is drawable, the action space discrete).
    assert summary["frames"] is True
    gif = Image.open(tmp_path / "ppo" / "replay" / "frames.gif")
    assert gif.n_frames == CATCH_STEPS


def test_frames_of_minatar_multicatch_and_cartpole_observations():
    from marketjax.experiment.frames import _PALETTE, can_render

    obs = np.zeros((10, 10, 4), np.float32)
    obs[2, 3, 1] = obs[9, 0, 3] = 1.0  # one object of channel 1, one of channel 3
    cells = frame("Breakout-MinAtar", obs.reshape(-1), (10, 10, 4))[
        SCALE // 2 :: SCALE, SCALE // 2 :: SCALE
    ]
    np.testing.assert_array_equal(cells[2, 3], _PALETTE[1])
    np.testing.assert_array_equal(cells[9, 0], _PALETTE[3])
    assert (cells.reshape(-1, 3) == 255).all(axis=1).sum() == 98  # the rest: white
    boards = np.zeros((2, 10, 5), np.float32)
    boards[1, 0, 0] = 1.0  # board 1's ball, top left
    cells = frame("MultiCatch-2", boards.reshape(-1), (2, 10, 5))[
        SCALE // 2 :: SCALE, SCALE // 2 :: SCALE, 0
    ]
    assert cells.shape == (10, 11)  # 5 + a grey separator column + 5
    assert (cells[:, 5] == 160).all() and cells[0, 6] == 0
    assert (cells[:, :5] == 255).all()
    upright = frame("CartPole-v1", np.zeros(4, np.float32), (4,))
    red = np.argwhere((upright == (200, 60, 40)).all(-1))
    assert np.ptp(red[:, 1]) <= 2  # θ = 0: the pole is vertical
    assert not can_render("Pendulum-v1")


def test_a_ppo_replay_resets_as_the_run_was_configured(monkeypatch):
    """``replay_ppo`` builds its env with the run's ``env_reset`` (as the deep and
    wide replays do through ``build_market``); on Catch both rules play the same
    episodes to the bit."""
    import jax
    import jax.numpy as jnp

    from marketjax.algos.ppo.trainer import make_network
    from marketjax.envs.gymnax_adapter import env_spec
    from marketjax.experiment import replay_ppo

    built = []

    class Recording(replay_ppo.BatchedEnv):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self.lazy)

    monkeypatch.setattr(replay_ppo, "BatchedEnv", Recording)
    records = []
    for rule in ("eager", "lazy"):
        config = parse_train_config(
            {
                "name": "ppo",
                "algo": "ppo",
                "env": "Catch-bsuite",
                "total_env_steps": 64,
                "env_reset": rule,
                "ppo": {"hidden": [8]},
            }
        )
        spec = env_spec(config.env)
        network = make_network(config.algo_config, spec)
        params = network.init(jax.random.key(0), jnp.zeros((1, spec.obs_dim)))
        records.append(replay_ppo.play_ppo(config, params, 3, 64))
    assert built == [False, True]
    assert records[0]["done"].sum() >= 3  # every episode ended at least once
    for key in records[0]:
        np.testing.assert_array_equal(records[0][key], records[1][key])
