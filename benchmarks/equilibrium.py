"""Benchmark of marketjax.equilibrium: time and iterations to a relative excess demand
of 1e-6 for Fisher (CES, linear, Cobb–Douglas) and quasilinear markets.

Sizes M x G in {10x5, 100x20, 1000x100}, one market and a vmapped batch (1024 markets;
16 for 1000x100, see BATCH_LARGE; linear Fisher batches are capped by
LINEAR_BATCH_CAP because proportional response needs thousands of iterations there).
Compile time (the first call) is measured apart from the run time (best of the later
calls), always with ``block_until_ready``. When
cvxpy is importable, the same single Fisher instances are solved as the
Eisenberg–Gale convex program and the time ratio and price difference are reported.

Prints one JSON object per line per case and writes benchmarks/out/equilibrium.png.

    python benchmarks/equilibrium.py [--quick]
"""

import argparse
import functools
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from marketjax import equilibrium

TOL = 1e-6
SIZES = ((10, 5), (100, 20), (1000, 100))
BATCH = 1024
BATCH_LARGE = 16  # 1024 markets of 1000x100 exceed this benchmark's time budget on CPU
FISHER_CASES = (
    ("ces", "proportional_response", 0.5),
    ("ces", "tatonnement", 0.5),
    ("linear", "proportional_response", None),
    ("cobb_douglas", "tatonnement", None),
)
# Linear proportional response needs thousands of iterations (O(1/T) near the end):
# its batches are capped so the full run stays within ~15 minutes on 2 CPU cores.
LINEAR_BATCH_CAP = {10: 1024, 100: 64, 1000: 4}
MAX_ITERS = {"linear": 5_000, "ces": 5_000, "cobb_douglas": 1_000}


def separable_value(params, bundle):
    """v(x) = sum_j a_j x_j - b_j x_j^2 / 2."""
    return jnp.sum(params["a"] * bundle - 0.5 * params["b"] * bundle**2)


def separable_demand(params, prices, budget):
    del budget
    return jnp.maximum((params["a"] - prices) / params["b"], 0.0)


def fisher_instances(key, n, m, g):
    kb, ku = jax.random.split(key)
    budgets = jax.random.uniform(kb, (n, m), minval=0.5, maxval=2.0)
    utilities = jax.random.uniform(ku, (n, m, g), minval=0.1, maxval=1.0)
    return budgets, utilities, jnp.ones((n, g))


def quasilinear_instances(key, n, m, g):
    ka, kb = jax.random.split(key)
    params = {
        "a": jax.random.uniform(ka, (n, m, g), minval=1.0, maxval=5.0),
        "b": jax.random.uniform(kb, (n, m, g), minval=0.5, maxval=2.0),
    }
    return params, jnp.full((n, g), m / 4.0)


