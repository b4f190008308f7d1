"""The ``marketjax train`` entry point, run directories, checkpoints and resume."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from marketjax.experiment.checkpoint import (
    load_checkpoint,
    save_checkpoint,
    write_json_atomic,
)
from marketjax.experiment.config import ConfigError
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.train_io import train_and_write

MARKETJAX = str(Path(sys.executable).parent / "marketjax")


def _tiny(out_dir, **runner):
    return {
        "name": "tiny",
        "algo": "deep",
        "env": "Catch-bsuite",
        "num_envs": 8,
        "num_seeds": 2,
        "total_env_steps": 8 * 8 * 4,
        "runner": {"num_chunks": 4, "out_dir": str(out_dir), "progress": False}
        | runner,
        "deep": {"num_agents": 3, "family": "linear", "rollout_steps": 8},
    }


def test_cli_train_writes_the_run_directory(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(_tiny(tmp_path / "runs")))
    result = subprocess.run(
        [MARKETJAX, "train", str(config), "name=smoke", "runner.debug=true"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    run = tmp_path / "runs" / "smoke"
    for name in ["config.yaml", "metrics.jsonl", "summary.json", "returns.png"]:
        assert (run / name).is_file(), name
    assert (run / "checkpoint.msgpack").stat().st_size > 0
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    assert {"env_steps", "wall_s", "mean_return"} <= set(rows[0])
    assert [r["env_steps"] for r in rows] == [64, 128, 192, 256]
    summary = json.loads((run / "summary.json").read_text())
    for key in [
        "final_mean_return",
        "final_mean_return_per_seed",
        "env_steps",
        "env_steps_per_s",
        "compile_s",
    ]:
        assert key in summary, key
    assert len(summary["final_mean_return_per_seed"]) == 2
    assert summary["env_steps"] == 256 and summary["traces"] == 1
    assert yaml.safe_load((run / "config.yaml").read_text())["name"] == "smoke"
    assert "final mean return" in result.stdout
    # A second run with the same name refuses to clobber the first.
    again = subprocess.run(
        [MARKETJAX, "train", str(config), "name=smoke"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 2 and "exists (finished)" in again.stderr


def test_cli_config_error_is_one_line_and_exit_2(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(_tiny(tmp_path) | {"num_env": 3}))
    result = subprocess.run(
        [MARKETJAX, "train", str(config)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "config error: unknown key 'num_env' (did you mean 'num_envs'?); valid keys: "
        "algo, deep, env, env_reset, name, num_envs, num_seeds, runner, seed, sweep, "
        "total_env_steps"
    )


def test_resume_ends_with_the_numbers_of_an_uninterrupted_run(tmp_path):
    whole = parse_train_config(_tiny(tmp_path / "a"))
    summary = train_and_write(whole)
    split = parse_train_config(_tiny(tmp_path / "b"))
    assert train_and_write(split, stop_after_chunks=2) == {}
    assert not (tmp_path / "b" / "tiny" / "summary.json").exists()
    with pytest.raises(ConfigError, match="exists \\(interrupted\\)"):
        train_and_write(split)
    # --resume --overwrite used to delete the run and then fail to resume it.
    with pytest.raises(ConfigError, match="exclude each other"):
        train_and_write(split, resume=True, overwrite=True)
    assert (tmp_path / "b" / "tiny" / "checkpoint.msgpack").is_file()
    metrics = tmp_path / "b" / "tiny" / "metrics.jsonl"
    saved = metrics.read_text()
    metrics.unlink()  # a missing metrics file used to raise FileNotFoundError
    with pytest.raises(ConfigError, match="holds 0 of the 2 chunks"):
        train_and_write(split, resume=True)
    metrics.write_text(saved)
    resumed = train_and_write(split, resume=True)
    assert (
        resumed["final_mean_return_per_seed"] == summary["final_mean_return_per_seed"]
    )

    def rows(path):
        lines = (path / "tiny" / "metrics.jsonl").read_text().splitlines()
        return [
            {k: v for k, v in json.loads(x).items() if k != "wall_s"} for x in lines
        ]

    assert rows(tmp_path / "a") == rows(tmp_path / "b")


def test_checkpoint_round_trips_typed_keys_and_checks_shapes(tmp_path):
    state = {"key": jax.random.split(jax.random.key(7), 3), "w": jnp.arange(4.0)}
    save_checkpoint(tmp_path / "c.msgpack", state, {"chunks_done": 2})
    loaded, meta = load_checkpoint(tmp_path / "c.msgpack", state)
    assert meta == {"chunks_done": 2}
    np.testing.assert_array_equal(
        jax.random.key_data(loaded["key"]), jax.random.key_data(state["key"])
    )
    np.testing.assert_array_equal(loaded["w"], state["w"])
    with pytest.raises(ValueError, match="shape"):
        load_checkpoint(tmp_path / "c.msgpack", {**state, "w": jnp.zeros(5)})
    assert not list(tmp_path.glob(".c.msgpack*"))  # no temporary file left behind


def test_json_files_are_strict_json(tmp_path):
    # NaN/inf (e.g. a table row of a run where no episode ended) used to be written
    # as the bare tokens NaN/Infinity, which strict JSON parsers reject.
    path = tmp_path / "t.json"
    write_json_atomic(path, {"a": float("nan"), "b": [1.5, float("inf")], "c": (2,)})
    text = path.read_text()
    json.loads(text, parse_constant=lambda token: pytest.fail(f"bare {token}"))
    assert json.loads(text) == {"a": None, "b": [1.5, None], "c": [2]}


def test_example_runs_scripts_and_names_what_exists(tmp_path):
    bad = subprocess.run(
        [MARKETJAX, "example", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert bad.returncode == 2
    assert "prediction_market" in bad.stderr and "\n" not in bad.stderr.strip()


def test_train_imports_leave_the_backend_to_jax_distributed():
    """`marketjax train` imports these before `jax.distributed.initialize`, which
    refuses to run once the XLA backend exists; gymnax creates it on import, so
    none of them may import gymnax at module level (a module-level import in
    train_io once broke every multi-process run)."""
    code = (
        "from jax._src import xla_bridge as xb\n"
        "from marketjax.experiment import distributed\n"
        "from marketjax.experiment.config import apply_overrides, load_yaml\n"
        "from marketjax.experiment.registry import parse_train_config\n"
        "from marketjax.experiment.train_io import train_and_write\n"
        "assert not xb.backends_are_initialized()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
