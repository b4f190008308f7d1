"""Benchmark and reproduction of Gode & Sunder (1993) with marketjax.double_auction.

For five single-unit markets defined here (not Gode & Sunder's own schedules, whose
multi-unit traders our single-unit protocol does not model), runs 10,000 ZI-U and
10,000 ZI-C sessions of 2,000 quotes each and reports mean efficiency, trades and
price dispersion; then measures throughput (sessions per second, compile time apart)
against a plain numpy/Python loop of the same protocol.

Prints one JSON object per line per case and writes benchmarks/out/double_auction.png
(supply and demand, price paths, efficiency by market).

    python benchmarks/double_auction.py [--quick]
"""

import argparse
import json
import pathlib
import time

import jax
import numpy as np

from marketjax import double_auction as da

MARKETS = {
    "symmetric": (np.linspace(60, 190, 12), np.linspace(20, 150, 12)),
    "flat_supply": (np.linspace(40, 190, 12), np.full(12, 80.0)),
    "flat_demand": (np.full(12, 130.0), np.linspace(20, 170, 12)),
    "thin_margin": (
        np.array([190, 180, 170, 160, 95, 90, 85, 80, 75, 70, 65, 60.0]),
        np.array([10, 20, 30, 40, 105, 110, 115, 120, 125, 130, 135, 140.0]),
    ),
    "asymmetric": (np.linspace(100, 200, 6), np.linspace(5, 140, 18)),
}
STEPS_CURVE = (12, 25, 50, 100, 200, 400, 2000)
SESSIONS = 10_000
MAX_STEPS = 2_000
LO, HI = 1.0, 200.0


def numpy_can_trade(waiting, values, costs, trader):
    nb = len(values)
    buyers, sellers = waiting[:nb], waiting[nb:]
    if not (buyers.any() and sellers.any()):
        return False
    return trader == "zi_u" or values[buyers].max() >= costs[sellers].min()


def numpy_session(rng, values, costs, trader, max_steps=MAX_STEPS):
    """The same protocol as a plain Python loop (the baseline); returns surplus.

    Like the JAX version it stops once no further trade can happen.
    """
    nb, ns = len(values), len(costs)
    lower = np.concatenate(
        [np.full(nb, LO), costs if trader == "zi_c" else np.full(ns, LO)]
    )
    upper = np.concatenate(
        [values if trader == "zi_c" else np.full(nb, HI), np.full(ns, HI)]
    )
    waiting = np.ones(nb + ns, bool)
    bid = ask = None
    surplus = 0.0
    for _ in range(max_steps):
        u = rng.random(2)
        idx = np.flatnonzero(waiting)
        w = idx[min(int(u[0] * idx.size), idx.size - 1)]
        x = lower[w] + u[1] * (upper[w] - lower[w])
        if w < nb:
            if ask is not None and x >= ask[0]:
                surplus += values[w] - costs[ask[1] - nb]
                waiting[[w, ask[1]]] = False
                bid = ask = None
                if not numpy_can_trade(waiting, values, costs, trader):
                    break
            elif bid is None or x > bid[0]:
                bid = (x, w)
        else:
            if bid is not None and x <= bid[0]:
                surplus += values[bid[1]] - costs[w - nb]
                waiting[[w, bid[1]]] = False
                bid = ask = None
                if not numpy_can_trade(waiting, values, costs, trader):
                    break
            elif ask is None or x < ask[0]:
                ask = (x, w)
    return surplus


def timed_jax(key, values, costs, trader, sessions):
    run = lambda k: da.simulate(
        k, values, costs, trader=trader, num_sessions=sessions, max_steps=MAX_STEPS
    )
    start = time.perf_counter()
    jax.block_until_ready(run(key))
    first = time.perf_counter() - start
    start = time.perf_counter()
    out = jax.block_until_ready(run(jax.random.fold_in(key, 1)))
    return first, time.perf_counter() - start, out


