"""Host runner: a prediction market learning a scikit-learn dataset (seed 004).

``run_prediction_market(config, out_dir)`` loads digits or breast-cancer (shipped
inside scikit-learn, no download), splits it into a *fit* split (where the weak
forecasters are fitted), a *market* split (where markets run and wealth learns whom
to trust, prequentially) and a *test* split (markets with frozen wealth), and writes
``summary.json``, ``metrics.jsonl`` (one line per batch of markets) and PNGs to
``out_dir``. Baselines on the same test split: logistic regression on all features
(fitted on fit + market), the traders' plain average, the best single trader (chosen
on the market split) and the wealth-weighted average of beliefs.
"""

from __future__ import annotations

import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from marketjax.agents import forecasters as fc
from marketjax.markets import prediction as pm
from marketjax.markets.ledger import books_imbalance

DEFAULTS = {
    "name": "prediction_digits",
    "dataset": "digits",  # or "breast_cancer"
    "seed": 0,
    "num_traders": 40,  # logistic forecasters on feature subsets
    "features_per_trader": [4, 8, 16],  # cycled over the traders
    "num_noise": 8,  # random confident forecasters
    "initial_wealth": 1.0,
    "liquidity": 0.05,  # LMSR b per example
    "stake": 0.5,  # fraction of wealth staked across one batch of markets
    "batch": 16,  # markets in parallel sharing the traders' wealth
    "rounds": 4,  # passes over the traders per market
    "epochs": 1,  # passes over the market split
    "split": [0.4, 0.3, 0.3],  # fit / market / test
}


def load(name: str):
    from sklearn import datasets

    loaders = {
        "digits": datasets.load_digits,
        "breast_cancer": datasets.load_breast_cancer,
    }
    if name not in loaders:
        raise ValueError(f"dataset must be one of {sorted(loaders)}, got {name!r}")
    data = loaders[name]()
    return data.data.astype(np.float32), data.target.astype(np.int32)


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0))))


def accuracy(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(p, axis=-1) == y))


