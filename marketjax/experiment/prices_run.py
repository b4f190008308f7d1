"""``marketjax prices CONFIG.yaml [key=value ...] [--overwrite]``: Eq. (1), measured.

Builds a random MLP and synthetic data from the config, runs
:func:`marketjax.embeddings.prices.compare` (market prices of the production
economy vs backprop gradients) and writes ``<out_dir>/<name>/``:

* ``config.yaml``: the resolved config;
* ``prices.md``: one table row per layer (rel error, cosine, residual, converged,
  iterations);
* ``prices.json``: the same numbers, machine-readable;
* ``prices_vs_gradients.png``: price vs gradient, one colour per layer.

The directory is assembled in a temporary sibling and renamed into place, each file
written atomically, so a crash never leaves half a run.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from marketjax.core.config import (
    ConfigError,
    apply_overrides,
    check_plain_name,
    dump_yaml,
    field,
    load_yaml,
    parse,
)
from marketjax.embeddings import mlp, prices
from marketjax.experiment.checkpoint import write_atomic, write_json_atomic


@dataclasses.dataclass(frozen=True)
class PricesConfig:
    """The ``prices`` command's config (``configs/prices_mlp.yaml``)."""

    name: str = field("prices_mlp", doc="run directory name under out_dir")
    out_dir: str = field("runs", doc="where run directories go")
    seed: int = field(0, lo=0, hi=2**31 - 1, doc="PRNG seed for weights and data")
    sizes: tuple[int, ...] = field(
        (4, 16, 16, 3), lo=1, hi=65_536, doc="widths (in, hidden..., out)"
    )
    activation: Literal[tuple(mlp.ACTIVATIONS)] = field("tanh", doc="hidden activation")
    loss: Literal[prices.LOSSES] = field("mse", doc="per-sample loss")
    batch: int = field(64, lo=1, hi=100_000, doc="samples (one economy each)")
    init_scale: float = field(1.0, lo=0.0, lo_open=True, hi=1e3, doc="weight scale")
    step_size: float = field(1.0, lo=0.0, lo_open=True, hi=2.0, doc="tâtonnement η")
    max_iters: int = field(100, lo=0, hi=1_000_000, doc="price update budget")
    tol: float = field(
        1e-6, lo=0.0, lo_open=True, hi=1.0, doc="relative price residual"
    )
    mechanism: Literal[prices.MECHANISMS] = field(
        "recursion",
        doc="recursion: quantities frozen; discovery: firms choose quantities",
    )


def load_config(config_path: str, overrides: list[str]) -> PricesConfig:
    """Reads, overrides and validates a prices config (errors name the key)."""
    config = parse(PricesConfig, apply_overrides(load_yaml(config_path), overrides))
    if len(config.sizes) < 2:
        raise ConfigError(f"'sizes' needs at least two widths, got {config.sizes}")
    for i, s in enumerate(config.sizes):
        if not 1 <= s <= 4096:
            raise ConfigError(f"'sizes[{i}]' must be in [1, 4096], got {s}")
    check_plain_name(config.name, "name")
    return config


def make_problem(config: PricesConfig):
    """A random MLP and synthetic data (inputs N(0, 1); targets from a teacher MLP
    for mse, its arg-max labels for xent)."""
    k_net, k_teacher, k_x = jax.random.split(jax.random.key(config.seed), 3)
    layers = mlp.init(k_net, config.sizes, config.init_scale)
    x = jax.random.normal(k_x, (config.batch, config.sizes[0]), jnp.float32)
    teacher = mlp.init(k_teacher, config.sizes, 2.0)
    y = mlp.apply(teacher, x, config.activation)
    if config.loss == "xent":
        y = jnp.argmax(y, axis=-1).astype(jnp.int32)
    return layers, x, y


def summarize(report: prices.PriceReport, config: PricesConfig, wall_s: float) -> dict:
    """A JSON-able summary of a :class:`~marketjax.embeddings.prices.PriceReport`."""
    rows = []
    for i in range(len(report.prices)):
        rows.append(
            {
                "layer": i,
                "kind": "output" if i == len(report.prices) - 1 else "hidden",
                "width": int(report.prices[i].shape[1]),
                "rel_error": float(report.rel_error[i]),
                "cosine": float(report.cosine[i]),
                "residual": float(report.residual[i]),
                "converged": bool(report.layer_converged[i]),
                "iterations": int(report.layer_iterations[i]),
            }
        )
    return {
        "name": config.name,
        "activation": config.activation,
        "loss": config.loss,
        "sizes": list(config.sizes),
        "batch": config.batch,
        "step_size": config.step_size,
        "max_iters": config.max_iters,
        "tol": config.tol,
        "converged": bool(report.converged),
        "iterations": int(report.iterations),
        "wall_s": wall_s,
        "layers": rows,
    }