def plot(results, by_length, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(MARKETS)
    fig, axes = plt.subplots(3, len(names) + 1, figsize=(4 * len(names) + 4, 10))
    for j, name in enumerate(names):
        values, costs = MARKETS[name]
        q, low, high, _ = da.competitive_equilibrium(values, costs)
        ax = axes[0, j]
        v = np.sort(values)[::-1]
        c = np.sort(costs)
        ax.step(np.arange(len(v) + 1), np.r_[v[0], v], where="pre", label="demand")
        ax.step(np.arange(len(c) + 1), np.r_[c[0], c], where="pre", label="supply")
        ax.axhspan(low, high, color="grey", alpha=0.3, label=f"CE price, Q={q}")
        ax.set_title(name)
        ax.set_xlabel("units")
        ax.set_ylabel("value / cost")
        ax.legend(fontsize=7)
        for i, trader in enumerate(("zi_c", "zi_u")):
            ax = axes[1 + i, j]
            r = results[(name, trader)]
            prices = np.asarray(r.prices)
            for s in range(5):
                ax.plot(prices[s], marker=".", alpha=0.6)
            used = ~np.all(np.isnan(prices), axis=0)
            ax.plot(np.nanmean(prices[:, used], axis=0), "k-", lw=2, label="mean")
            ax.axhspan(low, high, color="grey", alpha=0.3)
            ax.set_ylim(LO, HI)
            eff = float(np.mean(np.asarray(r.efficiency)))
            ax.set_title(f"{trader.upper()}: efficiency {100 * eff:.1f}%")
            ax.set_xlabel("trade number")
            ax.set_ylabel("price")
    ax = axes[0, -1]
    for trader in ("zi_c", "zi_u"):
        eff = [100 * by_length[(trader, n)] for n in STEPS_CURVE]
        ax.semilogx(STEPS_CURVE, eff, marker="o", label=trader.upper())
    ax.set_xlabel("quotes per session (max_steps)")
    ax.set_ylabel("mean efficiency, %")
    ax.set_title("symmetric market: efficiency vs session length")
    ax.legend()
    ax = axes[1, -1]
    x = np.arange(len(names))
    for i, trader in enumerate(("zi_c", "zi_u")):
        eff = [
            100 * float(np.mean(np.asarray(results[(n, trader)].efficiency)))
            for n in names
        ]
        ax.bar(x + 0.4 * i, eff, width=0.4, label=trader.upper())
    ax.set_xticks(x + 0.2, names, rotation=30, fontsize=7)
    ax.set_ylabel("mean efficiency, %")
    ax.set_title(f"efficiency at {MAX_STEPS} quotes")
    ax.legend()
    axes[2, -1].axis("off")
    fig.suptitle(
        f"Gode-Sunder double auction, {SESSIONS} sessions x {MAX_STEPS} quotes each "
        "(5 price paths and the mean per market)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 sessions")
    args = parser.parse_args(argv)
    sessions = 1_000 if args.quick else SESSIONS
    key = jax.random.key(0)
    results = {}
    for name, (values, costs) in MARKETS.items():
        for trader in ("zi_u", "zi_c"):
            compile_s, run_s, r = timed_jax(key, values, costs, trader, sessions)
            results[(name, trader)] = r
            eff = np.asarray(r.efficiency)
            row = {
                "case": "efficiency",
                "market": name,
                "trader": trader,
                "sessions": sessions,
                "max_steps": MAX_STEPS,
                "efficiency_mean": round(float(eff.mean()), 4),
                "efficiency_sd": round(float(eff.std()), 4),
                "trades_mean": round(float(np.mean(np.asarray(r.num_trades))), 3),
                "ce_quantity": da.competitive_equilibrium(values, costs)[0],
                "price_sd": round(float(np.nanstd(np.asarray(r.prices))), 2),
                "compile_and_first_run_s": round(compile_s, 3),
                "run_s": round(run_s, 3),
                "sessions_per_s": round(sessions / run_s, 1),
            }
            print(json.dumps(row), flush=True)
    values, costs = MARKETS["symmetric"]
    by_length = {}
    for trader in ("zi_u", "zi_c"):
        for steps in STEPS_CURVE:
            r = da.simulate(
                key, values, costs, trader=trader, num_sessions=1_000, max_steps=steps
            )
            eff = float(np.mean(np.asarray(r.efficiency)))
            by_length[(trader, steps)] = eff
            row = {"case": "efficiency_vs_length", "market": "symmetric"}
            row |= {"trader": trader, "max_steps": steps, "sessions": 1_000}
            print(json.dumps(row | {"efficiency_mean": round(eff, 4)}), flush=True)
    for trader in ("zi_u", "zi_c"):
        rng = np.random.default_rng(0)
        n = 10 if args.quick else 30
        start = time.perf_counter()
        surplus = [numpy_session(rng, values, costs, trader) for _ in range(n)]
        np_s = (time.perf_counter() - start) / n
        jax_rate = sessions / (timed_jax(key, values, costs, trader, sessions)[1])
        ce = da.competitive_equilibrium(values, costs)[3]
        row = {
            "case": "throughput",
            "market": "symmetric",
            "trader": trader,
            "max_steps": MAX_STEPS,
            "jax_sessions_per_s": round(jax_rate, 1),
            "numpy_sessions_per_s": round(1.0 / np_s, 2),
            "speedup": round(jax_rate * np_s, 1),
            "numpy_efficiency_mean": round(float(np.mean(surplus)) / ce, 4),
            "numpy_sessions": n,
            "backend": jax.default_backend(),
        }
        print(json.dumps(row), flush=True)
    out = pathlib.Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    plot(results, by_length, out / "double_auction.png")


if __name__ == "__main__":
    main()
