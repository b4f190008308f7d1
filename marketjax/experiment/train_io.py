"""Runs a training config and writes its run directory (the only I/O of training).

``runs/<name>/`` holds the resolved ``config.yaml``, ``metrics.jsonl`` (one JSON object
per chunk), ``checkpoint.msgpack`` (after every chunk), ``summary.json`` (written last:
its presence marks a finished run) and ``returns.png``. A config with a ``sweep:``
section writes, instead, one subdirectory per grid point (named ``key=value,...``,
each with its own ``config.yaml``, ``metrics.jsonl``, ``summary.json`` and
``returns.png``) and, at the top, ``sweep.csv``, ``sweep.md`` and ``sweep.png``; the
whole grid is one compiled program and one checkpoint. Every file is replaced
atomically, so an interrupted run leaves a consistent directory that ``resume``
continues, ending with exactly the numbers of an uninterrupted run.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import jax
import numpy as np

from marketjax.core.config import ConfigError, dump_yaml
from marketjax.experiment import plots
from marketjax.experiment.checkpoint import (
    load_checkpoint,
    save_checkpoint,
    write_atomic,
    write_json_atomic,
)
from marketjax.experiment.registry import TrainConfig, train_config_to_dict
from marketjax.experiment.runner import CompiledRun, compile_run, debug_check
from marketjax.experiment.sweep_report import write_sweep_report

CHECKPOINT = "checkpoint.msgpack"


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _median_or_none(values: list[float | None]) -> float | None:
    finite = [x for x in values if x is not None]
    return float(np.median(finite)) if finite else None


def _last_finite(history: list[list[float | None]], seed: int) -> float | None:
    for row in reversed(history):
        if row[seed] is not None:
            return row[seed]
    return None


def prepare_run_dir(config: TrainConfig, *, resume: bool, overwrite: bool) -> Path:
    """Creates (or checks, on resume) ``<out_dir>/<name>``; refuses to clobber."""
    run_dir = Path(config.runner.out_dir) / config.name
    resolved = dump_yaml(train_config_to_dict(config))
    if resume and overwrite:  # checked first: overwrite would delete what to resume
        raise ConfigError("--resume and --overwrite exclude each other; pass one")
    if run_dir.exists() and overwrite:
        shutil.rmtree(run_dir)
    if resume:
        saved = run_dir / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"cannot resume: {saved} does not exist")
        if saved.read_text() != resolved:
            raise ConfigError(f"cannot resume: the config differs from {saved}")
    elif run_dir.exists() and any(run_dir.iterdir()):
        state = "finished" if (run_dir / "summary.json").exists() else "interrupted"
        raise ConfigError(
            f"run directory {run_dir} exists ({state}); pass --resume to continue "
            "it, --overwrite to replace it, or choose another name"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(run_dir / "config.yaml", resolved)
    return run_dir


def point_dirs(run: CompiledRun, run_dir: Path) -> list[Path]:
    """Where each grid point's files go (the run directory itself without a sweep)."""
    if not run.config.sweep:
        return [run_dir]
    return [run_dir / label for label, _ in run.points]


def _restore_metrics(dirs: list[Path], done_chunks: int) -> list[list]:
    """Each point's metrics lines of the checkpointed chunks, checked and rewritten."""
    histories = []
    for d in dirs:
        path = d / "metrics.jsonl"
        saved = path.read_text() if path.is_file() else ""
        lines = saved.splitlines()[:done_chunks]
        if len(lines) < done_chunks:  # metrics are written before the checkpoint
            raise ConfigError(
                f"cannot resume: {path} holds {len(lines)} of the "
                f"{done_chunks} chunks in the checkpoint; pass --overwrite"
            )
        try:
            history = [json.loads(line)["mean_return_per_seed"] for line in lines]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(
                f"cannot resume: {path} is damaged; pass --overwrite"
            ) from None
        write_atomic(path, "".join(line + "\n" for line in lines))
        histories.append(history)
    return histories


def _metrics_row(metrics: dict, sl: slice, chunk_index: int, steps, wall_s) -> dict:
    per_seed = [_finite_or_none(x) for x in np.asarray(metrics["mean_return"])[sl]]
    row = {
        "chunk": chunk_index + 1,
        "env_steps": steps,
        "wall_s": round(wall_s, 4),
        "mean_return": _median_or_none(per_seed),
        "mean_return_per_seed": per_seed,
    }
    for key, value in metrics.items():
        if key != "mean_return":
            row[key] = _finite_or_none(np.median(np.asarray(value)[sl]))
    return row


