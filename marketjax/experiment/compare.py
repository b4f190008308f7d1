"""The comparison harness: every algorithm on every environment, one runner.

A comparison config lists environments, algorithms (a label, a training config file
and overrides) and a common budget (env steps per seed, number of seeds). Each
(environment, algorithm) pair becomes an ordinary training config, validated before
anything compiles, and is trained by :func:`~marketjax.experiment.train_io.
train_and_write` -- the same runner as ``marketjax train`` (seeds vmapped in one
program, chunks, checkpoints) -- into ``<out_dir>/<name>/runs/<label>__<env>/``.
The harness then writes, atomically:

- ``config.yaml``: the resolved comparison config;
- ``table.md``, ``table.csv``, ``table.json``: per environment x algorithm, the final
  mean return (median and interquartile range over seeds), env steps for the
  median-over-seeds curve to reach the environment's threshold, run time, compile
  time and env steps/s;
- ``curves.png``: return vs env steps and vs wall time (median, interquartile band).

Finished runs are reused when the harness is run again with the same config and the
same code (``version.json``: the package version, a hash of its source files and of
the config schema; a changed one re-runs, saying so in one line); an interrupted run
resumes from its checkpoint; ``overwrite`` starts from scratch. Runs have
``runner.watchdog_restart`` on: a stalled chunk restarts from the last checkpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import shutil
from pathlib import Path

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
from marketjax.experiment.checkpoint import write_atomic, write_json_atomic
from marketjax.experiment.cpu_pool import set_pool_threads, threads_for_cases
from marketjax.experiment.registry import (
    TrainConfig,
    parse_train_config,
    train_config_to_dict,
)


@dataclasses.dataclass(frozen=True)
class EnvEntry:
    """One environment of a comparison (``envs:`` list item)."""

    id: str = field(doc="a gymnax id or one of marketjax's environments")
    threshold: float | None = field(
        None, lo=-1e30, hi=1e30, doc="return counted as 'solved'"
    )


@dataclasses.dataclass(frozen=True)
class AlgoEntry:
    """One algorithm of a comparison (``algorithms:`` list item)."""

    label: str = field(doc="name in tables and plots")
    config: str = field(doc="training config YAML (relative: to cwd, else to here)")
    overrides: tuple[str, ...] = field((), doc="key=value overrides of that config")


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """A comparison: algorithms x environments under one budget."""

    name: str = field(doc="results go to <out_dir>/<name>/")
    envs: tuple[EnvEntry, ...] = field(doc="environments (each: id, threshold)")
    algorithms: tuple[AlgoEntry, ...] = field(doc="each: label, config, overrides")
    total_env_steps: int = field(
        lo=1, hi=10**12, doc="common budget: env steps per seed"
    )
    num_seeds: int = field(
        3, lo=1, hi=4096, doc="seeds per run, vmapped in one program"
    )
    seed: int = field(0, lo=0, hi=2**31 - 1, doc="seed of every run (overrides theirs)")
    num_chunks: int = field(20, lo=1, hi=100_000, doc="points per learning curve")
    out_dir: str = field("results", doc="parent folder of comparison results")
    progress: bool = field(True, doc="draw progress bars")


@dataclasses.dataclass(frozen=True)
class Case:
    """One (environment, algorithm) pair, resolved into a training config."""

    env: EnvEntry
    algo: AlgoEntry
    train: TrainConfig


def parse_compare_config(data: dict) -> CompareConfig:
    """Validates a comparison mapping (ConfigError names the bad key)."""
    config = parse(CompareConfig, data)
    check_plain_name(config.name, "name")
    if not config.envs:
        raise ConfigError("'envs' must list at least one environment")
    if not config.algorithms:
        raise ConfigError("'algorithms' must list at least one algorithm")
    labels = [a.label for a in config.algorithms]
    for i, label in enumerate(labels):
        if labels.index(label) != i:
            raise ConfigError(f"'algorithms[{i}].label' repeats {label!r}")
        check_plain_name(label, f"algorithms[{i}].label")
    return config


def _resolve_path(path: str, base: Path) -> Path:
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return base / p


def results_dir(config: CompareConfig) -> Path:
    return Path(config.out_dir) / config.name


def resolve_cases(config: CompareConfig, base: Path = Path(".")) -> list[Case]:
    """Every (env, algorithm) pair as a validated :class:`TrainConfig`.

    The harness sets each run's env, budget, seeds, chunks and output folder; every
    other key comes from the algorithm's training config and its overrides.

    Raises:
      ConfigError: naming the algorithm entry and the bad key, before compiling.
    """
    runs_dir = results_dir(config) / "runs"
    cases = []
    for i, algo in enumerate(config.algorithms):
        where = f"algorithms[{i}] ({algo.label})"
        try:
            data = load_yaml(_resolve_path(algo.config, base))
            data = apply_overrides(data, algo.overrides)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        for env in config.envs:
            runner = data.get("runner") or {}
            if not isinstance(runner, dict):
                raise ConfigError(f"{where}: 'runner' must be a mapping of keys")
            harness = {
                **data,
                "name": f"{algo.label}__{env.id.replace('/', '_')}",
                "env": env.id,
                "total_env_steps": config.total_env_steps,
                "num_seeds": config.num_seeds,
                "seed": config.seed,
                "runner": {
                    **runner,
                    "num_chunks": config.num_chunks,
                    "out_dir": str(runs_dir),
                    "progress": config.progress,
                    "watchdog_restart": True,  # a stalled run restarts itself
                },
            }
            try:
                train = parse_train_config(harness)
            except ConfigError as e:
                raise ConfigError(f"{where} on {env.id}: {e}") from None
            cases.append(Case(env, algo, train))
    return cases


def _run_dir(case: Case) -> Path:
    return Path(case.train.runner.out_dir) / case.train.name


def run_status(case: Case, log=print) -> str:
    """``"done"`` (a finished run of this exact config made by this code),
    ``"resume"``, ``"rerun"`` (made by other code or another config schema: says
    so in one line through ``log``) or ``"new"``.

    A run is reused only if its config text AND its ``version.json`` (the code
    version and the schema hash, :mod:`marketjax.experiment.run_dir`) match.

    Raises:
      ConfigError: if the run folder holds a run of a different config.
    """
    from marketjax.experiment.run_dir import version_change

    run_dir = _run_dir(case)
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return "new"
    change = version_change(run_dir, case.train)
    if change is not None:
        log(f"compare: re-running {case.train.name}: {change}")
        return "rerun"
    if saved.read_text() != dump_yaml(train_config_to_dict(case.train)):
        raise ConfigError(
            f"{run_dir} holds a run of a different config; pass --overwrite "
            "(or choose another comparison name)"
        )
    return "done" if (run_dir / "summary.json").is_file() else "resume"


def _run_case(case: Case, status: str) -> dict:
    """Trains one case with the shared runner, reusing or resuming earlier work."""
    from marketjax.experiment.train_io import train_and_write

    if status == "done":
        return json.loads((_run_dir(case) / "summary.json").read_text())
    return train_and_write(
        case.train, resume=status == "resume", overwrite=status == "rerun"
    )


def _curve(run_dir: Path) -> dict:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    per_seed = np.array(
        [[np.nan if v is None else v for v in r["mean_return_per_seed"]] for r in rows],
        dtype=float,
    )
    return {
        "env_steps": [r["env_steps"] for r in rows],
        "wall_s": [r["wall_s"] for r in rows],
        "per_seed": per_seed.tolist(),  # [chunks][seeds]
    }


def steps_to_threshold(curve: dict, threshold: float | None) -> int | None:
    """First env step count at which the median-over-seeds return >= threshold."""
    if threshold is None:
        return None
    per_seed = np.asarray(curve["per_seed"], dtype=float)
    for steps, row in zip(curve["env_steps"], per_seed, strict=True):
        finite = row[np.isfinite(row)]
        if finite.size and np.median(finite) >= threshold:
            return int(steps)
    return None


def summarize(case: Case, summary: dict, curve: dict) -> dict:
    """One table row: final return statistics over seeds and the cost of the run."""
    finals = np.array(
        [np.nan if x is None else x for x in summary["final_mean_return_per_seed"]],
        dtype=float,
    )
    finite = finals[np.isfinite(finals)]
    q25, q50, q75 = (
        np.percentile(finite, [25, 50, 75]) if finite.size else (np.nan,) * 3
    )
    return {
        "env": case.env.id,
        "algo": case.algo.label,
        "algo_name": case.train.algo,
        "seeds": case.train.num_seeds,
        "env_steps": int(summary["env_steps"]),
        "final_return_median": float(q50),
        "final_return_q25": float(q25),
        "final_return_q75": float(q75),
        "final_return_iqr": float(q75 - q25),
        "threshold": case.env.threshold,
        "steps_to_threshold": steps_to_threshold(curve, case.env.threshold),
        "run_s": float(summary["wall_s"]),
        "compile_s": float(summary["compile_s"]),
        "env_steps_per_s": float(summary["env_steps_per_s"]),
    }


COLUMNS = [
    ("env", "env"),
    ("algo", "algorithm"),
    ("seeds", "seeds"),
    ("env_steps", "env steps/seed"),
    ("final_return_median", "final return (median)"),
    ("final_return_iqr", "IQR"),
    ("steps_to_threshold", "steps to threshold"),
    ("run_s", "run s"),
    ("compile_s", "compile s"),
    ("env_steps_per_s", "env steps/s"),
]


def _fmt(key: str, value, threshold=None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        if key == "steps_to_threshold" and threshold is not None:
            return "not reached"
        return "-"
    if key in ("env_steps", "steps_to_threshold", "env_steps_per_s"):
        return f"{value:,.0f}"
    if key in ("run_s", "compile_s"):
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table_markdown(rows: list[dict], title: str) -> str:
    """The results table as GitHub markdown."""
    head = [label for _, label in COLUMNS]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |"]
    lines.append("|" + "|".join("---" for _ in head) + "|")
    for row in rows:
        cells = [_fmt(k, row[k], row.get("threshold")) for k, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    thresholds = sorted({(r["env"], r["threshold"]) for r in rows if r["threshold"]})
    lines.append("")
    lines.append(
        "Final return: mean episode return over the last chunk, median and "
        "interquartile range over seeds. Steps to threshold: first env step count "
        "at which the median-over-seeds return reached "
        + (", ".join(f"{t:g} on {e}" for e, t in thresholds) or "the threshold")
        + ". Run s excludes compilation; env steps/s counts all seeds."
    )
    return "\n".join(lines) + "\n"


def table_csv(rows: list[dict]) -> str:
    keys = list(rows[0]) if rows else [k for k, _ in COLUMNS]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row[k] is None else row[k] for k in keys})
    return buf.getvalue()


def run_compare(
    config: CompareConfig, *, overwrite: bool = False, base: Path = Path(".")
) -> Path:
    """Runs a comparison and writes ``<out_dir>/<name>/``; returns that folder."""
    from tqdm.auto import tqdm

    from marketjax.experiment import compare_plots
    from marketjax.experiment.config import to_dict

    cases = resolve_cases(config, base)  # every config checked before compiling
    out = results_dir(config)
    if overwrite and out.exists():
        shutil.rmtree(out)
    statuses = [run_status(case) for case in cases]  # conflicts fail before writing
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "config.yaml", dump_yaml(config))
    for case in cases:  # the resolved training configs, side by side
        write_atomic(
            out / "configs" / f"{case.train.name}.yaml",
            dump_yaml(train_config_to_dict(case.train)),
        )
    bar = tqdm(
        total=sum(c.train.total_env_steps * c.train.num_seeds for c in cases),
        unit="step",
        unit_scale=True,
        disable=not config.progress,
        desc=f"compare {config.name}",
        position=0,
    )
    rows, curves = [], {}
    for i, (case, status) in enumerate(zip(cases, statuses, strict=True)):
        bar.set_postfix_str(f"{i + 1}/{len(cases)}: {case.algo.label} on {case.env.id}")
        summary = _run_case(case, status)
        compare_plots.plot_run_returns(_run_dir(case), case.env.threshold)
        curve = _curve(_run_dir(case))
        curves[(case.env.id, case.algo.label)] = curve
        rows.append(summarize(case, summary, curve))
        bar.update(case.train.total_env_steps * case.train.num_seeds)
    bar.close()

    title = f"{config.name}: {config.total_env_steps:,} env steps per seed"
    write_atomic(out / "table.md", table_markdown(rows, title))
    write_atomic(out / "table.csv", table_csv(rows))
    write_json_atomic(
        out / "table.json",
        {
            "name": config.name,
            "config": to_dict(config),
            "rows": rows,
            "curves": [{"env": e, "algo": a, **c} for (e, a), c in curves.items()],
        },
    )
    compare_plots.plot_curves(
        curves,
        [e.id for e in config.envs],
        [a.label for a in config.algorithms],
        out / "curves.png",
        title=config.name,
        thresholds={e.id: e.threshold for e in config.envs},
    )
    return out


def raw_algorithms(config: CompareConfig, base: Path) -> list[dict]:
    """Each algorithm's raw training mapping with the comparison's seeds, read
    before JAX starts (to size XLA's CPU pool, ``experiment/cpu_pool.py``); one
    that does not load is left to :func:`resolve_cases` to name."""
    raws = []
    for algo in config.algorithms:
        try:
            data = apply_overrides(
                load_yaml(_resolve_path(algo.config, base)), algo.overrides
            )
        except ConfigError:
            continue
        raws.append({**data, "num_seeds": config.num_seeds})
    return raws


def run_from_cli(config_path: str, overrides: list[str], *, overwrite: bool) -> Path:
    """``marketjax compare CONFIG.yaml [key=value ...]``: runs and prints the table."""
    path = Path(config_path)
    config = parse_compare_config(apply_overrides(load_yaml(path), overrides))
    set_pool_threads(threads_for_cases(raw_algorithms(config, path.parent)))
    out = run_compare(config, overwrite=overwrite, base=path.parent)
    print()
    print((out / "table.md").read_text())
    print(f"  wrote {out}/")
    return out
