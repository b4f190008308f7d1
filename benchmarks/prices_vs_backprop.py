"""Benchmark of Eq. (1): equilibrium prices of an MLP's production economy vs jax.grad.

Random MLPs of depth (dense layers) {2, 4, 8} x width {8, 64, 256}, activations tanh,
softplus and relu, mse loss against random targets, a batch of 32 samples (one
production economy each). For each case: the worst relative error and cosine of the
market prices against -dloss/dh (jax.grad) over the layers, the tâtonnement updates
until convergence (step 1; plus step 0.5 on a few cases), and the run time of the
market mechanism vs jax.grad (both jitted, compile excluded, best of repeats) as a
ratio.

Prints one JSON object per line per case and writes
benchmarks/out/prices_vs_backprop.png.

    python benchmarks/prices_vs_backprop.py [--quick]
"""

import argparse
import functools
import json
import pathlib
import time

import jax
import jax.numpy as jnp

from marketjax.embeddings import economy, mlp, prices

BATCH = 32
IN, OUT = 16, 4
TOL = 1e-6


@functools.partial(jax.jit, static_argnames=("activation",))
def market_prices(layers, x, target, step_size, max_iters, *, activation):
    """The market side alone: one economy per sample, equilibrium by tâtonnement."""

    def one(xi, ti):
        eco = prices.mlp_economy(layers, xi, ti, activation, "mse")
        return economy.equilibrium(
            eco, step_size=step_size, max_iters=max_iters, tol=TOL
        )

    eq = jax.vmap(one)(x, target)
    return eq.prices[1:], eq.converged, eq.iterations


@functools.partial(jax.jit, static_argnames=("activation",))
def grad_prices(layers, x, target, *, activation):
    """The reference: -dloss/dh_l by jax.grad."""
    return prices.backprop_gradients(layers, x, target, activation, "mse")


def best_time(fn, repeats):
    jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best


def case(depth, width, activation, step_size, repeats):
    sizes = (IN, *([width] * (depth - 1)), OUT)
    k_net, k_x, k_y = jax.random.split(jax.random.key(depth * 1000 + width), 3)
    layers = mlp.init(k_net, sizes)
    x = jax.random.normal(k_x, (BATCH, IN))
    y = jax.random.normal(k_y, (BATCH, OUT))
    max_iters = 10_000
    step = jnp.float32(step_size)
    budget = jnp.int32(max_iters)
    start = time.perf_counter()
    jax.block_until_ready(
        market_prices(layers, x, y, step, budget, activation=activation)
    )
    compile_s = time.perf_counter() - start
    p, converged, iterations = market_prices(
        layers, x, y, step, budget, activation=activation
    )
    g = grad_prices(layers, x, y, activation=activation)
    rel, cos = [], []
    for pl, gl in zip(p, g, strict=True):
        norm = float(jnp.linalg.norm(gl))
        rel.append(float(jnp.linalg.norm(pl - gl)) / max(norm, 1e-30))
        den = float(jnp.linalg.norm(pl)) * norm
        cos.append(min(float(jnp.sum(pl * gl)) / den, 1.0) if den > 0 else 1.0)
    t_market = best_time(
        lambda: market_prices(layers, x, y, step, budget, activation=activation),
        repeats,
    )
    t_grad = best_time(
        lambda: grad_prices(layers, x, y, activation=activation), repeats
    )
    return {
        "depth": depth,
        "width": width,
        "activation": activation,
        "step_size": step_size,
        "batch": BATCH,
        "max_rel_error": max(rel),
        "min_cosine": min(cos),
        "converged": bool(jnp.all(converged)),
        "iterations": int(jnp.max(iterations)),
        "market_s": t_market,
        "grad_s": t_grad,
        "time_ratio": t_market / t_grad,
        "market_compile_s": compile_s,
    }


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    main = [r for r in rows if r["step_size"] == 1.0]
    for activation, marker in (("tanh", "o"), ("softplus", "s"), ("relu", "^")):
        for width, color in ((8, "C0"), (64, "C1"), (256, "C2")):
            sel = [
                r for r in main if r["activation"] == activation and r["width"] == width
            ]
            if not sel:
                continue
            depths = [r["depth"] for r in sel]
            kw = {
                "marker": marker,
                "color": color,
                "label": f"{activation}, width {width}",
            }
            axes[0].plot(depths, [max(r["max_rel_error"], 1e-12) for r in sel], **kw)
            axes[1].plot(depths, [r["time_ratio"] for r in sel], **kw)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("max relative error, prices vs jax.grad")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("time ratio, market / jax.grad")
    for ax in axes:
        ax.set_xlabel("depth (dense layers)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle("Eq. (1): tâtonnement prices vs backprop gradients (step 1)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    args = parser.parse_args()
    depths, widths = ((2, 4), (8, 64)) if args.quick else ((2, 4, 8), (8, 64, 256))
    activations = ("tanh",) if args.quick else ("tanh", "softplus", "relu")
    repeats = 3 if args.quick else 10
    rows = []
    grid = [(d, w, a, 1.0) for a in activations for w in widths for d in depths]
    grid += [(4, 64, a, 0.5) for a in activations]
    for depth, width, activation, step_size in grid:
        row = case(depth, width, activation, step_size, repeats)
        print(json.dumps(row), flush=True)
        rows.append(row)
    out = pathlib.Path("benchmarks/out")
    out.mkdir(parents=True, exist_ok=True)
    plot(rows, out / "prices_vs_backprop.png")


if __name__ == "__main__":
    main()
