"""marketjax: train, compare and benchmark market-based learners.

    marketjax train CONFIG.yaml [key=value ...] [--resume] [--overwrite]
        [--coordinator HOST:PORT --num-processes P --process-id I]
    marketjax compare CONFIG.yaml [key=value ...] [--overwrite]
    marketjax prices CONFIG.yaml [key=value ...] [--overwrite]
    marketjax bench NAME [args ...]        # runs benchmarks/NAME.py
    marketjax example NAME [args ...]      # runs scripts/NAME.py (prediction_market,
                                           # latent_market, bazaar, chang_report)
    marketjax config [SECTION]             # every key: type, default, range, doc
    marketjax replay RUN_DIR [--episodes K] [--explore [EPS]]  # watch a market
    marketjax --version

Config errors are printed as one line naming the key, with exit status 2, before
anything compiles. A run that stops (Ctrl-C: 130; disk full, NaN/inf, a stalled
chunk: 1) says why in one line. Compiled programs are cached in
~/.cache/marketjax/jax (set MARKETJAX_JAX_CACHE to move it, or to "" to disable it).
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
    from marketjax.experiment import cpu_pool, distributed
    from marketjax.experiment.config import apply_overrides, load_yaml
    from marketjax.experiment.registry import parse_train_config
    from marketjax.experiment.train_io import train_and_write

    raw = apply_overrides(load_yaml(args.config), args.overrides)
    cpu_pool.set_pool_threads(cpu_pool.threads_for_train(raw))  # before JAX starts
    distributed.initialize(  # before any computation
        distributed.distributed_args(
            args.coordinator, args.num_processes, args.process_id
        )
    )
    config = parse_train_config(raw)
    from marketjax.experiment import watchdog

    saved = Path(config.runner.out_dir) / config.name / "config.yaml"
    watchdog.RESTART_COMMAND = ["-m", "marketjax.cli", "train", str(saved), "--resume"]
    summary = distributed.train_as_process(
        config, train_and_write, resume=args.resume, overwrite=args.overwrite
    )
    if summary is None:  # a process other than 0: process 0 writes the run
        return 0
    _print_summary(summary)
    print(f"\n  wrote {Path(config.runner.out_dir) / config.name}/")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from marketjax.experiment import watchdog
    from marketjax.experiment.compare import run_from_cli

    watchdog.RESTART_COMMAND = [
        "-m",
        "marketjax.cli",
        "compare",
        args.config,
        *args.overrides,
    ]

    run_from_cli(args.config, args.overrides, overwrite=args.overwrite)
    return 0


def _prices(args: argparse.Namespace) -> int:
    from marketjax.experiment.prices_run import run_from_cli

    run_from_cli(args.config, args.overrides, overwrite=args.overwrite)
    return 0


def _replay(args: argparse.Namespace) -> int:
    from marketjax.experiment.replay import replay

    s = replay(args.run_dir, episodes=args.episodes, explore=args.explore)
    print(
        f"  return over {s['episodes']} episodes: {s['return_mean']:.4g} "
        f"± {s['return_std']:.3g}"
    )
    print(f"\n  wrote {Path(args.run_dir) / 'replay'}/")
    return 0


def benchmarks_dir(folder: str = "benchmarks") -> Path:
    """``benchmarks/`` (or ``scripts/``) of the repository that holds this package
    (so ``marketjax bench`` and ``example`` work from any directory)."""
    import marketjax

    return Path(marketjax.__file__).resolve().parent.parent / folder


def _bench(args: argparse.Namespace) -> int:
    kind = getattr(args, "kind", "benchmarks")
    folder = benchmarks_dir(kind)
    script = folder / f"{args.name}.py"
    if not script.is_file():
        available = sorted(p.stem for p in folder.glob("*.py"))
        what = "benchmark" if kind == "benchmarks" else "example"
        print(
            f"error: no {what} {args.name!r} in {folder}; available: "
            f"{', '.join(available) or f'none ({kind}/ ships with the repository)'}",
            file=sys.stderr,
        )
        return 2
    sys.argv = [str(script), *args.rest]
    sys.path.insert(0, str(folder))
    runpy.run_path(str(script), run_name="__main__")
    return 0


def config_sections() -> dict[str, tuple[type, tuple[str, ...]]]:
    """``{section: (dataclass, keys to skip)}`` that ``marketjax config`` lists."""
    from marketjax.core.schema import MeshConfig
    from marketjax.experiment.compare import CompareConfig
    from marketjax.experiment.prices_run import PricesConfig
    from marketjax.experiment.registry import (
        RunnerConfig,
        TrainConfig,
        algorithm_names,
        get_algorithm,
    )

    sections = {
        "train": (TrainConfig, ("algo_config", "sweep")),
        "runner": (RunnerConfig, ()),
        "runner.mesh": (MeshConfig, ()),
    }
    for name in algorithm_names():
        sections[name] = (get_algorithm(name).config_class, ())
    sections["compare"] = (CompareConfig, ())
    sections["prices"] = (PricesConfig, ())
    return sections


def _config(args: argparse.Namespace) -> int:
    from marketjax.core.config import ConfigError, _unknown_key_message, describe

    sections = config_sections()
    if args.section is None:
        print("sections (marketjax config SECTION lists its keys):")
        width = max(8, *(len(name) for name in sections))
        for name, (cls, _) in sections.items():
            doc = (cls.__doc__ or "").strip().splitlines()[0].replace("``", "")
            print(f"  {name:<{width}} {doc}")
        return 0
    if args.section not in sections:
        message = _unknown_key_message(args.section, list(sections), "")
        message = message.replace("unknown key", "unknown section")
        raise ConfigError(message.replace("valid keys", "sections"))
    cls, skip = sections[args.section]
    rows = [("key", "type", "default", "range", "doc"), *describe(cls, skip)]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        cells = [f"{c:<{w}}" for c, w in zip(row[:4], widths, strict=True)]
        print("  " + "  ".join(cells) + "  " + row[4])
    return 0


def build_parser() -> argparse.ArgumentParser:
    from marketjax import __version__

    parser = argparse.ArgumentParser(
        prog="marketjax",
        description=__doc__.split("\n")[0],
        epilog="Compiled programs are cached in ~/.cache/marketjax/jax "
        "(MARKETJAX_JAX_CACHE moves it; empty disables it).",
    )
    parser.add_argument(
        "--version", action="version", version=f"marketjax {__version__}"
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
            p.add_argument(
                "--coordinator",
                metavar="HOST:PORT",
                help="multi-process run: process 0's address "
                "(or JAX_COORDINATOR_ADDRESS)",
            )
            p.add_argument(
                "--num-processes",
                type=int,
                metavar="P",
                help="multi-process run: processes (or JAX_NUM_PROCESSES)",
            )
            p.add_argument(
                "--process-id",
                type=int,
                metavar="I",
                help="multi-process run: this process, 0..P-1 (or JAX_PROCESS_ID)",
            )
        p.set_defaults(func=func)
    for name, kind, help_ in (
        ("bench", "benchmarks", "run benchmarks/NAME.py"),
        ("example", "scripts", "run scripts/NAME.py (prediction markets, bazaar, ...)"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("name", help=f"NAME of {kind}/NAME.py (without .py)")
        p.add_argument(
            "rest", nargs=argparse.REMAINDER, help="arguments passed to the script"
        )
        p.set_defaults(func=_bench, kind=kind)
    p = sub.add_parser("config", help="list a config section's keys and defaults")
    p.add_argument("section", nargs="?", help="train, runner, deep, ppo, ...")
    p.set_defaults(func=_config)
    p = sub.add_parser(
        "replay",
        help="play a trained deep/wide market (ppo: returns), write RUN_DIR/replay/",
    )
    p.add_argument("run_dir", help="a run directory (runs/<name>)")
    p.add_argument("--episodes", type=int, default=8, help="episodes to play (K)")
    p.add_argument(
        "--explore",
        type=float,
        nargs="?",
        const=0.05,
        default=0.0,
        help="exploration lottery ε (flag alone: 0.05; default 0, greedy)",
    )
    p.set_defaults(func=_replay)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the command line; ``key=value`` overrides may follow the options
    (``marketjax train c.yaml --resume lr=1e-3``)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(x.startswith("-") for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from marketjax.experiment.config import ConfigError
    from marketjax.experiment.run_dir import RunError

    _avoid_eigen_pool_wedge()  # before jax is imported
    try:
        if args.command != "config":
            _enable_compilation_cache()
        return args.func(args)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `marketjax config deep | head`
        return 0
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        print(f"error:{where} {e.strerror or e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
