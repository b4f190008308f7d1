"""Gradient through a batch of Fisher markets: implicit vs forward vs unrolled.

A batch of CES Fisher markets (rho = 0.5, 100 buyers x 20 goods, 1024 markets by
default) is solved by ``equilibrium.fisher`` (proportional response, tol 1e-6); the
objective is the total revenue ``sum_markets w . p`` with fixed weights ``w``. Cases:

* ``forward``: the solve alone (``jit(vmap(fisher))``);
* ``implicit``: ``jax.grad`` of the objective w.r.t. budgets and utilities through
  the solve (implicit function theorem; the forward solve is included, and
  ``backward_s`` = implicit - forward);
* ``unrolled``: ``jax.grad`` through ``unrolled.fisher``, a ``lax.scan`` of the same
  proportional-response rounds, as many as the solver's worst market needed.

Times are the best of ``--repeats`` calls after a compile call (``block_until_ready``);
memory is XLA's compiled ``memory_analysis()`` (temporary buffers, i.e. the working
memory of the program beyond its inputs and outputs). The gradient of the implicit and
the unrolled case are compared (``max_rel_diff``). Prints one JSON object per case and
writes benchmarks/out/differentiable_equilibrium.png.

    python benchmarks/differentiable_equilibrium.py [--quick] [--batch N]
"""

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from marketjax import equilibrium
from marketjax.mechanisms import unrolled

RHO = 0.5
TOL = 1e-6
MAX_ITERS = 5_000


def instances(key, batch, m, g):
    kb, ku = jax.random.split(key)
    budgets = jax.random.uniform(kb, (batch, m), minval=0.5, maxval=2.0)
    utilities = jax.random.uniform(ku, (batch, m, g), minval=0.1, maxval=1.0)
    return budgets, utilities, jnp.ones((batch, g))


def solve(b, u, s):
    return equilibrium.fisher(
        b,
        u,
        s,
        kind="ces",
        method="proportional_response",
        tol=TOL,
        max_iters=MAX_ITERS,
        rho=RHO,
    )


def timed(fn, args, repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return first, best


def temp_bytes(fn, args):
    stats = fn.lower(*args).compile().memory_analysis()
    return None if stats is None else int(stats.temp_size_in_bytes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 64, 1 repeat")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--buyers", type=int, default=100)
    parser.add_argument("--goods", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out", default="benchmarks/out/differentiable_equilibrium.png"
    )
    args = parser.parse_args()
    batch = args.batch or (64 if args.quick else 1024)
    repeats = 1 if args.quick else args.repeats
    m, g = args.buyers, args.goods
    b, u, s = instances(jax.random.key(0), batch, m, g)
    w = jnp.linspace(1.0, 2.0, g)

    forward = jax.jit(jax.vmap(solve))
    eq = forward(b, u, s)
    iters = int(jnp.max(eq.iterations))
    converged = float(jnp.mean(eq.converged))

    def implicit_objective(b, u):
        return jnp.sum(jax.vmap(solve)(b, u, s).prices @ w)

    def unrolled_objective(b, u):
        p = jax.vmap(
            lambda bi, ui, si: unrolled.fisher(
                bi, ui, si, kind="ces", rho=RHO, num_iters=iters
            )
        )(b, u, s)
        return jnp.sum(p @ w)

    cases = {
        "forward": (forward, (b, u, s)),
        "implicit": (jax.jit(jax.grad(implicit_objective, argnums=(0, 1))), (b, u)),
        "unrolled": (jax.jit(jax.grad(unrolled_objective, argnums=(0, 1))), (b, u)),
    }
    rows, grads = [], {}
    for name, (fn, fn_args) in cases.items():
        first, best = timed(fn, fn_args, repeats)
        if name != "forward":
            grads[name] = fn(*fn_args)
        rows.append(
            {
                "case": name,
                "batch": batch,
                "buyers": m,
                "goods": g,
                "solver_iterations_max": iters,
                "converged_fraction": converged,
                "compile_plus_first_s": round(first, 3),
                "time_s": round(best, 4),
                "temp_bytes": temp_bytes(fn, fn_args),
            }
        )
    fwd = rows[0]["time_s"]
    diff = max(
        float(jnp.max(jnp.abs(a - c)) / jnp.max(jnp.abs(c)))
        for a, c in zip(grads["implicit"], grads["unrolled"], strict=True)
    )
    for row in rows:
        if row["case"] != "forward":
            row["backward_s"] = round(row["time_s"] - fwd, 4)
            row["max_rel_diff_implicit_vs_unrolled"] = float(f"{diff:.3g}")
        print(json.dumps(row), flush=True)
    plot(rows, pathlib.Path(args.out))


def plot(rows, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["case"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    axes[0].bar(names, [r["time_s"] for r in rows], color=["gray", "C0", "C1"])
    axes[0].set_ylabel("seconds (best of repeats)")
    axes[0].set_title("time")
    axes[1].bar(
        names,
        [(r["temp_bytes"] or 0) / 2**20 for r in rows],
        color=["gray", "C0", "C1"],
    )
    axes[1].set_ylabel("MiB (XLA temp buffers)")
    axes[1].set_title("memory")
    r = rows[0]
    fig.suptitle(
        f"gradient through {r['batch']} CES Fisher markets "
        f"({r['buyers']}x{r['goods']}, {r['solver_iterations_max']} rounds)"
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    main()
