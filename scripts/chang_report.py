"""Trains a Chang et al. society config and adds the learned bids against Q* to its run.

``python scripts/chang_report.py configs/chang_chain.yaml [key=value ...]
[--overwrite | --report-only]`` runs ``marketjax train`` (``train_and_write``), loads
the final state from the run's checkpoint and writes, into every point's
``summary.json``, the keys of ``marketjax.algos.chang.chang_report`` (``mean_bids``,
``q_star``, ``bid_rel_error``, ...) and a ``bids.png``. ``--report-only`` reports
an existing finished run. Until ``train_io`` calls the algorithm's ``summarize``
hook itself, this is how a society run gets its bids.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax


def report_run(config) -> list[dict]:
    """Loads ``<run>/checkpoint.msgpack`` and writes each point's report."""
    from marketjax.algos.chang import chang_report, plot_bids
    from marketjax.experiment.checkpoint import load_checkpoint, write_json_atomic
    from marketjax.experiment.registry import get_algorithm, sweep_points
    from marketjax.experiment.runner import run_params, seed_keys, strong_types

    run_dir = Path(config.runner.out_dir) / config.name
    trainer = get_algorithm(config.algo).make_trainer(config)
    points = sweep_points(config)
    params = run_params(trainer, points, config.num_seeds)
    keys = jax.numpy.concatenate([seed_keys(config)] * len(points))
    template = jax.jit(lambda k, p: strong_types(jax.vmap(trainer.init)(k, p)))(
        keys, params
    )
    state, _ = load_checkpoint(run_dir / "checkpoint.msgpack", template)
    s, reports = config.num_seeds, []
    for i, (label, point) in enumerate(points):
        d = run_dir / label if config.sweep else run_dir
        part = jax.tree.map(lambda x, i=i: x[i * s : (i + 1) * s], state)
        report = chang_report(part, point)
        summary = json.loads((d / "summary.json").read_text())
        summary.update(report)
        write_json_atomic(d / "summary.json", summary)
        plot_bids(
            report,
            d / "bids.png",
            f"{config.name} {label} ({point.algo_config.auction})",
        )
        reports.append({"point": label, **summary})
    return reports


def main(argv: list[str] | None = None) -> int:
    from marketjax.cli import _avoid_eigen_pool_wedge

    _avoid_eigen_pool_wedge()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    from marketjax.core.config import ConfigError
    from marketjax.experiment.config import apply_overrides, load_yaml
    from marketjax.experiment.registry import parse_train_config
    from marketjax.experiment.train_io import train_and_write

    try:
        config = parse_train_config(
            apply_overrides(load_yaml(args.config), args.overrides)
        )
        if config.algo != "chang":
            raise ConfigError(
                f"'algo': chang_report needs algo chang, got {config.algo}"
            )
        if not args.report_only:
            train_and_write(config, overwrite=args.overwrite)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    keys = (
        "final_mean_return",
        "bid_rel_error",
        "winning_bid_rel_error",
        "greedy_matches_optimal",
        "env_steps_per_s",
        "mean_bids",
        "q_star",
    )
    for r in report_run(config):
        print(json.dumps({"point": r["point"], **{k: r[k] for k in keys}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
