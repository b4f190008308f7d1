"""Weak and strong scaling of episode sharding (``runner.mesh.episodes``) over devices.

For each device count D (``--devices 1,2,4``) a fresh subprocess trains one seed
of a market (``--algo deep``: the deep market on Catch, LayerNorm MLP bids) with
``runner.mesh: {seeds: 1, episodes: D}``:

- weak scaling: B = ``--per-device`` × D episodes (work per device fixed); ideal:
  env steps/s grows D-fold;
- strong scaling: B = ``--total`` episodes whatever D; ideal: D-fold too.

Each row reports the best of ``--repeats`` timed chunk calls (after a warm-up
call; compile time apart) and the efficiency rate(D) / (D · rate(1)). On CPU the
D devices are forced host devices (``--xla_force_host_platform_device_count``)
that share the machine's cores, so CPU rows measure the sharding's overhead
rather than a speed-up; ``--device gpu`` runs the same cases on real
accelerators (D up to ``jax.device_count()``).

Prints one JSON object per case and writes ``<out>/scaling_devices.jsonl`` and
``<out>/scaling_devices.png``::

    .venv/bin/python benchmarks/scaling_devices.py [--device cpu|gpu]
        [--devices 1,2,4] [--per-device 64] [--total 256] [--algo deep]
        [--updates 4] [--repeats 3] [--out benchmarks/out]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SECTIONS = {
    "deep": (
        "Catch-bsuite",
        {"num_agents": 3, "hidden": [64, 64], "rollout_steps": 8, "minibatches": 4},
    ),
    "wide": ("MultiCatch-2", {"num_agents": 3, "hidden": [32], "rollout_steps": 8}),
    "ppo": ("CartPole-v1", {"num_steps": 16, "num_minibatches": 4}),
}


def child(args) -> dict:
    """One case, in this process (its devices are set by the parent)."""
    import jax

    from marketjax.experiment.registry import parse_train_config
    from marketjax.experiment.runner import compile_run, seed_keys

    env, section = SECTIONS[args.algo]
    steps = section.get("rollout_steps", section.get("num_steps"))
    config = parse_train_config(
        {
            "name": "scale",
            "algo": args.algo,
            "env": env,
            "num_envs": args.num_envs,
            "num_seeds": 1,
            "total_env_steps": args.num_envs * steps * args.updates,
            "runner": {"num_chunks": 1, "mesh": {"seeds": 1, "episodes": args.d}},
            args.algo: section,
        }
    )
    run = compile_run(config)
    state = run.init(seed_keys(config), run.params)
    state = jax.block_until_ready(run.chunk(state, run.params))[0]  # warm-up
    best = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        state = jax.block_until_ready(run.chunk(state, run.params))[0]
        best = min(best, time.perf_counter() - start)
    d = jax.devices()[0]
    return {
        "algo": args.algo,
        "env": env,
        "devices": args.d,
        "num_envs": args.num_envs,
        "env_steps_per_s": run.schedule.steps_per_chunk / best,
        "chunk_s": best,
        "compile_s": run.compile_s,
        "device": f"{d.platform}:{getattr(d, 'device_kind', '')}",
        "device_count": jax.device_count(),
    }


def run_case(args, mode: str, d: int, num_envs: int) -> dict:
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    if args.device == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
        flags = f"{flags} --xla_force_host_platform_device_count={d}"
        flags += " --xla_cpu_multi_thread_eigen=false"
    else:
        env["JAX_PLATFORMS"] = "cuda"
    env["XLA_FLAGS"] = flags.strip()
    cmd = [sys.executable, __file__, "--child", "--algo", args.algo]
    cmd += ["--d", str(d), "--num-envs", str(num_envs)]
    cmd += ["--updates", str(args.updates), "--repeats", str(args.repeats)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode:
        raise SystemExit(f"case {mode} D={d} failed:\n{out.stderr[-2000:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["mode"] = mode
    return row


def plot(rows: list[dict], path: Path) -> None:
    from marketjax.experiment.plots import plt, save_png

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, mode in zip(axes, ("weak", "strong"), strict=True):
        sel = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["devices"])
        if not sel:
            continue
        ds = [r["devices"] for r in sel]
        rates = [r["env_steps_per_s"] for r in sel]
        base = rates[0] / ds[0]
        ax.plot(ds, rates, "o-", label="measured")
        ax.plot(ds, [base * d for d in ds], "k--", label="ideal (D x 1 device)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("devices D (runner.mesh.episodes)")
        ax.set_ylabel("env steps / s")
        what = (
            f"B = {sel[0]['num_envs'] // ds[0]} per device"
            if mode == "weak"
            else f"B = {sel[0]['num_envs']}"
        )
        ax.set_title(f"{mode} scaling, {sel[0]['algo']} ({what}), {sel[0]['device']}")
        ax.legend()
    fig.tight_layout()
    save_png(fig, path)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--devices", default="1,2,4")
    p.add_argument("--per-device", type=int, default=64)
    p.add_argument("--total", type=int, default=256)
    p.add_argument("--algo", choices=sorted(SECTIONS), default="deep")
    p.add_argument("--updates", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="benchmarks/out")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--d", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--num-envs", type=int, default=64, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return []
    rows = []
    devices = [int(x) for x in args.devices.split(",")]
    for mode in ("weak", "strong"):
        for d in devices:
            b = args.per_device * d if mode == "weak" else args.total
            row = run_case(args, mode, d, b)
            one = next(
                (r for r in rows if r["mode"] == mode and r["devices"] == 1), row
            )
            row["efficiency"] = row["env_steps_per_s"] / (
                row["devices"] * one["env_steps_per_s"]
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.device == "cpu" else f"_{args.device}"
    (out / f"scaling_devices{suffix}.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows)
    )
    plot(rows, out / f"scaling_devices{suffix}.png")
    print(f"# wrote {out}/scaling_devices{suffix}.jsonl and .png", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
