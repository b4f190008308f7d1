"""The information bazaar (seed 003): inspection with a forgetful contractor vs buying
blind vs inspecting without forgetting. See marketjax/markets/bazaar.py and
docs/beyond_rl.md.

    python scripts/bazaar.py [--out runs/bazaar] [--seeds 8] [--rounds 200]

Prints one JSON object per protocol and writes summary.json and bazaar.png to --out.
"""

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from marketjax.markets import bazaar as bz

NUM_BUYERS, NUM_INFORMERS, OFFERS = 64, 16, 4


def setup(seed: int):
    rng = np.random.default_rng(seed)
    quality = np.linspace(0.5, 0.95, NUM_INFORMERS)
    informers = bz.Informers(
        quality=jnp.asarray(quality, jnp.float32),
        price=jnp.asarray(rng.uniform(0.02, 0.12, NUM_INFORMERS), jnp.float32),
    )
    params = bz.BazaarParams(
        prior=jnp.float32(0.6),
        gain=jnp.float32(1.0),
        loss=jnp.float32(1.0),
        fee=jnp.float32(0.005),
        production_cost=jnp.float32(2.0),
        believed_quality=jnp.float32(quality.mean()),
    )
    return informers, params


def spearman(x, y):
    """Rank correlation; NaN when either side is constant (e.g. nobody earns)."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    rank = lambda v: np.argsort(np.argsort(v))
    return float(np.corrcoef(rank(x), rank(y))[0, 1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/bazaar")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    informers, params = setup(0)
    quality = np.asarray(informers.quality)
    state0 = bz.init(NUM_BUYERS, NUM_INFORMERS)
    keys = jax.random.split(jax.random.key(0), args.seeds)
    summary, records = {}, {}
    for protocol in bz.PROTOCOLS:
        run = jax.jit(
            jax.vmap(
                lambda k, p=protocol: bz.simulate(
                    k, state0, informers, params, protocol=p, offers=OFFERS,
                    num_rounds=args.rounds,
                )
            )
        )  # fmt: skip
        start = time.perf_counter()
        final, rec = jax.block_until_ready(run(keys))
        wall = time.perf_counter() - start
        records[protocol] = rec
        wealth = np.asarray(final.informer_wealth)  # [S, J]
        revenue = np.asarray(rec.revenue).sum(axis=1)  # [S, J], over all rounds
        last = slice(-args.rounds // 4, None)
        drift = np.abs(np.asarray(jax.vmap(bz.money)(final)) - float(bz.money(state0)))
        row = {
            "protocol": protocol,
            "seeds": args.seeds,
            "rounds": args.rounds,
            "buyer_payoff_per_round": float(np.mean(rec.payoff)),
            "buyer_payoff_last_quarter": float(np.mean(rec.payoff[:, last])),
            "buyer_net_per_round": float(np.mean(rec.payoff - rec.spend - rec.fees)),
            "decisions_correct": float(np.mean(rec.correct)),
            "purchases_per_round": float(np.mean(rec.purchases)),
            "useful_share_of_purchases": float(
                np.sum(rec.useful_purchases) / max(np.sum(rec.purchases), 1e-9)
            ),
            "informers_alive_at_end": float(np.mean(rec.alive[:, -1])),
            "spearman_informer_wealth_vs_quality": float(
                np.nanmean([spearman(w, quality) for w in wealth])
            ),
            "spearman_informer_revenue_vs_quality": float(
                np.mean([spearman(r, quality) for r in revenue])  # NaN: no revenue
            ),
            "informer_wealth_by_quality_quartile": [
                round(float(w.mean()), 2) for w in np.split(wealth, 4, axis=1)
            ],
            "informer_revenue_by_quality_quartile": [
                round(float(r.mean()), 2) for r in np.split(revenue, 4, axis=1)
            ],
            "money_drift_max": float(drift.max()),
            "wall_s_incl_compile": round(wall, 3),
        }
        summary[protocol] = row
        print(json.dumps(row), flush=True)
    p = float(params.prior)
    summary["reference"] = {
        "payoff_without_information": p * 1.0 - (1 - p) * 1.0,
        "payoff_with_perfect_information": p * 1.0,
    }
    print(json.dumps(summary["reference"]))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot(records, quality, summary, out / "bazaar.png")


def plot(records, quality, summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(16, 4.5))
    for protocol, rec in records.items():
        payoff = np.asarray(rec.payoff).mean(0)
        smooth = np.convolve(payoff, np.ones(10) / 10, mode="valid")
        ax[0].plot(smooth, label=protocol)
        ax[1].plot(np.asarray(rec.alive).mean(0), label=protocol)
        ax[2].plot(quality, np.asarray(rec.informer_wealth)[:, -1].mean(0), "o-",
                   label=protocol)  # fmt: skip
    ref = summary["reference"]
    ax[0].axhline(ref["payoff_without_information"], color="grey", ls="--",
                  label="no information")  # fmt: skip
    ax[0].axhline(ref["payoff_with_perfect_information"], color="k", ls=":",
                  label="perfect information")  # fmt: skip
    ax[0].set_title("buyers' mean decision payoff per round (10-round mean)")
    ax[0].set_xlabel("round")
    ax[1].set_title("informers still selling")
    ax[1].set_xlabel("round")
    ax[2].axhline(0, color="grey", lw=0.5)
    ax[2].set_title("informers' final wealth vs the quality they sell")
    ax[2].set_xlabel("signal accuracy a_j")
    for a in ax:
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
