"""Price discovery with free quantities vs backprop, and the monopsony markdown.

For a random MLP [4, 8, 8, 3] (mse, 32 samples = 32 economies, seed 0) and each
activation, ``embeddings.discovery.discover`` lets firms follow marginal profit and
prices follow excess demand (extragradient, step 0.3, at most 5000 steps, tol 1e-5);
the discovered prices are compared with ``-dloss/dh`` (``jax.grad``). Then
``discovery.monopsony()``. Prints one JSON object per case and writes
benchmarks/out/price_discovery.png.

    python benchmarks/price_discovery.py [--quick]
"""

import argparse
import itertools
import json
import pathlib
import time

import numpy as np

from marketjax.embeddings import discovery

ACTIVATIONS = ("identity", "relu", "softplus", "tanh")


def mlp(seed, sizes):
    rng = np.random.default_rng(seed)
    return [
        (
            (rng.standard_normal((i, o)) / np.sqrt(i)).astype(np.float32),
            (0.1 * rng.standard_normal(o)).astype(np.float32),
        )
        for i, o in itertools.pairwise(sizes)
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 samples")
    parser.add_argument("--out", default="benchmarks/out/price_discovery.png")
    args = parser.parse_args()
    batch = 8 if args.quick else 32
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, 4)).astype(np.float32)
    y = rng.standard_normal((batch, 3)).astype(np.float32)
    params = mlp(0, [4, 8, 8, 3])
    rows = []
    for activation in ACTIVATIONS:
        t0 = time.perf_counter()
        r = discovery.discover(params, x, y, activation=activation)
        r.residual.block_until_ready()
        row = {
            "case": activation,
            "samples": batch,
            "converged_fraction": float(np.mean(r.sample_converged)),
            "steps_max": int(r.iterations),
            "rel_error": [float(f"{v:.3g}") for v in np.asarray(r.rel_error)],
            "rel_error_converged": [
                float(f"{v:.3g}") for v in np.asarray(r.rel_error_converged)
            ],
            "cosine": [round(float(v), 4) for v in np.asarray(r.cosine)],
            "quantity_error": [float(f"{v:.3g}") for v in np.asarray(r.quantity_error)],
            "wall_s_with_compile": round(time.perf_counter() - t0, 2),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    m = discovery.monopsony()
    print(
        json.dumps(
            {
                "case": "monopsony",
                "competitive_price": float(m.competitive_price),
                "competitive_quantity": float(m.competitive_quantity),
                "monopsony_price": float(m.monopsony_price),
                "monopsony_quantity": float(m.monopsony_quantity),
                "marginal_value_at_monopsony": float(m.marginal_value),
                "markdown": float(m.markdown),
                "converged": bool(m.converged),
            }
        ),
        flush=True,
    )
    plot(rows, pathlib.Path(args.out))


def plot(rows, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["case"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    axes[0].bar(names, [r["converged_fraction"] for r in rows])
    axes[0].set_ylabel("fraction of economies at rest")
    for layer in range(3):
        axes[1].plot(
            names,
            [max(r["rel_error"][layer], 1e-7) for r in rows],
            "o-",
            label=f"layer {layer} (all)",
        )
    axes[1].set_yscale("log")
    axes[1].set_ylabel("||p - (-dL/dh)|| / ||dL/dh||")
    axes[1].legend(fontsize=7)
    fig.suptitle("price discovery with free quantities vs backprop")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    main()
