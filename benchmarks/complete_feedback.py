"""Complete feedback: a reserve price learned by jax.grad through the market.

The seller of a batch of thin quasilinear markets (``mechanisms/reserve.py``: 2 buyers,
3 goods, supply U(4, 8), 256 markets) tunes its reserve price ``r`` by gradient ascent
on the mean equilibrium revenue, the gradient taken *through*
``equilibrium.quasilinear``
by implicit differentiation; a grid search over ``r`` scores the same objective. Both
must pick the same ``r`` (within the grid spacing). Prints one JSON object per method
and writes benchmarks/out/complete_feedback.png.

    python benchmarks/complete_feedback.py [--quick]
"""

import argparse
import json
import pathlib
import time

import jax
import numpy as np

from marketjax.mechanisms import reserve


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 markets, coarse grid")
    parser.add_argument("--out", default="benchmarks/out/complete_feedback.png")
    args = parser.parse_args()
    num_markets = 32 if args.quick else 256
    spacing = 0.1 if args.quick else 0.02
    markets = reserve.random_markets(jax.random.key(0), num_markets, 2, 3)
    value = jax.jit(lambda r: reserve.revenue(r, markets))
    value_and_grad = jax.jit(lambda r: reserve.revenue_and_grad(r, markets))

    grid = np.arange(0.0, 8.0 + spacing / 2, spacing, dtype=np.float32)
    value(grid[0]).block_until_ready()
    t0 = time.perf_counter()
    curve = np.array([float(value(r)) for r in grid])
    grid_s = time.perf_counter() - t0
    best = int(np.argmax(curve))
    print(
        json.dumps(
            {
                "method": "grid",
                "markets": num_markets,
                "reserve": float(grid[best]),
                "revenue": float(curve[best]),
                "evaluations": len(grid),
                "spacing": spacing,
                "time_s": round(grid_s, 3),
            }
        ),
        flush=True,
    )

    r, lr, path, flagged = np.float32(1.0), 0.5, [], 0
    value_and_grad(r)[0].block_until_ready()
    t0 = time.perf_counter()
    steps = 0
    for steps in range(1, 201):  # noqa: B007 (reported after the loop)
        v, d, k = value_and_grad(r)
        flagged += int(k)
        path.append((float(r), float(v)))
        if abs(float(d)) < 1e-4:
            break
        r = np.float32(r + lr * float(d))
    grad_s = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "method": "jax.grad",
                "markets": num_markets,
                "reserve": round(float(r), 4),
                "revenue": float(v),
                "gradient": float(d),
                "market_gradients_flagged_at_kinks": flagged,
                "steps": steps,
                "time_s": round(grad_s, 3),
                "agrees_with_grid": bool(abs(float(r) - grid[best]) <= spacing),
            }
        ),
        flush=True,
    )
    plot(grid, curve, path, pathlib.Path(args.out))


def plot(grid, curve, path, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(grid, curve, color="gray", label="grid search")
    rs, vs = zip(*path, strict=True)
    ax.plot(rs, vs, "o-", ms=3, color="C0", label="jax.grad ascent")
    ax.axvline(grid[int(np.argmax(curve))], color="gray", ls=":")
    ax.set_xlabel("reserve price r")
    ax.set_ylabel("mean equilibrium revenue")
    ax.set_title("a market rule tuned through the market")
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    main()
