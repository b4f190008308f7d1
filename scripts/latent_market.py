"""Latent-variable prediction market on a planted latent-class model (seed 001),
against EM on the same model and data. See marketjax/markets/latent.py.

    python scripts/latent_market.py [--out runs/latent_market] [--rounds 300]

Prints a JSON summary and writes summary.json and latent_market.png to --out.
"""

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from marketjax.markets import latent as lt

D, K, BATCH = 12, 2, 64


def planted() -> lt.LatentModel:
    """P(Y=1) = 0.6; features 0-2 weakly (0.3 / 0.7) and 3-5 strongly (0.2 / 0.8)
    tied to Y; features 6-11 independent of it (0.5 / 0.5)."""
    p0 = np.array([0.3] * 3 + [0.2] * 3 + [0.5] * 6)
    p = np.stack([p0, 1 - p0], axis=1)
    return lt.LatentModel(
        jnp.log(jnp.array([0.4, 0.6])), jnp.asarray(np.log(p / (1 - p)), jnp.float32)
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/latent_market")
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    truth = planted()
    _, x = lt.sample(jax.random.key(0), truth, args.rounds * BATCH)
    y_test, x_test = lt.sample(jax.random.key(1), truth, 4000)
    params = lt.LatentParams(*(jnp.float32(v) for v in (1.0, 8.0, 20.0, 0.3)))
    state0 = lt.init(jax.random.key(2), D, K)
    start = time.perf_counter()
    state, payoff = jax.block_until_ready(
        jax.jit(lt.run)(jax.random.key(3), state0, x.reshape(-1, BATCH, D), params)
    )
    market_s = time.perf_counter() - start
    start = time.perf_counter()
    em_model = jax.block_until_ready(jax.jit(lt.em)(state0.model, x))
    em_s = time.perf_counter() - start
    models = {
        "truth": truth,
        "market": state.model,
        "em": em_model,
        "init": state0.model,
    }
    summary = {
        name: {
            "test_log_lik_per_sample": float(jnp.mean(lt.log_marginal(m, x_test))),
            "latent_accuracy": lt.latent_accuracy(m, x_test, y_test),
        }
        for name, m in models.items()
    }
    wealth = np.asarray(state.wealth)
    summary["wealth"] = {
        "prior_trader": float(wealth[0]),
        "weak_feature_traders_mean": float(wealth[1:4].mean()),
        "strong_feature_traders_mean": float(wealth[4:7].mean()),
        "independent_feature_traders_mean": float(wealth[7:13].mean()),
        "noise_trader": float(wealth[13]),
        "maker": float(state.maker),
        "money_total": float(wealth.sum() + state.maker),
    }
    summary["run"] = {
        "rounds": args.rounds, "batch": BATCH, "features": D, "classes": K,
        "market_s_incl_compile": round(market_s, 3),
        "em_s_incl_compile": round(em_s, 3),
    }  # fmt: skip
    print(json.dumps(summary))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot(np.asarray(payoff), out / "latent_market.png")


def plot(payoff, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wealth = 1.0 + np.cumsum(payoff, axis=0)
    groups = [
        ("P(Y) trader", [0], "k"),
        ("weakly informative X_d", [1, 2, 3], "tab:blue"),
        ("strongly informative X_d", [4, 5, 6], "tab:green"),
        ("X_d independent of Y", list(range(7, 13)), "tab:grey"),
        ("noise trader", [13], "tab:red"),
    ]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, idx, color in groups:
        for j, i in enumerate(idx):
            ax.plot(wealth[:, i], color=color, label=label if j == 0 else None)
    ax.set_xlabel("round (64 observations resolve per round)")
    ax.set_ylabel("wealth")
    ax.set_title("latent-variable market: who is paid for the joint's log score")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
