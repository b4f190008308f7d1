"""Episodes sharded over 4 (forced host) devices give one device's numbers.

Each case runs in a subprocess with ``XLA_FLAGS=--xla_force_host_platform_
device_count=4`` (the test process itself has one device): the same config with
``runner.mesh: {seeds: 1, episodes: 4}`` is run by the host runner (B sharded over
4 devices, the settlement a cross-device sum) and by ``make_train`` unsharded on
one device, for two updates.

Tolerance (docs/scaling.md): cross-device sums are reordered, so float32 results
agree to rounding, not bit for bit: the first update's losses and every agent's
wealth within rtol 1e-5 (wealth ~1, rounding ~1e-7), counts and returns exactly.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = """
import json, sys
import jax, numpy as np
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.runner import compile_run, make_train, seed_keys
algo, env, section = json.loads(sys.argv[1])
cfg = parse_train_config({"name": "e", "algo": algo, "env": env, "num_envs": 8,
    "num_seeds": 1, "total_env_steps": 2 * 8 * 4,
    "runner": {"num_chunks": 2, "mesh": {"seeds": 1, "episodes": 4}},
    algo: section})
run = compile_run(cfg)
state = run.init(seed_keys(cfg), run.params)
sharded = []
for _ in range(run.schedule.num_chunks):
    state, m = run.chunk(state, run.params)
    sharded.append({k: float(np.asarray(v)[0]) for k, v in m.items()})
final, ref = jax.jit(jax.vmap(make_train(cfg)))(seed_keys(cfg))
reference = [{k: float(v[0, c]) for k, v in ref.items()}
             for c in range(run.schedule.num_chunks)]
market = getattr(state, "market", None)
out = {"sharded": sharded, "reference": reference,
       "updates_per_chunk": run.schedule.updates_per_chunk}
if market is not None:
    out["wealth"] = np.asarray(market.population.wealth).tolist()
    out["wealth_ref"] = np.asarray(final.market.population.wealth).tolist()
    out["obs_spec"] = list(market.obs.sharding.spec)
    out["wealth_spec"] = list(market.population.wealth.sharding.spec)
    out["bank"] = float(np.asarray(market.books.bank.value)[0])
    out["bank_ref"] = float(np.asarray(final.market.books.bank.value)[0])
else:
    out["obs_spec"] = list(state.obs.sharding.spec)
print(json.dumps(out))
"""

CASES = {
    # CAPITALISM with rent, entry and exit: money moves every step.
    "deep": (
        "Catch-bsuite",
        {
            "num_agents": 4,
            "family": "linear",
            "rollout_steps": 4,
            "learning": "both",
            "initial_wealth": 2.0,
            "allowance": 2.0,
            "rent": 0.05,
            "rent_on": "all",  # w <- 0.95 w every step: all fall below 1.8
            "exit_threshold": 1.8,
            "min_age": 0,
        },
    ),
    "wide": ("MultiCatch-2", {"num_agents": 3, "rollout_steps": 4, "hidden": [8]}),
    # Two minibatches per epoch: each device shuffles its own episodes' samples.
    "ppo": ("CartPole-v1", {"num_steps": 4, "num_minibatches": 2, "hidden": [8]}),
}
LOSSES = {"deep": ["bid_loss"], "wide": ["bid_loss"], "ppo": ["loss", "value_loss"]}


def _run(algo):
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4 "
        "--xla_cpu_multi_thread_eigen=false",
    }
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps([algo, *CASES[algo]])],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("algo", sorted(CASES))
def test_episode_sharding_equals_one_device(algo):
    out = _run(algo)
    assert out["updates_per_chunk"] == 1  # chunk 1 is exactly the first update
    assert out["obs_spec"] == ["seeds", "episodes", None]  # B over 4 devices
    first, ref = out["sharded"][0], out["reference"][0]
    assert set(first) == set(ref)
    for key in LOSSES[algo]:
        assert ref[key] != 0.0  # a loss that is really computed
        np.testing.assert_allclose(first[key], ref[key], rtol=1e-5, err_msg=key)
    for s, r in zip(out["sharded"], out["reference"], strict=True):
        assert s["episodes"] == r["episodes"]
        for key in r:
            np.testing.assert_allclose(
                s[key], r[key], rtol=1e-4, atol=1e-6, err_msg=key
            )
    if algo != "ppo":
        assert out["wealth_spec"] == ["seeds"]  # shared by B: replicated
        np.testing.assert_allclose(out["wealth"], out["wealth_ref"], rtol=1e-5)
    if algo == "deep":
        # The settlement's cross-device sum keeps the books: rent, entries and
        # exits moved money, and the identity holds to float32 rounding.
        second = out["sharded"][1]
        assert first["books_imbalance"] <= 1e-6 and second["books_imbalance"] <= 1e-6
        assert first["exits"] > 0 and first["entries"] > 0
        np.testing.assert_allclose(out["bank"], out["bank_ref"], rtol=1e-5, atol=1e-6)
