"""Issue 14: run directories that cannot lie, one-line errors, Ctrl-C, disk full, the
lock, NaN/inf, the memory estimate and the watchdog.

One tiny deep run (4 chunks) is trained once per module, stopped after 2 chunks
(``partial``) and then finished (``finished``); every test works on a copy. The
persistent compilation cache (a folder of this module) makes the later compiles of
the same program cheap.
"""

import errno
import fcntl
import json
import os
import shutil
import time

import jax
import numpy as np
import pytest

from marketjax import cli
from marketjax.core.config import ConfigError, dump_yaml
from marketjax.experiment import memory, run_dir, train_io
from marketjax.experiment.checkpoint import save_checkpoint
from marketjax.experiment.registry import parse_train_config, train_config_to_dict
from marketjax.experiment.watchdog import Watchdog


def _data(out_dir, **runner):
    return {
        "name": "tiny",
        "algo": "deep",
        "env": "Catch-bsuite",
        "num_envs": 4,
        "num_seeds": 2,
        "total_env_steps": 4 * 2 * 4,
        "runner": {"num_chunks": 4, "out_dir": str(out_dir), "progress": False}
        | runner,
        "deep": {
            "num_agents": 3,
            "family": "linear",
            "rollout_steps": 2,
            "hidden": [4],
            "layer_norm": False,
        },
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``{"partial": dir, "finished": dir, "cache": dir}`` (read-only for tests)."""
    root = tmp_path_factory.mktemp("reliability")
    old = (
        jax.config.jax_compilation_cache_dir,
        jax.config.jax_persistent_cache_min_compile_time_secs,
    )
    jax.config.update("jax_compilation_cache_dir", str(root / "cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    config = parse_train_config(_data(root / "work"))
    assert train_io.train_and_write(config, stop_after_chunks=2) == {}
    shutil.copytree(root / "work" / "tiny", root / "partial")
    train_io.train_and_write(config, resume=True)
    shutil.copytree(root / "work" / "tiny", root / "finished")
    yield {"partial": root / "partial", "finished": root / "finished", "root": root}
    jax.config.update("jax_compilation_cache_dir", old[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", old[1])


def _copy(src, tmp_path):
    """A copy of a fixture run at ``tmp_path/out/tiny`` (its config.yaml names
    the new out_dir); returns (out_dir, run)."""
    out, run = tmp_path / "out", tmp_path / "out" / "tiny"
    shutil.copytree(src, run)
    config = parse_train_config(_data(out))
    (run / "config.yaml").write_text(dump_yaml(train_config_to_dict(config)))
    return out, run


def _snapshot(folder):
    return {
        p.relative_to(folder): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def _rows(folder):
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "wall_s"} for x in lines]


def _cli(args, capsys, monkeypatch):
    monkeypatch.setenv("MARKETJAX_JAX_CACHE", "")  # keep the module's cache
    code = cli.main(args)
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def _config_file(run):
    return str(run / "config.yaml")  # the resolved config runs again as it is


# --- 1. a run directory that cannot lie --------------------------------------


def test_missing_checkpoint_beside_metrics_is_an_error_not_a_restart(
    runs, tmp_path, capsys, monkeypatch
):
    _, run = _copy(runs["finished"], tmp_path)
    (run / "checkpoint.msgpack").unlink()
    before = _snapshot(run)
    code, err = _cli(["train", _config_file(run), "--resume"], capsys, monkeypatch)
    assert code == 2 and len(err) == 1
    assert "checkpoint.msgpack is missing but" in err[0]
    assert "holds 4 chunks; --overwrite to start again" in err[0]
    assert _snapshot(run) == before


def test_a_restart_deletes_the_stale_summary_before_writing_metrics(runs, tmp_path):
    out, run = _copy(runs["partial"], tmp_path)
    # A summary of an earlier, finished attempt beside a 2-chunk run.
    (run / "summary.json").write_text(json.dumps({"env_steps": 10**6}))
    config = parse_train_config(_data(out))
    assert train_io.train_and_write(config, resume=True, stop_after_chunks=1) == {}
    assert not (run / "summary.json").exists()
    assert len(_rows(run)) == 3
    assert _rows(run) == _rows(runs["finished"])[:3]


# --- 2. corrupt files: one line, exit 2, before compiling, files unchanged ------


def _foreign_checkpoint(path):
    save_checkpoint(path, {"w": np.zeros(3)}, {"chunks_done": 2, "wall_s": 1.0})


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.write_bytes(p.read_bytes()[:100]), "is not msgpack"),
        (lambda p: p.write_bytes(os.urandom(4096)), "checkpoint is corrupt"),
        (lambda p: p.write_bytes(b"\x81\xa1a\x01"), "not a marketjax checkpoint"),
        (_foreign_checkpoint, "does not fit this config"),
    ],
    ids=["empty", "truncated", "random", "foreign-msgpack", "foreign-state"],
)
def test_a_corrupt_checkpoint_is_one_line_and_changes_nothing(
    runs, tmp_path, capsys, monkeypatch, damage, message
):
    _, run = _copy(runs["partial"], tmp_path)
    damage(run / "checkpoint.msgpack")
    before = _snapshot(run)
    code, err = _cli(["train", _config_file(run), "--resume"], capsys, monkeypatch)
    assert code == 2 and len(err) == 1, err
    assert message in err[0] and err[0].endswith("--overwrite to start again")
    assert err[0].startswith("config error: ")
    assert _snapshot(run) == before


def test_a_damaged_metrics_line_is_one_line_and_changes_nothing(
    runs, tmp_path, capsys, monkeypatch
):
    _, run = _copy(runs["partial"], tmp_path)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text(lines[0] + "\n" + lines[1][:-9] + "\n")
    before = _snapshot(run)
    code, err = _cli(["train", _config_file(run), "--resume"], capsys, monkeypatch)
    assert code == 2 and len(err) == 1
    assert "metrics.jsonl is corrupt: line 2 is not a metrics row" in err[0]
    assert _snapshot(run) == before


# --- 6. filesystem ------------------------------------------------------------


def test_out_dir_that_is_a_file_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("x")
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(_data(tmp_path / "file")))
    code, err = _cli(["train", str(config)], capsys, monkeypatch)
    assert code == 2 and len(err) == 1
    assert (
        "'runner.out_dir': cannot create" in err[0] and "file is in the way" in err[0]
    )


def test_read_only_out_dir_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(run_dir.Path, "mkdir", refuse)
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(_data(tmp_path / "ro")))
    code, err = _cli(["train", str(config)], capsys, monkeypatch)
    assert code == 2 and len(err) == 1
    assert err[0].endswith(
        "cannot create " + str(tmp_path / "ro" / "tiny") + " (Permission denied)"
    )


def test_disk_full_mid_run_is_one_line_and_leaves_a_resumable_run(
    runs, tmp_path, capsys, monkeypatch
):
    real, calls = train_io.write_atomic, []

    def full_disk(path, data):
        if str(path).endswith("metrics.jsonl") and data:
            calls.append(path)
            if len(calls) == 2:  # the second chunk's metrics
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(train_io, "write_atomic", full_disk)
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(_data(tmp_path / "out")))
    code, err = _cli(["train", str(config)], capsys, monkeypatch)
    assert code == 1 and len(err) == 1
    assert "No space left on device" in err[0] and "after chunk 1;" in err[0]
    run = tmp_path / "out" / "tiny"
    assert _rows(run) == _rows(runs["finished"])[:1]
    assert not (run / "summary.json").exists()


# --- 7. Ctrl-C and the lock -----------------------------------------------------


def test_ctrl_c_is_one_line_exit_130_and_the_run_resumes(
    runs, tmp_path, capsys, monkeypatch
):
    _, run = _copy(runs["partial"], tmp_path)
    real = train_io.save_checkpoint

    def interrupted(path, state, meta):
        if meta["chunks_done"] == 4:
            raise KeyboardInterrupt
        real(path, state, meta)

    monkeypatch.setattr(train_io, "save_checkpoint", interrupted)
    code, err = _cli(["train", _config_file(run), "--resume"], capsys, monkeypatch)
    assert (code, err) == (
        130,
        ["error: interrupted after chunk 3; resume with --resume"],
    )
    assert _rows(run) == _rows(runs["finished"])  # the 4th row; checkpoint at 3
    assert not (run / "summary.json").exists()


def test_two_resumes_of_one_run_cannot_both_proceed(runs, tmp_path):
    out, run = _copy(runs["partial"], tmp_path)
    with open(run / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ConfigError, match="in use by another process"):
            train_io.train_and_write(parse_train_config(_data(out)), resume=True)


# --- 3. NaN/inf stops the run ----------------------------------------------------


def test_nonfinite_metrics_ignore_runs_without_episodes_only():
    metrics = {
        "episodes": np.array([0.0, 2.0]),
        "mean_return": np.array([np.nan, 1.0]),
        "bid_loss": np.array([0.5, 0.1]),
    }
    assert train_io.nonfinite_metrics(metrics) == []
    assert train_io.nonfinite_metrics({**metrics, "bid_loss": [np.inf, 0]}) == [
        "bid_loss"
    ]
    assert train_io.nonfinite_metrics(
        {**metrics, "mean_return": np.array([0.0, np.nan])}
    ) == ["mean_return"]


def test_a_run_that_turns_nan_stops_with_one_line_and_exit_1(
    runs, tmp_path, capsys, monkeypatch
):
    real = train_io.compile_run

    def poisoned(config, before_compile=None):
        run = real(config, before_compile)
        chunk, calls = run.chunk, []

        def nan_on_third(state, params):
            state, metrics = chunk(state, params)
            calls.append(1)
            if len(calls) == 3:
                metrics = {**metrics, "bid_loss": metrics["bid_loss"] * np.nan}
            return state, metrics

        run.chunk = nan_on_third
        return run

    monkeypatch.setattr(train_io, "compile_run", poisoned)
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(_data(tmp_path / "out")))
    code, err = _cli(["train", str(config)], capsys, monkeypatch)
    assert code == 1 and len(err) == 1
    assert "training diverged: bid_loss became NaN or inf in chunk 3" in err[0]
    assert len(_rows(tmp_path / "out" / "tiny")) == 2


# --- 4. memory ---------------------------------------------------------------------


def test_memory_estimate_refuses_before_any_file(tmp_path, capsys, monkeypatch):
    config = parse_train_config(_data(tmp_path))
    total, _ = memory.estimate(config)
    doubled, _ = memory.estimate(parse_train_config(_data(tmp_path) | {"num_seeds": 4}))
    assert doubled == 2 * total  # every term scales with the runs
    monkeypatch.setattr(memory, "available_bytes", lambda: total - 1)
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(_data(tmp_path / "out")))
    code, err = _cli(["train", str(path)], capsys, monkeypatch)
    assert code == 2 and len(err) == 1
    assert "the config needs about" in err[0] and "num_envs=4" in err[0]
    assert not (tmp_path / "out").exists()


def test_memory_estimate_counts_one_network_for_agents_that_share_a_trunk():
    """The trunk family reads each observation with one network, whatever N: at
    N = 1024 and B = 4096 it needs under a GiB (it runs in 0.8 GB RSS), where the
    mlp family's 1024 networks need 32 GiB. The guard refused it as if it were
    mlp ("lower num_agents")."""

    def config(family, agents):
        data = {
            "name": "m",
            "algo": "deep",
            "env": "CartPole-v1",
            "num_envs": 4096,
            "total_env_steps": 10**6,
            "deep": {
                "family": family,
                "num_agents": agents,
                "hidden": [64, 64],
                "rollout_steps": 8,
            },
        }
        return parse_train_config(data)

    def activations(family, agents):
        return dict(memory.estimate(config(family, agents))[1][2:])

    steps = 4096 * 8  # num_envs x deep.rollout_steps
    assert list(activations("trunk", 1024).values()) == [2 * steps * 128 * 4]
    assert activations("trunk", 2) == activations("trunk", 1024)
    assert list(activations("mlp", 1024).values()) == [2 * steps * 1024 * 128 * 4]
    (what,) = activations("trunk", 1024)
    assert "num_agents" not in what
    assert memory.check_memory(config("trunk", 1024), available=2**30) < 2**30
    with pytest.raises(ConfigError, match="num_agents=1024"):
        memory.check_memory(config("mlp", 1024), available=2**30)


# --- 10. the watchdog -------------------------------------------------------------


def test_watchdog_reports_a_slow_chunk_and_keeps_waiting():
    lines = []
    dog = Watchdog(min_s=0.05, factor=1.0, restart=False, log=lines.append)
    assert dog.run(lambda: 7, 0) == 7
    assert dog.run(lambda: time.sleep(0.3) or 8, 1) == 8
    assert len(lines) == 1 and lines[0].startswith("watchdog: chunk 2 has run")


def test_watchdog_restarts_a_stalled_run_with_the_same_numbers(
    runs, tmp_path, capsys, monkeypatch
):
    real, calls = train_io.compile_run, []

    def stalling(config, before_compile=None):
        run = real(config, before_compile)
        chunk = run.chunk

        def stall_once(state, params):
            out = jax.block_until_ready(chunk(state, params))
            calls.append(1)
            if len(calls) == 3:  # the third chunk hangs (once)
                time.sleep(20.0)  # abandoned by the watchdog, never awaited
            return out

        run.chunk = stall_once
        return run

    monkeypatch.setattr(train_io, "compile_run", stalling)
    data = _data(tmp_path / "out", watchdog_s=1.0, watchdog_factor=3.0)
    data["runner"]["watchdog_restart"] = True
    summary = train_io.train_and_write(parse_train_config(data))
    err = capsys.readouterr().err
    assert "watchdog: chunk 3 has run" in err and "restarting" in err
    assert _rows(tmp_path / "out" / "tiny") == _rows(runs["finished"])
    finished = json.loads((runs["finished"] / "summary.json").read_text())
    assert (
        summary["final_mean_return_per_seed"]
        == (finished["final_mean_return_per_seed"])
    )


# --- 1. compare keys its reuse on the code version and the config schema ---------


def test_compare_reruns_a_finished_run_of_other_code_or_schema(tmp_path, monkeypatch):
    from marketjax.experiment import compare

    (tmp_path / "t.yaml").write_text(json.dumps(_data(tmp_path)))
    config = compare.parse_compare_config(
        {
            "name": "c",
            "envs": [{"id": "Catch-bsuite"}],
            "algorithms": [{"label": "d", "config": "t.yaml"}],
            "total_env_steps": 32,
            "out_dir": str(tmp_path / "results"),
        }
    )
    (case,) = compare.resolve_cases(config, tmp_path)
    assert case.train.runner.watchdog_restart  # on for compare
    run = tmp_path / "results" / "c" / "runs" / case.train.name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(dump_yaml(train_config_to_dict(case.train)))
    (run / "summary.json").write_text("{}")
    lines = []
    assert compare.run_status(case, lines.append) == "rerun"  # no version record
    run_dir.write_version(run, case.train)
    assert compare.run_status(case, lines.append) == "done"
    monkeypatch.setattr(run_dir, "code_version", lambda: "0.1.0+000000000000")
    assert compare.run_status(case, lines.append) == "rerun"
    monkeypatch.undo()
    record = json.loads((run / "version.json").read_text())
    (run / "version.json").write_text(json.dumps(record | {"schema": "old"}))
    assert compare.run_status(case, lines.append) == "rerun"
    assert len(lines) == 3 and all(
        x.startswith("compare: re-running d__") for x in lines
    )
    assert "the code changed" in lines[1] and "config schema changed" in lines[2]


def test_resume_of_a_run_that_does_not_exist_leaves_no_directory(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot resume: .*config\.yaml does not"):
        train_io.train_and_write(parse_train_config(_data(tmp_path)), resume=True)
    assert not (tmp_path / "tiny").exists()


def test_watchdog_restarts_the_process_when_an_in_process_restart_stalls_too(
    runs, tmp_path
):
    import subprocess
    import sys
    from pathlib import Path

    data = _data(tmp_path / "out", watchdog_s=1.0, watchdog_factor=3.0)
    data["runner"]["watchdog_restart"] = True
    (tmp_path / "c.yaml").write_text(json.dumps(data))
    env = dict(
        os.environ,
        # chunk 3 sleeps 60 s in the first process: longer than any limit the
        # restarted attempt can have (3x its compile time), however loaded
        MARKETJAX_FAULT_STALL="3:60",
        MARKETJAX_JAX_CACHE=str(runs["root"] / "cache"),
    )
    env.pop("MARKETJAX_REEXECS", None)
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "marketjax"),
            "train",
            str(tmp_path / "c.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    lines = [x for x in result.stderr.splitlines() if x.startswith("watchdog:")]
    assert len(lines) == 3, result.stderr
    assert lines[0].startswith("watchdog: chunk 3 has run")
    assert lines[1].startswith("watchdog: chunk 3 has run")
    assert lines[2].startswith("watchdog: restarting the process: marketjax train")
    assert _rows(tmp_path / "out" / "tiny") == _rows(runs["finished"])


def test_a_run_saved_before_a_schema_key_existed_still_resumes(tmp_path):
    """A run directory written before ``env_reset`` existed has no such line in
    its config.yaml; resuming it with the same config (the key at its default,
    the behaviour the run had) must pass the check, while a real change of any
    key (the new one included) is still refused, and a saved file that no longer
    parses is one line naming it."""
    config = parse_train_config(_data(tmp_path))
    run = tmp_path / "run"
    run.mkdir()
    saved = run / "config.yaml"
    text = dump_yaml(train_config_to_dict(config))
    assert "env_reset: eager\n" in text
    saved.write_text(text.replace("env_reset: eager\n", ""))
    run_dir.check_fresh_or_resumable(config, run, resume=True, overwrite=False)
    for changed in ({"seed": 1}, {"env_reset": "lazy"}):
        other = parse_train_config({**_data(tmp_path), **changed})
        with pytest.raises(ConfigError, match="cannot resume: the config differs"):
            run_dir.check_fresh_or_resumable(other, run, resume=True, overwrite=False)
    saved.write_text(text.replace("env_reset: eager", "env_reset: sometimes"))
    with pytest.raises(ConfigError, match=r"config\.yaml: 'env_reset' must be"):
        run_dir.check_fresh_or_resumable(config, run, resume=True, overwrite=False)


def test_a_checkpoint_saved_before_population_shared_existed_still_loads(tmp_path):
    """``Population.shared`` (the trunk family's parameters, ``{}`` for every
    other family) was added after runs were saved: a checkpoint without the field
    loads into today's template, with the same numbers; a missing field that
    holds arrays is still an error."""
    from flax import serialization

    from marketjax.agents.families import make_family
    from marketjax.agents.population import init_population
    from marketjax.experiment.checkpoint import load_checkpoint, write_atomic

    family = make_family("mlp", 4, 2, hidden=(8,))
    pop = init_population(jax.random.key(0), family, 3, 5.0)
    old = serialization.to_state_dict({"population": pop})
    del old["population"]["shared"]
    path = tmp_path / "old.msgpack"
    payload = {"state": old, "meta": json.dumps({"chunk": 2})}
    write_atomic(path, serialization.msgpack_serialize(payload))
    state, meta = load_checkpoint(path, {"population": pop})
    assert state["population"].shared == {} and meta == {"chunk": 2}
    np.testing.assert_array_equal(state["population"].wealth, pop.wealth)
    del old["population"]["wealth"]
    write_atomic(path, serialization.msgpack_serialize(payload))
    with pytest.raises(ValueError, match="wealth"):
        load_checkpoint(path, {"population": pop})
