"""Seeds spread over 4 (forced host) devices give one device's numbers, bit for bit."""

import json
import os
import subprocess
import sys

import numpy as np

SCRIPT = """
import json, sys
import jax
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.runner import compile_run, seed_keys
cfg = parse_train_config({"name": "s", "algo": "deep", "env": "Catch-bsuite",
    "num_envs": 8, "num_seeds": 4, "total_env_steps": 256,
    "runner": {"num_chunks": 2},
    "deep": {"num_agents": 3, "family": "linear", "rollout_steps": 8,
             "learning": "both"}})
run = compile_run(cfg)
state = run.init(seed_keys(cfg), run.params)
for _ in range(2):
    state, metrics = run.chunk(state, run.params)
out = {k: [float(x) for x in v] for k, v in metrics.items()}
out["devices"] = jax.device_count()
out["wealth"] = state.market.population.wealth.tolist()
out["sharded"] = len(state.market.population.wealth.sharding.device_set)
print(json.dumps(out))
"""


def _run(devices):
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    }
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_four_devices_match_one():
    one, four = _run(1), _run(4)
    assert one["devices"] == 1 and four["devices"] == 4
    assert four["sharded"] == 4  # the seed axis really is spread over devices
    assert one["mean_return"] == four["mean_return"]
    # Runs are independent programs: spreading them changes no bit of the state
    # or the loss. Averaged diagnostics (means over [U, B]) may round by one ulp,
    # as XLA vectorises a reduction over 1 or 4 runs per device differently.
    np.testing.assert_array_equal(one["wealth"], four["wealth"])
    np.testing.assert_array_equal(one["bid_loss"], four["bid_loss"])
    for key in ("mean_price", "mean_top_bid", "bank"):
        np.testing.assert_allclose(one[key], four[key], rtol=2.5e-7, err_msg=key)
