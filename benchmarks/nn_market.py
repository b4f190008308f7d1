"""Benchmark of the Theorem 3.1 embedding (marketjax.nn_market) and CAPITALISM training.

1. Forward pass: the deep market (bids, auction, owner's program at every step) vs the
   plain MLP it embeds, both jitted, at batch 1 and 1024; target time ratio <= 1.5.
2. Training on two spirals (generated here): CAPITALISM (entrants perturb the owners,
   appraisal bids, auctions, loss-based reward; no gradients) vs backprop (Adam) on the
   same MLP, the same minibatches and the same number of steps; test accuracy vs steps
   and vs wall time (compile excluded: the first call, reported as first_call_s, is a
   warm-up), 3 seeds.

Prints one JSON object per line per case and writes benchmarks/out/nn_market.png.

    python benchmarks/nn_market.py [--quick]
"""

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from marketjax.embeddings import capitalism, mlp, nn_market
from marketjax.embeddings.prices import per_sample_loss

FORWARD_NETS = (("relu", (2, 32, 32, 2)), ("relu", (16, 256, 256, 256, 10)))
SPIRAL_SIZES = (2, 32, 32, 2)


def paired_times(f, args_f, g, args_g, calls=50, repeats=15):
    """Best over ``repeats`` of the mean time of ``calls`` calls of ``f`` and of
    ``g``, measured alternately so that both see the same machine load."""
    jax.block_until_ready(f(*args_f))
    jax.block_until_ready(g(*args_g))
    best_f = best_g = float("inf")
    for _ in range(repeats):
        for fn, args, which in ((f, args_f, 0), (g, args_g, 1)):
            start = time.perf_counter()
            for _ in range(calls):
                out = fn(*args)
            jax.block_until_ready(out)
            t = (time.perf_counter() - start) / calls
            if which == 0:
                best_f = min(best_f, t)
            else:
                best_g = min(best_g, t)
    return best_f, best_g


def forward_cases(quick):
    rows = []
    for activation, sizes in FORWARD_NETS:
        layers = mlp.init(jax.random.key(0), sizes)
        market = nn_market.from_mlp(layers, activation=activation)
        f_market = jax.jit(nn_market.forward)
        f_mlp = jax.jit(lambda layers, x, a=activation: mlp.apply(layers, x, a))
        for batch in (1, 1024):
            x = jax.random.normal(jax.random.key(1), (batch, sizes[0]))
            err = float(jnp.max(jnp.abs(f_market(market, x) - f_mlp(layers, x))))
            calls = (20 if quick else 200) if batch == 1 else (5 if quick else 20)
            t_market, t_mlp = paired_times(
                f_market, (market, x), f_mlp, (layers, x), calls=calls
            )
            row = {
                "case": "forward",
                "sizes": list(sizes),
                "activation": activation,
                "batch": batch,
                "market_us": 1e6 * t_market,
                "mlp_us": 1e6 * t_mlp,
                "time_ratio": t_market / t_mlp,
                "max_abs_diff": err,
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def spirals(key, n):
    """Two interleaved spirals in [-1, 1]^2 with labels 0/1 (alternating)."""
    k_t, k_noise = jax.random.split(key)
    t = jnp.sqrt(jax.random.uniform(k_t, (n,))) * 3 * jnp.pi + 0.5
    labels = jnp.arange(n) % 2
    sign = jnp.where(labels == 0, 1.0, -1.0)
    pts = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], -1)
    pts = pts * jnp.broadcast_to(sign[:, None], pts.shape) / (3 * jnp.pi)
    return pts + 0.02 * jax.random.normal(k_noise, pts.shape), labels


def accuracy(layers, x, labels):
    return float(jnp.mean(jnp.argmax(mlp.apply(layers, x, "tanh"), -1) == labels))


