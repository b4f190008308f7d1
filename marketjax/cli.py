"""``marketjax train|compare|prices|bench ...``: the command line.

    marketjax train CONFIG.yaml [key=value ...] [--resume] [--overwrite]
    marketjax compare CONFIG.yaml [key=value ...] [--overwrite]
    marketjax prices CONFIG.yaml [key=value ...] [--overwrite]
    marketjax bench NAME [args ...]        # runs benchmarks/NAME.py

Config errors are printed as one line naming the key, with exit status 2, before
anything compiles.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from pathlib import Path


def _avoid_eigen_pool_wedge() -> None:
    """Runs XLA's CPU kernels without the multi-threaded Eigen pool.

    That pool can wedge on vmapped programs (a run that never finishes; seen here
    with PPO on MultiCatch, and narrowed to this flag in PyAutoFit#1528). Measured on
    2 cores, the quickstart is no slower without it. Set ``XLA_FLAGS`` yourself to
    override; the flag only concerns the CPU backend.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()


def _enable_compilation_cache() -> None:
    import jax

    cache = os.environ.get(
        "MARKETJAX_JAX_CACHE", str(Path.home() / ".cache" / "marketjax" / "jax")
    )
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def _print_summary(summary: dict) -> None:
    per_seed = ", ".join(
        "-" if x is None else f"{x:.3g}" for x in summary["final_mean_return_per_seed"]
    )
    final = summary["final_mean_return"]
    rows = [
        ("run", summary["name"]),
        ("algo / env", f"{summary['algo']} / {summary['env']}"),
        ("env steps per seed", f"{summary['env_steps']:,}"),
        ("final mean return (median)", "-" if final is None else f"{final:.4g}"),
        ("per seed", per_seed),
        ("env steps/s (all seeds)", f"{summary['env_steps_per_s']:,.0f}"),
        ("compile s / run s", f"{summary['compile_s']:.1f} / {summary['wall_s']:.1f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def _train(args: argparse.Namespace) -> int:
    from marketjax.experiment.config import apply_overrides, load_yaml
    from marketjax.experiment.registry import parse_train_config
    from marketjax.experiment.train_io import train_and_write

    config = parse_train_config(apply_overrides(load_yaml(args.config), args.overrides))
    summary = train_and_write(config, resume=args.resume, overwrite=args.overwrite)
    _print_summary(summary)
    print(f"\n  wrote {Path(config.runner.out_dir) / config.name}/")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from marketjax.experiment.compare import run_from_cli

    run_from_cli(args.config, args.overrides, overwrite=args.overwrite)
    return 0


def _prices(args: argparse.Namespace) -> int:
    from marketjax.experiment.prices_run import run_from_cli

    run_from_cli(args.config, args.overrides, overwrite=args.overwrite)
    return 0


def _bench(args: argparse.Namespace) -> int:
    script = Path("benchmarks") / f"{args.name}.py"
    if not script.is_file():
        available = sorted(p.stem for p in Path("benchmarks").glob("*.py"))
        print(f"error: no benchmark {script}; available: {available}", file=sys.stderr)
        return 2
    sys.argv = [str(script), *args.rest]
    runpy.run_path(str(script), run_name="__main__")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marketjax", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_ in (
        ("train", _train, "train one config, write runs/<name>/"),
        ("compare", _compare, "run a comparison config, write results/<name>/"),
        ("prices", _prices, "compare market prices with backprop gradients"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("config", help="YAML config file")
        p.add_argument("overrides", nargs="*", help="key.sub=value overrides")
        p.add_argument(
            "--overwrite",
            action="store_true",
            help="replace an existing output directory",
        )
        if name == "train":
            p.add_argument(
                "--resume",
                action="store_true",
                help="continue an interrupted run from its checkpoint",
            )
        p.set_defaults(func=func)
    p = sub.add_parser("bench", help="run benchmarks/NAME.py")
    p.add_argument("name")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from marketjax.experiment.config import ConfigError

    _avoid_eigen_pool_wedge()  # before jax is imported
    _enable_compilation_cache()
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