def timed(fn, *args, repeats):
    """(compile-and-first-run seconds, best later run seconds, output)."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeats if first < 5.0 else 1):
        start = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return first, best, out


def summary(eq):
    return {
        "iterations_max": int(jnp.max(eq.iterations)),
        "iterations_mean": float(jnp.mean(eq.iterations)),
        "converged_frac": float(jnp.mean(eq.converged)),
        "residual_max": float(jnp.max(eq.residual)),
    }


def eisenberg_gale(budgets, utilities, supply, kind, rho):
    """Prices from the Eisenberg–Gale program, max sum_i B_i log u_i (cvxpy)."""
    import cvxpy as cp

    b, u, s = (np.asarray(a, np.float64) for a in (budgets, utilities, supply))
    x = cp.Variable(u.shape, nonneg=True)
    if kind == "linear":
        logs = cp.log(cp.sum(cp.multiply(u, x), axis=1))
    elif kind == "ces":
        logs = cp.log(cp.sum(cp.multiply(u, cp.power(x, rho)), axis=1)) / rho
    else:
        a = u / u.sum(1, keepdims=True)
        logs = cp.sum(cp.multiply(a, cp.log(x)), axis=1)
    clearing = cp.sum(x, axis=0) <= s
    problem = cp.Problem(cp.Maximize(b @ logs), [clearing])
    start = time.perf_counter()
    problem.solve(solver=cp.CLARABEL)
    return time.perf_counter() - start, np.asarray(clearing.dual_value)


def run_fisher(kind, method, rho, m, g, batch, repeats, use_cvxpy):
    solve = functools.partial(
        equilibrium.fisher,
        kind=kind,
        method=method,
        tol=TOL,
        max_iters=MAX_ITERS[kind],
        rho=rho,
    )
    budgets, utilities, supply = fisher_instances(jax.random.key(m * g), batch, m, g)
    rows = []
    single = jax.jit(solve)
    compile_s, run_s, eq = timed(
        single, budgets[0], utilities[0], supply[0], repeats=repeats
    )
    row = {
        "market": "fisher",
        "kind": kind,
        "method": method,
        "rho": rho,
        "M": m,
        "G": g,
        "batch": 1,
        "compile_s": compile_s,
        "run_s": run_s,
        **summary(eq),
    }
    if use_cvxpy:
        cvx_s, cvx_prices = eisenberg_gale(
            budgets[0], utilities[0], supply[0], kind, rho
        )
        diff = np.abs(np.asarray(eq.prices) - cvx_prices) / np.maximum(cvx_prices, 1e-9)
        row.update(
            cvxpy_s=cvx_s,
            cvxpy_over_jax=cvx_s / run_s,
            cvxpy_max_rel_price_diff=float(diff.max()),
        )
    rows.append(row)
    batched = jax.jit(jax.vmap(solve))
    compile_s, run_s, eq = timed(batched, budgets, utilities, supply, repeats=repeats)
    rows.append(
        {
            **row,
            "batch": batch,
            "compile_s": compile_s,
            "run_s": run_s,
            "run_s_per_market": run_s / batch,
            **summary(eq),
        }
    )
    for key in ("cvxpy_s", "cvxpy_over_jax", "cvxpy_max_rel_price_diff"):
        rows[-1].pop(key, None)
    return rows


def run_quasilinear(m, g, batch, repeats, closed_form):
    solve = functools.partial(
        equilibrium.quasilinear,
        separable_value,
        tol=TOL,
        max_iters=500,
        demand_fn=separable_demand if closed_form else None,
    )
    params, supply = quasilinear_instances(jax.random.key(m + g), batch, m, g)
    name = "closed_form" if closed_form else "inner_solve"
    rows = []
    compile_s, run_s, eq = timed(
        jax.jit(solve),
        jax.tree.map(lambda a: a[0], params),
        supply[0],
        repeats=repeats,
    )
    base = {
        "market": "quasilinear",
        "kind": "separable_quadratic",
        "method": name,
        "M": m,
        "G": g,
    }
    rows.append(
        {**base, "batch": 1, "compile_s": compile_s, "run_s": run_s, **summary(eq)}
    )
    compile_s, run_s, eq = timed(
        jax.jit(jax.vmap(solve)), params, supply, repeats=repeats
    )
    rows.append(
        {
            **base,
            "batch": batch,
            "compile_s": compile_s,
            "run_s": run_s,
            "run_s_per_market": run_s / batch,
            **summary(eq),
        }
    )
    return rows


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    labels = sorted({f"{r['market']}/{r['kind']}/{r['method']}" for r in rows})
    sizes = sorted({(r["M"], r["G"]) for r in rows})
    for ax, single in zip(axes, (True, False), strict=True):
        for label in labels:
            pts = [
                (f"{r['M']}x{r['G']}", r["run_s"] if single else r["run_s_per_market"])
                for r in rows
                if f"{r['market']}/{r['kind']}/{r['method']}" == label
                and (r["batch"] == 1) == single
            ]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=label)
        ax.set_yscale("log")
        ax.set_xlabel("M x G")
        ax.set_ylabel("seconds" if single else "seconds per market (batched)")
        ax.set_title("one market" if single else "vmapped batch")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(
        f"marketjax.equilibrium, relative excess demand {TOL:g}, "
        f"{jax.devices()[0].platform}; sizes {sizes}"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, batch 64")
    parser.add_argument("--out", default="benchmarks/out/equilibrium.png")
    args = parser.parse_args()
    sizes = SIZES[:2] if args.quick else SIZES
    repeats = 1 if args.quick else 3
    try:
        import cvxpy  # noqa: F401

        use_cvxpy = True
    except ImportError:
        use_cvxpy = False
    rows = []
    for m, g in sizes:
        batch = 64 if args.quick else (BATCH if m < 1000 else BATCH_LARGE)
        for kind, method, rho in FISHER_CASES:
            n = min(batch, LINEAR_BATCH_CAP[m]) if kind == "linear" else batch
            for row in run_fisher(kind, method, rho, m, g, n, repeats, use_cvxpy):
                print(json.dumps(row), flush=True)
                rows.append(row)
        for closed_form in (True, False):
            for row in run_quasilinear(m, g, batch, repeats, closed_form):
                print(json.dumps(row), flush=True)
                rows.append(row)
    plot(rows, pathlib.Path(args.out))


if __name__ == "__main__":
    main()