def concentration(wealth: np.ndarray) -> dict:
    """Gini, top-10% share and effective number 1 / Σ s_i² of a wealth vector."""
    w = np.sort(np.maximum(wealth, 0.0))
    n, total = w.size, w.sum()
    share = w / total
    gini = float(np.sum((2 * np.arange(1, n + 1) - n - 1) * w) / (n * total))
    top = max(1, n // 10)
    return {
        "wealth_gini": gini,
        "wealth_top_share": float(share[-top:].sum()),
        "effective_traders": float(1.0 / np.sum(share**2)),
    }


def run_prediction_market(config: dict, out_dir) -> dict:
    """Runs the experiment and writes the run directory; returns the summary."""
    cfg = {**DEFAULTS, **config}
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    x, y = load(cfg["dataset"])
    k_classes = int(y.max()) + 1
    rng = np.random.default_rng(cfg["seed"])
    perm = rng.permutation(len(y))
    n_fit = int(cfg["split"][0] * len(y))
    n_mkt = int(cfg["split"][1] * len(y)) // cfg["batch"] * cfg["batch"]
    fit_i, mkt_i, test_i = np.split(perm, [n_fit, n_fit + n_mkt])
    mean, sd = x[perm[: n_fit + n_mkt]].mean(0), x[perm[: n_fit + n_mkt]].std(0) + 1e-6
    x = (x - mean) / sd

    key = jax.random.key(cfg["seed"])
    k_mask, k_noise, k_train, k_test = jax.random.split(key, 4)
    n_models, n_noise = cfg["num_traders"], cfg["num_noise"]
    mask = fc.random_masks(k_mask, n_models, x.shape[1], cfg["features_per_trader"])
    models = fc.fit(mask, jnp.asarray(x[fit_i]), jnp.asarray(y[fit_i]), k_classes)

    def all_beliefs(idx, k):
        real = fc.beliefs(models, jnp.asarray(x[idx]))
        noise = fc.noise_beliefs(k, len(idx), n_noise, k_classes)
        return jnp.concatenate([real, noise], axis=1)

    b_mkt = all_beliefs(mkt_i, jax.random.fold_in(k_noise, 0))
    b_test = all_beliefs(test_i, jax.random.fold_in(k_noise, 1))
    params = pm.PredictionParams(
        jnp.float32(cfg["liquidity"]), jnp.float32(cfg["stake"])
    )
    state = pm.init(n_models + n_noise, cfg["initial_wealth"])
    train = jax.jit(pm.train, static_argnames=("batch", "rounds"))
    kw = {"batch": cfg["batch"], "rounds": cfg["rounds"]}
    rows, wealth_path = [], [np.asarray(state.wealth)]
    compile_s = None
    for epoch in range(cfg["epochs"]):
        t0 = time.perf_counter()
        state, rec = train(
            jax.random.fold_in(k_train, epoch), state, b_mkt, jnp.asarray(y[mkt_i]),
            params, **kw,
        )  # fmt: skip
        jax.block_until_ready(state)
        compile_s = compile_s or time.perf_counter() - t0
        wealth = np.asarray(state.wealth)
        payoff = np.cumsum(np.asarray(rec.payoff), axis=0)
        before = wealth_path[-1]
        prices = np.asarray(rec.prices)
        ys = y[mkt_i].reshape(prices.shape[0], -1)
        for j in range(prices.shape[0]):
            w = before + payoff[j]
            wealth_path.append(w)
            rows.append({
                "epoch": epoch,
                "examples": (epoch * prices.shape[0] + j + 1) * cfg["batch"],
                "prequential_log_loss": log_loss(prices[j], ys[j]),
                "prequential_accuracy": accuracy(prices[j], ys[j]),
                **concentration(w),
                "noise_wealth_share": float(w[n_models:].sum() / w.sum()),
                "maker_loss": float(np.asarray(rec.maker_loss)[j].sum()),
            })  # fmt: skip
    imbalance = float(books_imbalance(state.books, state.wealth))
    p_test = np.asarray(pm.predict(k_test, state.wealth, b_test, params, **kw))
    y_test = y[test_i]
    bt = np.asarray(b_test)
    scores = {
        "market": p_test,
        "traders_average": bt.mean(axis=1),
        "wealth_weighted_average": np.einsum("enk,n->ek", bt, wealth / wealth.sum()),
    }
    mkt_loss = [log_loss(np.asarray(b_mkt)[:, i], y[mkt_i]) for i in range(bt.shape[1])]
    best = int(np.argmin(mkt_loss))
    scores["best_single_trader"] = bt[:, best]
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(max_iter=5000).fit(
        x[np.r_[fit_i, mkt_i]], y[np.r_[fit_i, mkt_i]]
    )
    scores["logistic_regression"] = lr.predict_proba(x[test_i])
    trader_test_loss = np.array(
        [log_loss(bt[:, i], y_test) for i in range(bt.shape[1])]
    )
    share = wealth / wealth.sum()
    rank = lambda v: np.argsort(np.argsort(v))
    spearman = float(np.corrcoef(rank(share), rank(-trader_test_loss))[0, 1])
    summary = {
        "name": cfg["name"],
        "config": cfg,
        "examples": {"fit": len(fit_i), "market": len(mkt_i), "test": len(test_i)},
        "test": {
            k: {"log_loss": log_loss(p, y_test), "accuracy": accuracy(p, y_test)}
            for k, p in scores.items()
        },
        "best_single_trader_index": best,
        "best_single_trader_wealth_rank": int(np.sum(share > share[best])),
        "spearman_wealth_vs_trader_skill": spearman,
        "noise_wealth_share": float(share[n_models:].sum()),
        "final": concentration(wealth),
        "money_imbalance": imbalance,
        "maker_subsidy_paid": float(-state.books.bank.value),
        "compile_and_first_epoch_s": compile_s,
        "wall_s": time.perf_counter() - start,
    }
    with open(out / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _plots(out, rows, np.stack(wealth_path), trader_test_loss, n_models, summary)
    return summary


def _plots(out, rows, wealth_path, trader_loss, n_models, summary):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ex = [r["examples"] for r in rows]
    fig, ax = plt.subplots(1, 3, figsize=(16, 4.5))
    ax[0].plot(ex, [r["wealth_gini"] for r in rows], label="Gini")
    ax[0].plot(ex, [r["wealth_top_share"] for r in rows], label="top-10% share")
    ax[0].plot(
        ex, [r["noise_wealth_share"] for r in rows], label="noise traders' share"
    )
    ax[0].set_xlabel("examples resolved")
    ax[0].set_title("wealth concentration")
    ax[0].legend()
    shares = wealth_path / wealth_path.sum(axis=1, keepdims=True)
    x0 = np.r_[0, ex]
    for i in np.argsort(-shares[-1])[:8]:
        ax[1].plot(
            x0,
            shares[:, i],
            label=f"trader {i}" + (" (noise)" if i >= n_models else ""),
        )
    ax[1].plot(x0, shares[:, n_models:].sum(1), "k--", label="all noise traders")
    ax[1].set_xlabel("examples resolved")
    ax[1].set_title("wealth share of the 8 richest traders")
    ax[1].legend(fontsize=7)
    final = shares[-1]
    ax[2].scatter(trader_loss[:n_models], final[:n_models], label="logistic traders")
    ax[2].scatter(trader_loss[n_models:], final[n_models:], marker="x", label="noise")
    ax[2].set_yscale("log")
    ax[2].set_xscale("log")
    ax[2].set_xlabel("trader's own test log loss")
    ax[2].set_ylabel("final wealth share")
    rho = summary["spearman_wealth_vs_trader_skill"]
    ax[2].set_title(f"the market learns whom to trust (Spearman {rho:.2f})")
    ax[2].legend()
    fig.tight_layout()
    fig.savefig(out / "wealth.png", dpi=80)
    plt.close(fig)
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    names = list(summary["test"])
    for j, metric in enumerate(("log_loss", "accuracy")):
        ax[j].barh(names, [summary["test"][n][metric] for n in names])
        ax[j].set_title(f"test {metric} ({summary['config']['dataset']})")
    fig.tight_layout()
    fig.savefig(out / "comparison.png", dpi=80)
    plt.close(fig)