def train_cases(quick):
    rounds, chunks = (100, 3) if quick else (250, 8)
    batch = 128
    x, labels = spirals(jax.random.key(0), 1000)
    x_test, labels_test = spirals(jax.random.key(99), 1000)
    y = jax.nn.one_hot(labels, 2)

    def adam_chunk(key, state):
        opt = optax.adam(3e-3)

        def body(carry, k):
            layers, opt_state = carry
            idx = jax.random.randint(k, (batch,), 0, x.shape[0])

            def loss(layers):
                out = mlp.apply(layers, x[idx], "tanh")
                return jnp.mean(per_sample_loss("xent", out, y[idx]))

            value, grads = jax.value_and_grad(loss)(layers)
            updates, opt_state = opt.update(grads, opt_state, layers)
            return (optax.apply_updates(layers, updates), opt_state), value

        return jax.lax.scan(body, state, jax.random.split(key, rounds))

    adam_chunk = jax.jit(adam_chunk)
    cap_train = jax.jit(
        lambda k, s, p: capitalism.train(k, s, x, y, p, rounds=rounds, batch=batch)
    )
    rows = []
    for seed in range(3):
        k_init, k_cap, k_adam = jax.random.split(jax.random.key(seed + 1), 3)
        layers = mlp.init(k_init, SPIRAL_SIZES)
        loss0 = float(
            jnp.mean(per_sample_loss("xent", mlp.apply(layers, x, "tanh"), y))
        )
        params = capitalism.default_params(2 * loss0, sigma=0.1)
        methods = {
            "capitalism": (
                cap_train,
                capitalism.init(
                    layers, activation="tanh", loss="xent", pool=8, entrants=4
                ),
                capitalism.network,
                k_cap,
                (params,),
            ),
            "backprop_adam": (
                adam_chunk,
                (layers, optax.adam(3e-3).init(layers)),
                lambda s: s[0],
                k_adam,
                (),
            ),
        }
        for method, (chunk, state, network, key, extra) in methods.items():
            start = time.perf_counter()
            jax.block_until_ready(chunk(key, state, *extra))  # compile + one chunk
            first_call_s = time.perf_counter() - start
            steps, accs, walls, wall = (
                [0],
                [accuracy(network(state), x_test, labels_test)],
                [0.0],
                0.0,
            )
            for k in jax.random.split(key, chunks):
                start = time.perf_counter()
                state, _ = chunk(k, state, *extra)
                jax.block_until_ready(state)
                wall += time.perf_counter() - start
                steps.append(steps[-1] + rounds)
                accs.append(accuracy(network(state), x_test, labels_test))
                walls.append(wall)
            row = {
                "case": "spirals",
                "method": method,
                "seed": seed,
                "sizes": list(SPIRAL_SIZES),
                "batch": batch,
                "steps": steps,
                "test_accuracy": accs,
                "wall_s": walls,
                "first_call_s": first_call_s,
                "final_test_accuracy": accs[-1],
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    for method in ("capitalism", "backprop_adam"):
        finals = [r["final_test_accuracy"] for r in rows if r["method"] == method]
        walls = [r["wall_s"][-1] for r in rows if r["method"] == method]
        print(
            json.dumps(
                {
                    "case": "spirals_summary",
                    "method": method,
                    "steps": rounds * chunks,
                    "median_final_test_accuracy": float(np.median(finals)),
                    "final_test_accuracy_per_seed": finals,
                    "median_wall_s": float(np.median(walls)),
                }
            ),
            flush=True,
        )
    return rows


def plot(forward, train, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    labels = [f"{r['sizes']}\nB={r['batch']}" for r in forward]
    axes[0].bar(range(len(forward)), [r["time_ratio"] for r in forward])
    axes[0].axhline(1.5, color="r", ls="--", label="target 1.5x")
    axes[0].set_xticks(range(len(forward)), labels, fontsize=7)
    axes[0].set_ylabel("market / MLP forward time")
    axes[0].set_title("Theorem 3.1 forward pass")
    axes[0].legend()
    colors = {"capitalism": "C0", "backprop_adam": "C1"}
    for r in train:
        kw = {
            "color": colors[r["method"]],
            "alpha": 0.8,
            "label": r["method"] if r["seed"] == 0 else None,
        }
        axes[1].plot(r["steps"], r["test_accuracy"], **kw)
        axes[2].plot(r["wall_s"], r["test_accuracy"], **kw)
    axes[1].set_xlabel("steps (minibatches of 128)")
    axes[2].set_xlabel("wall time, s (compile excluded)")
    for ax in axes[1:]:
        ax.set_ylabel("test accuracy (two spirals)")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[1].set_title("CAPITALISM vs backprop, 3 seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument(
        "--part",
        choices=("all", "forward", "train"),
        default="all",
        help="run only the forward-pass timing or only the training comparison",
    )
    args = parser.parse_args()
    forward = forward_cases(args.quick) if args.part != "train" else []
    train = train_cases(args.quick) if args.part != "forward" else []
    out = pathlib.Path("benchmarks/out")
    out.mkdir(parents=True, exist_ok=True)
    plot(forward, train, out / "nn_market.png")


if __name__ == "__main__":
    main()
