"""``runner.loggers``: TensorBoard events hold exactly the rows of metrics.jsonl."""

import json
import struct
import sys
import types

import pytest

from marketjax import cli
from marketjax.experiment import train_io
from marketjax.experiment.config import ConfigError
from marketjax.experiment.loggers import TENSORBOARD_DIR, Loggers, scalars
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.train_io import train_and_write

event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")


def read_events(folder):
    """Every Event of every event file in ``folder`` (TFRecord: u64 length,
    u32 crc of the length, the bytes, u32 crc of the bytes)."""
    events = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at : at + 8])
            event = event_pb2.Event()
            event.ParseFromString(data[at + 12 : at + 12 + length])
            events.append(event)
            at += 12 + length + 4
    return events


class FakeWandb(types.ModuleType):
    """Stands in for ``wandb``: records init kwargs, every log call and finish."""

    def __init__(self):
        super().__init__("wandb")
        self.inits, self.logged, self.finished = [], [], 0

    def init(self, **kwargs):
        self.inits.append(kwargs)
        fake = self

        class Run:
            def log(self, data, step):
                fake.logged.append((step, dict(data)))

            def finish(self):
                fake.finished += 1

        return Run()


def _config(out, loggers, **extra):
    return parse_train_config(_data(out, loggers, **extra))


def _data(out, loggers, **extra):
    return {
        "name": "tb",
        "algo": "deep",
        "env": "Catch-bsuite",
        "num_envs": 8,
        "total_env_steps": 8 * 8 * 3,
        "runner": {
            "num_chunks": 3,
            "out_dir": str(out),
            "progress": False,
            "loggers": loggers,
        },
        "deep": {"num_agents": 3, "family": "linear", "rollout_steps": 8},
    } | extra


def test_tensorboard_events_and_wandb_logs_equal_the_metrics_rows(
    tmp_path, monkeypatch
):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    train_and_write(_config(tmp_path, ["jsonl", "tensorboard", "wandb"]))
    run = tmp_path / "tb"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    got = {}
    for event in read_events(run / TENSORBOARD_DIR):
        for value in event.summary.value:
            got[(value.tag, event.step)] = value.simple_value
    want = {
        (tag, row["env_steps"]): v for row in rows for tag, v in scalars(row).items()
    }
    assert [r["env_steps"] for r in rows] == [64, 128, 192]
    assert {("wall_s", s) for s in (64, 128, 192)} <= got.keys()
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-6), key
    # W&B: one offline run in the run directory, the same rows, finished once.
    [init] = fake.inits
    assert init["mode"] == "offline"
    assert init["project"] == "marketjax"
    assert init["name"] == "tb"
    assert init["dir"] == str(run)
    assert init["config"]["deep"]["num_agents"] == 3
    assert fake.logged == [(row["env_steps"], scalars(row)) for row in rows]
    assert fake.finished == 1


def test_scalars_flattens_seeds_and_drops_non_finite():
    row = {
        "chunk": 2,
        "env_steps": 128,
        "mean_return": None,
        "mean_return_per_seed": [1.0, None, 3.0],
        "wall_s": 0.5,
        "bad": float("nan"),
    }
    assert scalars(row) == {
        "mean_return/seed_0": 1.0,
        "mean_return/seed_2": 3.0,
        "wall_s": 0.5,
    }


def test_jsonl_only_writes_no_events_and_unknown_logger_is_a_config_error(tmp_path):
    train_and_write(_config(tmp_path, ["jsonl"]))
    assert not (tmp_path / "tb" / TENSORBOARD_DIR).exists()
    with pytest.raises(ConfigError, match=r"'runner\.loggers\[1\]'"):
        _config(tmp_path, ["jsonl", "mlflow"])


def test_wandb_sweep_points_are_prefixed_in_one_run(tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    data = _data(tmp_path, ["wandb"], sweep={"deep.lr": [0.001, 0.01]})
    data["runner"]["wandb_mode"] = "disabled"
    config = parse_train_config(data)
    run = tmp_path / "tb"
    loggers = Loggers(config, [run / "lr=0.001", run / "lr=0.01"], run, {"a": 1})
    row = {"chunk": 1, "env_steps": 64, "mean_return_per_seed": [0.5], "wall_s": 2.0}
    loggers.log(0, row)
    loggers.log(1, row | {"wall_s": 3.0})
    loggers.close()
    loggers.close()  # a second close does nothing
    assert fake.inits == [
        {
            "project": "marketjax",
            "name": "tb",
            "dir": str(run),
            "mode": "disabled",
            "config": {"a": 1},
        }
    ]
    assert fake.logged == [
        (64, {"lr=0.001/mean_return/seed_0": 0.5, "lr=0.001/wall_s": 2.0}),
        (64, {"lr=0.01/mean_return/seed_0": 0.5, "lr=0.01/wall_s": 3.0}),
    ]
    assert fake.finished == 1


def test_wandb_missing_is_one_line_before_compiling(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises

    def no_compile(*args, **kwargs):
        raise AssertionError("compiled before checking the loggers")

    monkeypatch.setattr(train_io, "compile_run", no_compile)
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(_data(tmp_path, ["jsonl", "wandb"])))
    assert cli.main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "config error: 'runner.loggers': wandb needs the wandb package "
        "(pip install 'marketjax[wandb]')"
    ]
