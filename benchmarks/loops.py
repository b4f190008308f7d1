"""Training-loop env steps/s through the runner, at small and large episode batches.

Each case is a config of ``configs/`` (``deep_cartpole``, ``wide_cartpole``,
``ppo_cartpole``) with ``num_envs = B``, one seed and ``num_seeds = 1``, compiled by
the runner exactly as ``marketjax train`` compiles it (``compile_run``: one chunk of
whole updates, acting *and* learning). Variants, timed interleaved in one process
so that their ratio is fair on a shared machine:

- ``runner``: the runner's chunk (one seed runs unbatched, issue 17);
- ``vmap1``: the same chunk under a size-1 seed ``vmap`` (the runner before issue 17);
- ``unsliced``: Q(λ) minibatches differentiated whole, not in slices of
  ``MICRO_SAMPLES`` (the learner before issue 17);
- ``norm=rms`` / ``norm=none``: the deep or wide config with RMSNorm or no
  normalisation in place of LayerNorm (``deep.norm=rms``, ``deep.layer_norm=false``);
- any other ``key=value`` (several joined by ``+``): that override of the market's
  section, e.g. ``family=trunk+num_agents=64`` (``deep.family=trunk``,
  ``deep.num_agents=64``), so that N = 2 and N = 64 are timed in one process.
  ``rss_peak_gb`` is the process's peak so far: with several cases in one process
  it is an upper bound for the later ones; ``xla_peak_gb`` is each program's own.

The rate is the best of ``repeats`` timed calls after a warm-up call; ``compile_s``
is the chunk's ahead-of-time compile. ``--memory`` adds the compiled chunk's
``memory_analysis()`` (arguments + outputs + temporaries, the XLA peak estimate) and
the process's peak RSS. One JSON object per case; ``<out>/loops.png``.

    .venv/bin/python benchmarks/loops.py [--algos deep,wide,ppo] [--batches 256,4096]
        [--variants runner,vmap1,norm=rms,family=trunk+num_agents=64]
        [--agents 2] [--family mlp] [--memory]
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import time
from pathlib import Path

import jax

from marketjax.experiment.config import apply_overrides, load_yaml
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.runner import compile_run, make_chunk, seed_keys

CONFIGS = {
    "deep": "configs/deep_cartpole.yaml",
    "wide": "configs/wide_cartpole.yaml",
    "ppo": "configs/ppo_cartpole.yaml",
}
TARGET_STEPS = 2**18  # env steps per timed call (about)


def make_config(algo: str, batch: int, variant: str, agents: int | None, family):
    """The config of one case: one seed, one chunk of about TARGET_STEPS steps."""
    data = load_yaml(CONFIGS[algo])
    section = data[algo]
    horizon = section.get("rollout_steps", section.get("num_steps", 16))
    updates = max(2, TARGET_STEPS // (horizon * batch))
    overrides = [
        f"num_envs={batch}",
        "num_seeds=1",
        f"total_env_steps={horizon * batch * updates}",
        "runner.num_chunks=1",
        "runner.progress=false",
        "runner.checkpoint=false",
    ]
    if agents is not None and algo != "ppo":
        overrides.append(f"{algo}.num_agents={agents}")
    if family is not None and algo == "deep":
        overrides.append(f"deep.family={family}")
    if variant == "norm=rms":
        overrides.append(f"{algo}.norm=rms")
    elif variant == "norm=none":
        overrides.append(f"{algo}.layer_norm=false")
    elif "=" in variant:
        overrides += [f"{algo}.{item}" for item in variant.split("+")]
    return parse_train_config(apply_overrides(data, overrides))


def build(algo, batch, variant, agents, family, memory: bool) -> dict:
    """Compiles one case; returns its callable, state and facts."""
    config = make_config(algo, batch, variant, agents, family)
    q = importlib.import_module("marketjax.learners.q_lambda")
    micro = q.MICRO_SAMPLES
    if variant == "unsliced":
        q.MICRO_SAMPLES = 1 << 40
    try:
        run = compile_run(config)
    finally:
        q.MICRO_SAMPLES = micro
    state = run.init(seed_keys(config), run.params)
    chunk = run.chunk
    if variant == "vmap1":  # the runner before issue 17: a size-1 seed vmap
        inner = make_chunk(run.trainer, run.schedule.updates_per_chunk)
        chunk = jax.jit(jax.vmap(inner), donate_argnums=0)
        chunk.lower(state, run.params).compile()
    case = {
        "algo": algo,
        "B": batch,
        "variant": variant,
        "N": getattr(config.algo_config, "num_agents", None),
        "family": getattr(config.algo_config, "family", None),
        "env_steps": run.schedule.steps_per_chunk,
        "compile_s": round(run.compile_s, 2),
        "chunk": chunk,
        "params": run.params,
        "state": jax.block_until_ready(chunk(state, run.params)[0]),  # warm-up
    }
    if memory:
        stats = chunk.lower(case["state"], run.params).compile().memory_analysis()
        peak = (
            stats.argument_size_in_bytes
            + stats.output_size_in_bytes
            + stats.temp_size_in_bytes
            - stats.alias_size_in_bytes
        )
        case["xla_peak_gb"] = round(peak / 1e9, 3)
        case["rss_peak_gb"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3
        )
    return case


def time_interleaved(cases: list[dict], repeats: int) -> None:
    """Sets ``run_s`` (best of ``repeats``) on every case, calling them in turn."""
    for case in cases:
        case["run_s"] = float("inf")
    for _ in range(repeats):
        for case in cases:
            start = time.perf_counter()
            state, _ = case["chunk"](case["state"], case["params"])
            case["state"] = jax.block_until_ready(state)
            case["run_s"] = min(case["run_s"], time.perf_counter() - start)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algos", default="deep,wide,ppo")
    parser.add_argument("--batches", default="256,4096")
    parser.add_argument("--variants", default="runner,vmap1")
    parser.add_argument("--agents", type=int, default=None, help="N (deep, wide)")
    parser.add_argument("--family", default=None, help="deep.family override")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--out", default="benchmarks/out")
    args = parser.parse_args(argv)
    rows = []
    for algo in args.algos.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            variants = [
                v
                for v in args.variants.split(",")
                if algo != "ppo" or v in ("runner", "vmap1")
            ]
            cases = [
                build(algo, batch, v, args.agents, args.family, args.memory)
                for v in variants
            ]
            time_interleaved(cases, args.repeats)
            base = cases[0]["env_steps"] / cases[0]["run_s"]
            for case in cases:
                rate = case["env_steps"] / case["run_s"]
                row = {
                    "bench": "loops",
                    **{
                        k: v
                        for k, v in case.items()
                        if k not in ("chunk", "params", "state")
                    },
                    "run_s": round(case["run_s"], 4),
                    "env_steps_per_s": round(rate),
                    "ratio_to_first_variant": round(rate / base, 3),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    plot(rows, Path(args.out) / "loops.png")
    return rows


def plot(rows: list[dict], path: Path) -> None:
    """Env steps/s against B, one line per (algo, variant)."""
    from marketjax.experiment.plots import plt, save_png

    fig, ax = plt.subplots(figsize=(6, 4))
    for algo, variant in sorted({(r["algo"], r["variant"]) for r in rows}):
        pts = sorted(
            (r["B"], r["env_steps_per_s"])
            for r in rows
            if (r["algo"], r["variant"]) == (algo, variant)
        )
        ax.plot(*zip(*pts, strict=True), marker="o", label=f"{algo} {variant}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("parallel episodes B (one seed)")
    ax.set_ylabel("env steps/s (acting + learning)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, path)


if __name__ == "__main__":
    main()