def train_and_write(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    stop_after_chunks: int | None = None,
) -> dict:
    """Trains ``config`` and writes its run directory; returns the summary (the
    first point's, for a sweep, with ``sweep`` listing every point's).

    Args:
      config: a validated training config.
      resume: continue from the run directory's checkpoint.
      overwrite: delete an existing run directory first.
      stop_after_chunks: stop (without a summary) after this many chunks of this
        call, as an interruption would; for tests of ``resume``.
    """
    from tqdm.auto import tqdm

    run_dir = prepare_run_dir(config, resume=resume, overwrite=overwrite)
    run = compile_run(config)
    schedule, seeds = run.schedule, config.num_seeds
    dirs = point_dirs(run, run_dir)
    for d, (_, point) in zip(dirs, run.points, strict=True):
        if d != run_dir:
            write_atomic(d / "config.yaml", dump_yaml(train_config_to_dict(point)))
    state = run.init(run.keys, run.params)
    done_chunks, wall_s = 0, 0.0
    if resume and (run_dir / CHECKPOINT).exists():
        state, meta = load_checkpoint(run_dir / CHECKPOINT, state)
        done_chunks, wall_s = meta["chunks_done"], meta["wall_s"]
        histories = _restore_metrics(dirs, done_chunks)
    else:
        histories = [[] for _ in dirs]
        for d in dirs:
            write_atomic(d / "metrics.jsonl", "")
    texts = [(d / "metrics.jsonl").read_text() for d in dirs]

    bar = tqdm(
        total=schedule.total_env_steps * run.num_runs,
        initial=done_chunks * schedule.steps_per_chunk * run.num_runs,
        unit="step",
        unit_scale=True,
        disable=not config.runner.progress,
        desc=f"{config.name} ({config.algo} on {config.env})",
    )
    for chunk_index in range(done_chunks, schedule.num_chunks):
        if stop_after_chunks is not None and chunk_index - done_chunks >= (
            stop_after_chunks
        ):
            bar.close()
            return {}
        start = time.perf_counter()
        state, metrics = run.chunk(state, run.params)
        metrics = jax.device_get(metrics)
        wall_s += time.perf_counter() - start
        if config.runner.debug:
            debug_check(run, state, chunk_index)
        steps = (chunk_index + 1) * schedule.steps_per_chunk
        for p, d in enumerate(dirs):
            row = _metrics_row(
                metrics, slice(p * seeds, (p + 1) * seeds), chunk_index, steps, wall_s
            )
            histories[p].append(row["mean_return_per_seed"])
            texts[p] += json.dumps(row) + "\n"
            write_atomic(d / "metrics.jsonl", texts[p])
        if config.runner.checkpoint:
            save_checkpoint(
                run_dir / CHECKPOINT,
                state,
                {"chunks_done": chunk_index + 1, "wall_s": wall_s},
            )
        bar.update(schedule.steps_per_chunk * run.num_runs)
        bar.set_postfix(mean_return=_median_or_none(histories[0][-1]))
    bar.close()

    summaries = []
    for (label, _), d, history in zip(run.points, dirs, histories, strict=True):
        final_per_seed = [_last_finite(history, s) for s in range(seeds)]
        summary = {
            "name": config.name,
            "algo": config.algo,
            "env": config.env,
            "num_seeds": seeds,
            "num_envs": config.num_envs,
            "final_mean_return": _median_or_none(final_per_seed),
            "final_mean_return_per_seed": final_per_seed,
            "env_steps": schedule.total_env_steps,
            "env_steps_per_s": schedule.total_env_steps
            * run.num_runs
            / max(wall_s, 1e-9),
            "wall_s": wall_s,
            "compile_s": run.compile_s,
            "traces": run.trace_count,
        }
        if label:
            summary["sweep_point"] = label
        plots.plot_returns(
            d / "metrics.jsonl",
            d / "returns.png",
            title=f"{config.name} {label}: {config.algo} on {config.env}".replace(
                "  ", " "
            ),
        )
        plots.plot_wealth(
            d / "metrics.jsonl", d / "wealth.png", f"{config.name} {label}"
        )
        if d != run_dir:
            write_json_atomic(d / "summary.json", summary)
        summaries.append((label, summary))
    if config.sweep:
        write_sweep_report(run_dir, config, summaries)
    summary = dict(summaries[0][1])
    if config.sweep:
        summary["sweep"] = {
            label: s["final_mean_return_per_seed"] for label, s in summaries
        }
    write_json_atomic(run_dir / "summary.json", summary)
    return summary