def markdown(summary: dict) -> str:
    """``prices.md``: one row per layer."""
    lines = [
        f"# Market prices vs backprop gradients: {summary['name']}",
        "",
        f"MLP {summary['sizes']}, {summary['activation']}, loss {summary['loss']}, "
        f"batch {summary['batch']}; tâtonnement step {summary['step_size']}, "
        f"budget {summary['max_iters']}, tol {summary['tol']}: converged "
        f"{summary['converged']} after {summary['iterations']} updates.",
        "",
        "| layer | kind | width | rel error | cosine | residual | converged "
        "| iterations |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["layers"]:
        lines.append(
            f"| {r['layer']} | {r['kind']} | {r['width']} | {r['rel_error']:.3e} "
            f"| {r['cosine']:.7f} | {r['residual']:.2e} | {r['converged']} "
            f"| {r['iterations']} |"
        )
    return "\n".join(lines) + "\n"


def elementwise_rel_error(p, g) -> np.ndarray:
    """|p - g| / |g| per element (|g| floored at 1e-12 of the layer's largest)."""
    p, g = np.asarray(p, np.float64).ravel(), np.asarray(g, np.float64).ravel()
    scale = np.maximum(np.abs(g), 1e-12 * max(np.abs(g).max(), 1e-30))
    return np.abs(p - g) / scale


def plot(report: prices.PriceReport, path: Path, tol: float | None = None) -> None:
    """How far the prices are from the gradients, per layer, on log axes.

    Left: each layer's relative error ||p_l - g_l|| / ||g_l|| (log axis), the
    number written on its bar, beside the tâtonnement tolerance the config names
    (dashed). Right: the error of every single price, |p - g| / |g|, against the
    gradient's size |g| (log-log): where prices are off, and whether only for
    near-zero gradients. (A plain price-vs-gradient scatter puts every point on
    y = x and shows nothing.)
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    layers = len(report.prices)
    floor = 1e-17  # an exact match still gets a bar and a point on a log axis
    raw = np.asarray(report.rel_error, np.float64)
    errors = np.maximum(raw, floor)
    colours = [f"C{i}" for i in range(layers)]
    left.bar(range(layers), errors, color=colours)
    for i, (e, r) in enumerate(zip(errors, raw, strict=True)):
        text = f"{r:.1e}" if r > 0 else "0 (exact)"
        left.text(i, e, text, ha="center", va="bottom", fontsize=8)
    if tol is not None:
        left.axhline(tol, ls="--", color="k", lw=1, label=f"tol = {tol:g} (residual)")
        left.legend(fontsize=8, loc="upper left")
    left.set_yscale("log")
    left.set_xticks(
        range(layers),
        [f"layer {i}" + (" (out)" if i == layers - 1 else "") for i in range(layers)],
    )
    left.set_ylabel("relative error ||p - g|| / ||g||")
    left.set_title("per layer")
    for i, (p, g) in enumerate(zip(report.prices, report.gradients, strict=True)):
        size = np.maximum(np.abs(np.asarray(g, np.float64).ravel()), floor)
        err = np.maximum(elementwise_rel_error(p, g), floor)
        right.scatter(size, err, s=6, alpha=0.5, color=colours[i], label=f"layer {i}")
    right.axhline(floor, ls=":", color="0.5", lw=1, label="exact (0) drawn here")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("|gradient| = |-dloss/dh| (jax.grad)")
    right.set_ylabel("|price - gradient| / |gradient|")
    right.set_title("every price")
    right.legend(fontsize=8, loc="upper right")
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
    fig.suptitle("Eq. (1): equilibrium prices (tâtonnement) vs backprop gradients")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_from_cli(config_path: str, overrides: list[str], *, overwrite: bool) -> Path:
    """Runs ``marketjax prices`` and returns the run directory.

    Raises:
      ConfigError: a bad key (named), or an existing run directory without
        ``overwrite``.
    """
    config = load_config(config_path, overrides)
    run_dir = Path(config.out_dir) / config.name
    if run_dir.exists() and not overwrite:
        raise ConfigError(
            f"run directory {run_dir} exists; pass --overwrite to replace it or "
            "choose another name"
        )
    layers, x, y = make_problem(config)
    start = time.perf_counter()
    report = prices.compare(
        layers,
        x,
        y,
        activation=config.activation,
        loss=config.loss,
        step_size=config.step_size,
        max_iters=config.max_iters,
        tol=config.tol,
        mechanism=config.mechanism,
    )
    jax.block_until_ready(report)
    summary = summarize(report, config, time.perf_counter() - start)

    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{config.name}.", dir=run_dir.parent))
    try:
        write_atomic(tmp / "config.yaml", dump_yaml(config))
        write_atomic(tmp / "prices.md", markdown(summary))
        write_json_atomic(tmp / "prices.json", summary)
        plot(report, tmp / "prices_vs_gradients.png", config.tol)
        if run_dir.exists():
            shutil.rmtree(run_dir)
        os.replace(tmp, run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(markdown(summary))
    print(f"wrote {run_dir}/")
    return run_dir
