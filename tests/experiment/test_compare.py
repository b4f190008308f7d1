"""The comparison harness end to end on a tiny budget."""

import csv
import json
import math

import numpy as np
import pytest
import yaml

from marketjax.experiment import compare
from marketjax.experiment.config import ConfigError

TINY_PPO = {
    "name": "tiny",
    "algo": "ppo",
    "env": "CartPole-v1",
    "total_env_steps": 1000,
    "num_envs": 4,
    "ppo": {"num_steps": 16, "num_minibatches": 2, "update_epochs": 1, "hidden": [8]},
}


def _write_configs(tmp_path, **changes):
    (tmp_path / "tiny_ppo.yaml").write_text(yaml.safe_dump(TINY_PPO))
    data = {
        "name": "tiny_compare",
        "envs": [{"id": "CartPole-v1", "threshold": 15.0}],
        "algorithms": [
            {"label": "ppo_a", "config": "tiny_ppo.yaml"},
            {"label": "ppo_b", "config": "tiny_ppo.yaml", "overrides": ["ppo.lr=1e-3"]},
        ],
        "total_env_steps": 2048,
        "num_seeds": 2,
        "num_chunks": 4,
        "out_dir": str(tmp_path / "results"),
        "progress": False,
        **changes,
    }
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_bad_keys_fail_before_compiling_and_name_the_key(tmp_path):
    path = _write_configs(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["algorithms"][0]["lable"] = "x"
    with pytest.raises(ConfigError, match=r"algorithms\[0\]\.lable"):
        compare.parse_compare_config(data)
    with pytest.raises(ConfigError, match="num_seeds"):
        compare.run_from_cli(str(path), ["num_seeds=0"], overwrite=False)
    bad = ["algorithms=[{label: a, config: tiny_ppo.yaml, overrides: [ppo.gama=1]}]"]
    with pytest.raises(ConfigError, match=r"algorithms\[0\] \(a\).*ppo\.gama"):
        compare.run_from_cli(str(path), bad, overwrite=False)
    assert not (tmp_path / "results" / "tiny_compare" / "runs").exists()


def test_compare_end_to_end(tmp_path, capsys):
    path = _write_configs(tmp_path)
    out = compare.run_from_cli(str(path), [], overwrite=False)
    assert out == tmp_path / "results" / "tiny_compare"
    for name in ("table.md", "table.csv", "table.json", "curves.png", "config.yaml"):
        assert (out / name).is_file(), name
    assert (out / "curves.png").stat().st_size > 1000
    for label in ("ppo_a", "ppo_b"):
        run_dir = out / "runs" / f"{label}__CartPole-v1"
        assert (run_dir / "summary.json").is_file()
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert saved["num_seeds"] == 2 and saved["total_env_steps"] == 2048
    saved = yaml.safe_load((out / "configs" / "ppo_b__CartPole-v1.yaml").read_text())
    assert saved["ppo"]["lr"] == 1e-3

    with (out / "table.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["env"], r["algo"]) for r in rows] == [
        ("CartPole-v1", "ppo_a"),
        ("CartPole-v1", "ppo_b"),
    ]
    for row in rows:
        for key in (
            "final_return_median",
            "final_return_iqr",
            "run_s",
            "compile_s",
            "env_steps_per_s",
        ):
            assert math.isfinite(float(row[key])), key
        # The table is computed from the runs: recompute it from their files.
        run_dir = out / "runs" / f"{row['algo']}__CartPole-v1"
        summary = json.loads((run_dir / "summary.json").read_text())
        per_seed = np.array(summary["final_mean_return_per_seed"], dtype=float)
        assert float(row["final_return_median"]) == pytest.approx(
            float(np.median(per_seed)), rel=1e-6
        )
        q25, q75 = np.percentile(per_seed, [25, 75])
        assert float(row["final_return_iqr"]) == pytest.approx(q75 - q25, abs=1e-6)
        curve = [
            json.loads(line)
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        ]
        reached = [r["env_steps"] for r in curve if (r["mean_return"] or 0) >= 15.0]
        expected = reached[0] if reached else ""
        assert row["steps_to_threshold"] == str(expected)
    md = (out / "table.md").read_text()
    assert md.count("| CartPole-v1 |") == 2
    assert "final return (median)" in md and "IQR" in md
    assert "ppo_a" in capsys.readouterr().out

    # running again reuses the finished runs and rewrites the same table
    table = json.loads((out / "table.json").read_text())
    again = compare.run_compare(
        compare.parse_compare_config(yaml.safe_load(path.read_text())), base=tmp_path
    )
    assert json.loads((again / "table.json").read_text())["rows"] == table["rows"]
    before = (out / "config.yaml").read_text()
    changed = [
        "algorithms=[{label: ppo_a, config: tiny_ppo.yaml, overrides: [ppo.lr=0.01]}]"
    ]
    with pytest.raises(ConfigError, match="overwrite"):
        compare.run_from_cli(str(path), changed, overwrite=False)
    assert (out / "config.yaml").read_text() == before  # nothing was touched
