"""Smoke tests of ``marketjax prices`` (the real entry point in a subprocess)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from marketjax.experiment import prices_run as prices_io
from marketjax.experiment.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "marketjax"
CONFIG = str(ROOT / "configs" / "prices_mlp.yaml")


def _overrides(tmp_path, *extra):
    return ["name=smoke", f"out_dir={tmp_path}", "sizes=[3,5,2]", "batch=6", *extra]


def _run(tmp_path, *extra):
    cmd = [str(CLI), "prices", CONFIG, *_overrides(tmp_path, *extra)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_prices_cli_writes_the_run(tmp_path):
    done = _run(tmp_path, "loss=xent")
    assert done.returncode == 0, done.stderr
    run = tmp_path / "smoke"
    assert sorted(p.name for p in run.iterdir()) == [
        "config.yaml",
        "prices.json",
        "prices.md",
        "prices_vs_gradients.png",
    ]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["sizes"] == [3, 5, 2] and config["loss"] == "xent"
    summary = json.loads((run / "prices.json").read_text())
    assert summary["converged"] is True
    assert [r["width"] for r in summary["layers"]] == [5, 2]
    assert max(r["rel_error"] for r in summary["layers"]) < 1e-4
    assert "| 0 | hidden | 5 |" in (run / "prices.md").read_text()
    assert (run / "prices_vs_gradients.png").read_bytes()[:4] == b"\x89PNG"
    bad = _run(tmp_path, "step_size=-1", "--overwrite")
    assert bad.returncode == 2 and "'step_size'" in bad.stderr


def test_refuses_to_overwrite_unless_asked(tmp_path):
    overrides = _overrides(tmp_path, "max_iters=2", "step_size=0.1")
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "old.txt").write_text("old")
    with pytest.raises(ConfigError, match="exists"):
        prices_io.run_from_cli(CONFIG, overrides, overwrite=False)
    run = prices_io.run_from_cli(CONFIG, overrides, overwrite=True)
    assert not (run / "old.txt").exists()
    summary = json.loads((run / "prices.json").read_text())
    assert summary["converged"] is False and summary["iterations"] == 2
    with pytest.raises(ConfigError, match="'sizes'"):
        prices_io.run_from_cli(CONFIG, [*overrides, "sizes=[3]"], overwrite=True)
