"""Env steps/s against the number of parallel episodes B, for every algorithm.

Cases, for B in {1, 16, 256, 4096}:

- ``env``: the raw gymnax environment (``BatchedEnv``) stepped with uniformly random
  actions in one jitted ``lax.scan``: the ceiling every learner sits under;
- every algorithm registered with the runner (``ppo``, ``deep``, ``wide``, ...): its
  config ``configs/<algo>_<env>.yaml`` with ``num_envs=B`` and one seed, compiled by
  the runner (``compile_run``) into one chunk of whole updates, acting *and*
  learning. Algorithms whose module or config is missing are skipped, saying so.

Compile time is measured apart (the ahead-of-time compile of the chunk); the rate is
the best of ``repeats`` timed calls after a warm-up call, with
``block_until_ready``. Prints one JSON object per line per case and writes
``<out>/scaling.jsonl`` and ``<out>/scaling.png``.

    .venv/bin/python benchmarks/scaling.py [--quick] [--env CartPole-v1]
        [--batches 1,16,256,4096] [--algos ppo,deep] [--out benchmarks/out] [--append]
        [--agents 2,8,64]

``--agents`` adds the N axis: the deep market's training loop at each batch B for
N agents (``benchmarks/agents_scaling.py``), rows labelled ``deep N=<n>``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from marketjax.envs.gymnax_adapter import BatchedEnv
from marketjax.experiment.config import ConfigError, load_yaml
from marketjax.experiment.registry import (
    algorithm_names,
    get_algorithm,
    parse_train_config,
)
from marketjax.experiment.runner import compile_run, seed_keys

BATCHES = (1, 16, 256, 4096)


def _device() -> str:
    d = jax.devices()[0]
    return f"{d.platform}:{getattr(d, 'device_kind', '')}"


def _best_of(fn, state, repeats: int) -> tuple[float, object]:
    state = jax.block_until_ready(fn(state))  # warm-up (no compile: already done)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        state = jax.block_until_ready(fn(state))
        best = min(best, time.perf_counter() - start)
    return best, state


def raw_env_case(env_name: str, batch: int, target: int, repeats: int) -> dict:
    """Random actions through ``BatchedEnv`` in a jitted scan of ~target steps."""
    env = BatchedEnv(env_name, batch)
    spec = env.spec
    length = max(8, target // batch)

    def run(carry):
        def body(c, _):
            key, state = c
            key, k_act, k_step = jax.random.split(key, 3)
            if spec.discrete:
                action = jax.random.randint(k_act, (batch,), 0, spec.num_actions)
            else:
                action = jax.random.uniform(
                    k_act,
                    (batch, spec.num_actions),
                    minval=spec.action_low,
                    maxval=spec.action_high,
                )
            obs, state, reward, done, _ = env.step(k_step, state, action)
            total = jnp.sum(reward) + jnp.sum(obs)
            return (key, state), total + jnp.sum(done.astype(total.dtype))

        carry, out = jax.lax.scan(body, carry, None, length=length)
        return carry, jnp.sum(out)

    _, env_state = env.reset(jax.random.key(0))
    carry = (jax.random.key(1), env_state)
    start = time.perf_counter()
    compiled = jax.jit(run).lower(carry).compile()
    compile_s = time.perf_counter() - start
    best, _ = _best_of(lambda c: compiled(c)[0], carry, repeats)
    steps = length * batch
    return {"steps": steps, "run_s": best, "compile_s": compile_s}


def algo_config(algo: str, env_name: str, batch: int, target: int, configs: Path):
    """The algorithm's config for ``env_name`` at B episodes, one chunk of ~target.

    Returns None (and says why on stderr) if the algorithm or its config is missing.
    """
    path = configs / f"{algo}_{env_name.split('-')[0].lower()}.yaml"
    if not path.is_file():
        print(f"# skip {algo}: no config {path}", file=sys.stderr)
        return None
    data = load_yaml(path)
    runner = {**(data.get("runner") or {}), "num_chunks": 1}
    runner.update(progress=False, checkpoint=False)
    data = {
        **data,
        "env": env_name,
        "num_envs": batch,
        "num_seeds": 1,
        "total_env_steps": 1,
        "runner": runner,
    }
    config = parse_train_config(data)
    per_update = get_algorithm(algo).make_trainer(config).steps_per_update
    data["total_env_steps"] = per_update * max(1, round(target / per_update))
    return parse_train_config(data)


def algo_case(config, repeats: int) -> dict:
    """One compiled runner chunk of ``config``: compile time and best call time."""
    run = compile_run(config)
    state = run.init(seed_keys(config), run.params)
    best, _ = _best_of(lambda s: run.chunk(s, run.params)[0], state, repeats)
    return {
        "steps": run.schedule.steps_per_chunk,
        "run_s": best,
        "compile_s": run.compile_s,
    }


def plot(rows: list[dict], path: Path) -> None:
    """Env steps/s and compile s against B, one line per algorithm (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rate, ax_comp) = plt.subplots(1, 2, figsize=(11, 4))
    for algo in dict.fromkeys(r["algo"] for r in rows):
        sub = [r for r in rows if r["algo"] == algo]
        style = "--" if algo == "env" else "-"
        label = "raw env (random actions)" if algo == "env" else algo
        xs = [r["B"] for r in sub]
        ax_rate.plot(
            xs, [r["env_steps_per_s"] for r in sub], style, marker="o", label=label
        )
        ax_comp.plot(xs, [r["compile_s"] for r in sub], style, marker="o", label=label)
    for ax, ylabel in ((ax_rate, "env steps/s"), (ax_comp, "compile s")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("parallel episodes B")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small")
    env = rows[0]["env"] if rows else ""
    fig.suptitle(f"scaling on {env} ({rows[0]['device'] if rows else ''})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="B in {1, 16, 256}, small timed calls, one repeat",
    )
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument(
        "--batches",
        default=None,
        help="comma-separated B values (default 1,16,256,4096)",
    )
    parser.add_argument(
        "--algos",
        default=None,
        help="comma-separated algorithms (default: all registered)",
    )
    parser.add_argument(
        "--agents",
        default=None,
        help="comma-separated N values: the deep market at each B and N",
    )
    parser.add_argument("--configs", default="configs")
    parser.add_argument("--out", default="benchmarks/out")
    parser.add_argument(
        "--append",
        action="store_true",
        help="merge into an existing scaling.jsonl (replacing the same cases)",
    )
    args = parser.parse_args(argv)

    batches = BATCHES[:3] if args.quick else BATCHES
    if args.batches:
        batches = tuple(int(b) for b in args.batches.split(","))
    target = 2**14 if args.quick else 2**18
    repeats = 1 if args.quick else 3
    if args.algos is None:
        algos = algorithm_names()
    else:  # "--algos=" measures the raw environment only
        algos = [a for a in args.algos.split(",") if a]
    algos = sorted(algos, key=lambda a: (a != "ppo", a))  # ppo first
    usable = []
    for algo in algos:
        try:
            get_algorithm(algo)
            usable.append(algo)
        except (ImportError, ConfigError) as e:
            print(f"# skip {algo}: module missing ({e})", file=sys.stderr)

    rows = []
    device = _device()
    for batch in batches:
        cases = [("env", None)]
        for algo in usable:
            try:
                config = algo_config(algo, args.env, batch, target, Path(args.configs))
            except ConfigError as e:
                print(f"# skip {algo} at B={batch}: {e}", file=sys.stderr)
                continue
            if config is not None:
                cases.append((algo, config))
        for algo, config in cases:
            if config is None:
                result = raw_env_case(args.env, batch, target, repeats)
            else:
                result = algo_case(config, repeats)
            row = {
                "bench": "scaling",
                "algo": algo,
                "env": args.env,
                "B": batch,
                "env_steps": result["steps"],
                "run_s": round(result["run_s"], 5),
                "env_steps_per_s": result["steps"] / result["run_s"],
                "compile_s": round(result["compile_s"], 3),
                "device": device,
                "quick": args.quick,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)

    if args.agents:
        sys.path.insert(0, str(Path(__file__).parent))
        from agents_scaling import measure

        for batch in batches:
            for n in (int(x) for x in args.agents.split(",")):
                row = measure(n, batch, 4 if args.quick else 20, repeats)
                row.update(bench="scaling", algo=f"deep N={n}", env=args.env)
                row.update(device=device, quick=args.quick)
                rows.append(row)
                print(json.dumps(row), flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = rows
    if args.append and (out / "scaling.jsonl").is_file():  # replace measured cases
        new = {(r["algo"], r["env"], r["B"]) for r in rows}
        old = [json.loads(x) for x in (out / "scaling.jsonl").read_text().splitlines()]
        old = [r for r in old if (r["algo"], r["env"], r["B"]) not in new]
        saved = sorted(old + rows, key=lambda r: r["B"])
    (out / "scaling.jsonl").write_text("".join(json.dumps(r) + "\n" for r in saved))
    plot(saved, out / "scaling.png")
    print(f"# wrote {out / 'scaling.jsonl'} and {out / 'scaling.png'}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
