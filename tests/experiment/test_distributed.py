"""Two processes × two forced CPU devices over localhost give one device's numbers.

``marketjax train --coordinator localhost:PORT --num-processes 2 --process-id I``
is launched twice; each process has 2 devices, so the global mesh is 2 seeds × 2
episodes: both seeds and each seed's 8 episodes cross the process boundary. The
metrics process 0 writes must equal ``make_train`` run unsharded in this test's
process (the tolerance of docs/scaling.md: float32 rounding of reordered sums),
and only process 0 may write the run directory. Deep market, wide market and
PPO (whose minibatches are shuffled within each device's episodes).
"""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
import yaml

from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.runner import make_train, seed_keys

SECTIONS = {
    "deep": (
        "Catch-bsuite",
        {
            "num_agents": 3,
            "family": "linear",
            "rollout_steps": 4,
            "initial_wealth": 2.0,
            "rent": 0.05,
        },
        ("bid_loss", "bank", "money_in_circulation", "mean_price"),
    ),
    "wide": (
        "MultiCatch-2",
        {"num_agents": 3, "rollout_steps": 4, "hidden": [8]},
        ("bid_loss", "bank", "money_in_circulation", "mean_price"),
    ),
    # Each device shuffles its own episodes' samples (2 minibatches per epoch).
    "ppo": (
        "CartPole-v1",
        {"num_steps": 4, "num_minibatches": 2, "hidden": [8]},
        ("loss", "value_loss", "entropy"),
    ),
}


def _config(algo: str, out_dir) -> dict:
    env, section, _ = SECTIONS[algo]
    return {
        "name": "mp",
        "algo": algo,
        "env": env,
        "num_envs": 8,
        "num_seeds": 2,
        "total_env_steps": 2 * 8 * 4,
        "runner": {
            "num_chunks": 2,
            "progress": False,
            "out_dir": str(out_dir),
            "mesh": {"seeds": 2, "episodes": 2},
        },
        algo: section,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("algo", sorted(SECTIONS))
def test_two_processes_match_one_device(algo, tmp_path):
    data = _config(algo, tmp_path / "runs")
    path = tmp_path / "mp.yaml"
    path.write_text(yaml.safe_dump(data))
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2 "
        "--xla_cpu_multi_thread_eigen=false",
        "MARKETJAX_JAX_CACHE": "",
        "TMPDIR": str(tmp_path),  # the scratch directory of process 1
    }
    port = _free_port()
    procs = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "marketjax.cli", "train", str(path)),
                f"--coordinator=localhost:{port}",
                "--num-processes=2",
                f"--process-id={i}",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=400) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert "wrote" in outs[0][0] and "wrote" not in outs[1][0]
    # Only process 0 wrote: one run directory, and process 1's scratch is gone.
    assert sorted(os.listdir(tmp_path / "runs")) == ["mp"]
    assert not [n for n in os.listdir(tmp_path) if n.startswith("marketjax-p")]
    rows = [
        json.loads(line)
        for line in (tmp_path / "runs" / "mp" / "metrics.jsonl")
        .read_text()
        .splitlines()
    ]
    summary = json.loads((tmp_path / "runs" / "mp" / "summary.json").read_text())

    config = parse_train_config(data)
    _, ref = jax.jit(jax.vmap(make_train(config)))(seed_keys(config))
    assert len(rows) == 2 and summary["env_steps"] == 64
    for c, row in enumerate(rows):
        ours = np.asarray(row["mean_return_per_seed"], dtype=float)
        np.testing.assert_array_equal(ours, np.asarray(ref["mean_return"][:, c]))
        for key in SECTIONS[algo][2]:
            np.testing.assert_allclose(
                row[key], float(np.median(ref[key][:, c])), rtol=1e-5, err_msg=key
            )
        if algo != "ppo":
            assert row["books_imbalance"] <= 1e-6
