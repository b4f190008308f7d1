"""Sweeps: one compiled program over a grid, each point equal to its run alone."""

import json

import pytest

from marketjax.core.config import ConfigError, apply_overrides
from marketjax.experiment.registry import parse_train_config, sweep_points
from marketjax.experiment.train_io import train_and_write


def _tiny(out_dir, **extra):
    data = {
        "name": "sw",
        "algo": "deep",
        "env": "Catch-bsuite",
        "num_envs": 16,
        "num_seeds": 2,
        "total_env_steps": 16 * 8 * 12,
        "runner": {"num_chunks": 3, "out_dir": str(out_dir), "progress": False},
        "deep": {"num_agents": 3, "hidden": [8], "rollout_steps": 8, "epochs": 1},
    }
    return data | extra


@pytest.mark.parametrize("num_seeds", [2, 1])
def test_a_sweep_point_equals_the_same_point_run_alone(tmp_path, num_seeds):
    # With one seed the point alone is one run, which the runner calls unbatched
    # (no size-1 vmap), while the sweep is a vmap over two runs: same numbers.
    data = apply_overrides(
        _tiny(tmp_path, num_seeds=num_seeds),
        ["sweep.deep.lr=[0.001,0.01]", "sweep.deep.gamma=[0.9]"],
    )
    config = parse_train_config(data)
    assert [label for label, _ in sweep_points(config)] == [
        "deep.lr=0.001,deep.gamma=0.9",
        "deep.lr=0.01,deep.gamma=0.9",
    ]
    train_and_write(config)
    run_dir = tmp_path / "sw"
    for name in ("sweep.csv", "sweep.md", "sweep.png", "checkpoint.msgpack"):
        assert (run_dir / name).is_file(), name
    point = run_dir / "deep.lr=0.01,deep.gamma=0.9"
    swept = json.loads((point / "summary.json").read_text())
    alone_data = apply_overrides(
        _tiny(tmp_path, name="alone", num_seeds=num_seeds),
        ["deep.lr=0.01", "deep.gamma=0.9"],
    )
    alone = train_and_write(parse_train_config(alone_data))
    assert swept["final_mean_return_per_seed"] == alone["final_mean_return_per_seed"]
    swept_rows = (point / "metrics.jsonl").read_text().splitlines()
    alone_rows = (tmp_path / "alone" / "metrics.jsonl").read_text().splitlines()
    for a, b in zip(swept_rows, alone_rows, strict=True):
        a, b = json.loads(a), json.loads(b)
        assert a["bid_loss"] == b["bid_loss"]
        assert a["mean_return_per_seed"] == b["mean_return_per_seed"]
    # The two points really differ (the sweep is not one run copied).
    other = json.loads(
        (run_dir / "deep.lr=0.001,deep.gamma=0.9" / "metrics.jsonl")
        .read_text()
        .splitlines()[-1]
    )
    assert other["bid_loss"] != json.loads(swept_rows[-1])["bid_loss"]
    csv_lines = (run_dir / "sweep.csv").read_text().splitlines()
    assert csv_lines[0].startswith("deep.lr,deep.gamma,final_return_median")
    assert len(csv_lines) == 3


@pytest.mark.parametrize(
    "key", ["deep.num_agents", "deep.hidden", "num_envs", "deep.sample_capacity"]
)
def test_shape_setting_keys_are_refused_in_a_sweep(tmp_path, key):
    data = _tiny(tmp_path, sweep={key: [1, 2]})
    with pytest.raises(ConfigError) as err:
        parse_train_config(data)
    message = str(err.value)
    assert f"sweep key '{key}'" in message and "\n" not in message
    assert "deep.lr" in message  # lists what can be swept


def test_sweep_values_are_range_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"deep\.gamma"):
        parse_train_config(_tiny(tmp_path, sweep={"deep.gamma": [0.5, 1.5]}))
    with pytest.raises(ConfigError, match="non-empty list"):
        parse_train_config(_tiny(tmp_path, sweep={"deep.lr": []}))


def test_every_sweep_point_passes_the_sections_cross_key_checks(tmp_path):
    # wide.coupling = -0.9 is in the key's range (-1, 0.9) but C is not positive
    # definite for the 4 goods of MultiCatch-4 (rho > -1/3): the point's own
    # section must be validated, not the base section once per point.
    data = {
        "name": "sw",
        "algo": "wide",
        "env": "MultiCatch-4",
        "num_envs": 16,
        "total_env_steps": 16 * 8,
        "runner": {"out_dir": str(tmp_path), "progress": False},
        "wide": {"num_agents": 2, "hidden": [8], "valuation": "coupled"},
        "sweep": {"wide.coupling": [-0.1, -0.9]},
    }
    with pytest.raises(ConfigError, match=r"'wide\.coupling'.*-0\.9"):
        parse_train_config(data)
