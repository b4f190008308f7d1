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
import os
import shutil
import sys
import time
from pathlib import Path

import jax
import numpy as np

from marketjax.core.config import ConfigError, dump_yaml
from marketjax.experiment import mesh, plots
from marketjax.experiment import run_dir as rd
from marketjax.experiment.checkpoint import (
    load_checkpoint,
    save_checkpoint,
    write_atomic,
    write_json_atomic,
)
from marketjax.experiment.cpu_pool import pool_record
from marketjax.experiment.loggers import Loggers, check_loggers
from marketjax.experiment.memory import check_memory
from marketjax.experiment.registry import (
    TrainConfig,
    get_algorithm,
    train_config_to_dict,
)
from marketjax.experiment.run_dir import CHECKPOINT, CorruptRunError, RunError
from marketjax.experiment.runner import CompiledRun, compile_run, debug_check
from marketjax.experiment.sweep_report import write_sweep_report
from marketjax.experiment.watchdog import (
    MAX_RESTARTS,
    ChunkStalled,
    Watchdog,
    injected_stall,
    restart_process,
)


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _cpu_devices() -> int:
    """This process's CPU devices (each holds a thread of XLA's CPU pool)."""
    try:
        return len(jax.local_devices(backend="cpu"))
    except RuntimeError:  # no CPU backend
        return 1


def _median_or_none(values: list[float | None]) -> float | None:
    finite = [x for x in values if x is not None]
    return float(np.median(finite)) if finite else None


def _last_finite(history: list[list[float | None]], seed: int) -> float | None:
    for row in reversed(history):
        if row[seed] is not None:
            return row[seed]
    return None


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


def point_dirs(run: CompiledRun, run_dir: Path) -> list[Path]:
    """Where each grid point's files go (the run directory itself without a sweep)."""
    return rd.point_dirs_of(run.config, run_dir)


def watchdog_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class _Progress:
    """What the run directory holds so far (for the one-line messages)."""

    def __init__(self):
        self.saved = 0  # chunks in the checkpoint
        self.written = 0  # metrics lines written by this call


def nonfinite_metrics(metrics: dict) -> list[str]:
    """Metrics holding NaN or inf: every entry, except ``mean_return`` of runs in
    which no episode ended (NaN by definition there)."""
    ended = np.asarray(metrics["episodes"]) > 0
    bad = []
    for key, value in metrics.items():
        value = np.asarray(value)
        if key == "mean_return":
            value = np.where(ended, value, 0.0)
        if not np.all(np.isfinite(value)):
            bad.append(key)
    return bad


def run_notes(config: TrainConfig) -> list[str]:
    """Choices the run makes on the user's behalf (printed before it starts): the
    algorithm's, and an ``env_reset: lazy`` that cannot apply to the env."""
    # Imported here: gymnax initialises the XLA backend on import, and
    # `marketjax train` imports this module before jax.distributed.initialize.
    from marketjax.envs.gymnax_adapter import lazy_resets_apply

    notes = list(getattr(config.algo_config, "notes", lambda c: [])(config))
    if config.env_reset == "lazy" and not lazy_resets_apply(config.env):
        notes.append(
            f"env_reset: lazy does not apply to {config.env} (it defines its own "
            "step); its episodes reset as gymnax's step resets them (eager)"
        )
    return notes


def train_and_write(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    stop_after_chunks: int | None = None,
) -> dict:
    """Trains ``config`` and writes its run directory; returns the summary (the
    first point's, for a sweep, with ``sweep`` listing every point's).

    Before anything compiles: the memory estimate (:mod:`memory`), the run
    directory's lock, and on resume the checkpoint and metrics (:mod:`run_dir`).
    A fresh run that stops before its first chunk is written leaves no directory.

    Args:
      config: a validated training config.
      resume: continue from the run directory's checkpoint.
      overwrite: delete an existing run directory first.
      stop_after_chunks: stop (without a summary) after this many chunks of this
        call, as an interruption would; for tests of ``resume``.

    Raises:
      ConfigError: bad input (exit 2): memory, a run directory in the way or in
        use, a corrupt checkpoint or metrics file.
      RunError: the run stopped (Ctrl-C, disk full, NaN/inf, the watchdog gave
        up), with a one-line message and an exit status.
    """
    if resume and overwrite:  # checked first: overwrite would delete what to resume
        raise ConfigError("--resume and --overwrite exclude each other; pass one")
    check_memory(config)  # before any file is written
    for note in run_notes(config):
        print(f"note: {note}", file=sys.stderr)
    run_dir, created = rd.make_run_dir(config)
    status, owned = _Progress(), created  # a new directory is ours to remove
    try:
        with rd.locked(run_dir):
            rd.check_fresh_or_resumable(
                config, run_dir, resume=resume, overwrite=overwrite
            )
            owned = owned or not resume  # emptied or new: removed if nothing is written
            restarts = 0
            while True:
                try:
                    return _attempt(config, run_dir, resume, stop_after_chunks, status)
                except ChunkStalled as e:
                    restarts += 1
                    if restarts > MAX_RESTARTS:
                        raise RunError(
                            f"watchdog: chunk {e.chunk_index + 1} stalled "
                            f"{restarts} times; giving up (the run directory holds "
                            f"chunk {status.saved}; resume with --resume)"
                        ) from None
                    if restarts >= 2 and config.runner.checkpoint:
                        restart_process(watchdog_log)  # in-process did not cure it
                    resume = config.runner.checkpoint and status.saved > 0
    except KeyboardInterrupt:
        if owned and not status.written:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise RunError(
                "interrupted before the first chunk; nothing kept", 130
            ) from None
        if not config.runner.checkpoint:
            raise RunError(
                f"interrupted after chunk {status.written} (runner.checkpoint is "
                "off, so it cannot resume; --overwrite to start again)",
                130,
            ) from None
        raise RunError(
            f"interrupted after chunk {status.saved}; resume with --resume", 130
        ) from None
    except OSError as e:
        if owned and not status.written:
            shutil.rmtree(run_dir, ignore_errors=True)
        what = e.filename or "a file of the run"
        raise RunError(
            f"cannot write {what} ({e.strerror or e}) after chunk {status.saved}; "
            "free space (or fix permissions) and resume with --resume"
        ) from None
    except BaseException:
        if owned and not status.written:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _load_into(path: Path, template):
    try:
        state, _ = load_checkpoint(path, template)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        why = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise CorruptRunError(
            f"checkpoint is corrupt: {path} does not fit this config ({why}); "
            f"{rd.START_AGAIN}"
        ) from None
    return state


def _attempt(config, run_dir, resume, stop_after_chunks, status) -> dict:
    """One attempt at the run (the watchdog may ask for another, resumed)."""
    from tqdm.auto import tqdm

    dirs = rd.point_dirs_of(config, run_dir)
    meta, done_chunks = rd.check_resume(config, run_dir) if resume else (None, 0)
    check_loggers(config)  # a logger's package missing: before compiling
    loaded: dict = {}

    def restore(template):  # after init, before the chunk compiles
        if meta is not None:
            loaded["state"] = _load_into(run_dir / CHECKPOINT, template)

    run = compile_run(config, before_compile=restore)
    schedule, seeds = run.schedule, config.num_seeds
    if done_chunks > schedule.num_chunks:
        raise CorruptRunError(
            f"checkpoint is corrupt: it holds {done_chunks} chunks of a "
            f"{schedule.num_chunks}-chunk run; {rd.START_AGAIN}"
        )
    status.saved = done_chunks
    # Every check passed: from here on the run directory changes.
    rd.invalidate_summaries(run_dir, dirs)
    if not resume or not (run_dir / rd.VERSION).exists():
        write_atomic(run_dir / "config.yaml", dump_yaml(train_config_to_dict(config)))
        rd.write_version(run_dir, config)
    for d, (_, point) in zip(dirs, run.points, strict=True):
        if d != run_dir:
            write_atomic(d / "config.yaml", dump_yaml(train_config_to_dict(point)))
    wall_s = meta["wall_s"] if meta else 0.0
    texts = []
    for d in dirs:
        lines = rd.check_metrics(d / rd.METRICS, done_chunks, seeds)
        texts.append("".join(line + "\n" for line in lines))
        write_atomic(d / rd.METRICS, texts[-1])
    histories = [
        [json.loads(x)["mean_return_per_seed"] for x in t.splitlines()] for t in texts
    ]
    state = loaded.get("state")
    if state is None:
        state = run.init(run.keys, run.params)
    r = config.runner
    watchdog = Watchdog(r.watchdog_s, r.watchdog_factor, r.watchdog_restart)
    watchdog.first_s = run.compile_s

    bar = tqdm(
        total=schedule.total_env_steps * run.num_runs,
        initial=done_chunks * schedule.steps_per_chunk * run.num_runs,
        unit="step",
        unit_scale=True,
        disable=not config.runner.progress,
        desc=f"{config.name} ({config.algo} on {config.env})",
    )
    loggers = Loggers(config, dirs, run_dir, train_config_to_dict(config))
    try:  # the loggers are closed however the loop ends
        for chunk_index in range(done_chunks, schedule.num_chunks):
            if stop_after_chunks is not None and chunk_index - done_chunks >= (
                stop_after_chunks
            ):
                bar.close()
                return {}

            def call(state=state, k=chunk_index):
                state, metrics = run.chunk(state, run.params)
                metrics = jax.device_get(metrics)
                injected_stall(k)
                return state, metrics

            start = time.perf_counter()
            try:
                state, metrics = watchdog.run(call, chunk_index)
            finally:
                bar.refresh()
            wall_s += time.perf_counter() - start
            if config.runner.debug:
                try:
                    debug_check(run, mesh.gather(state), chunk_index)
                except RuntimeError as e:
                    raise RunError(f"debug check failed: {e}") from None
            bad = nonfinite_metrics(metrics)
            if bad:
                bar.close()
                raise RunError(
                    f"training diverged: {', '.join(bad)} became NaN or inf in chunk "
                    f"{chunk_index + 1} (a learning rate or money too large?); chunks "
                    f"1-{chunk_index} are kept in {run_dir}"
                )
            steps = (chunk_index + 1) * schedule.steps_per_chunk
            for p, d in enumerate(dirs):
                row = _metrics_row(
                    metrics,
                    slice(p * seeds, (p + 1) * seeds),
                    chunk_index,
                    steps,
                    wall_s,
                )
                histories[p].append(row["mean_return_per_seed"])
                texts[p] += json.dumps(row) + "\n"
                write_atomic(d / rd.METRICS, texts[p])
                loggers.log(p, row)  # runner.loggers beyond jsonl, from the host
            status.written += 1
            if config.runner.checkpoint:
                save_checkpoint(
                    run_dir / CHECKPOINT,
                    mesh.gather(state),  # global arrays to host (a collective)
                    {"chunks_done": chunk_index + 1, "wall_s": wall_s},
                )
                status.saved = chunk_index + 1
            bar.update(schedule.steps_per_chunk * run.num_runs)
            bar.set_postfix(mean_return=_median_or_none(histories[0][-1]))
        bar.close()
    finally:
        loggers.close()
    state = mesh.gather(state)  # several processes: every one must call it
    return _write_summaries(config, run, run_dir, dirs, histories, wall_s, state)


def _write_summaries(config, run, run_dir, dirs, histories, wall_s, state) -> dict:
    schedule, seeds = run.schedule, config.num_seeds
    report = get_algorithm(config.algo).report
    summaries = []
    for p, ((label, point), d, history) in enumerate(
        zip(run.points, dirs, histories, strict=True)
    ):
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
            "code_version": rd.code_version(),
            "cpu_pool_threads": pool_record(os.environ, _cpu_devices()),
        }
        if label:
            summary["sweep_point"] = label
        if report is not None:  # the algorithm's own results (e.g. learned bids)
            rows = slice(p * seeds, (p + 1) * seeds)
            point_state = jax.tree.map(lambda x, rows=rows: x[rows], state)
            summary.update(report(point_state, point, d))
        plots.plot_returns(
            d / rd.METRICS,
            d / "returns.png",
            title=f"{config.name} {label}: {config.algo} on {config.env}".replace(
                "  ", " "
            ),
        )
        plots.plot_wealth(
            d / "metrics.jsonl", d / "wealth.png", f"{config.name} {label}"
        )
        if d != run_dir:
            write_json_atomic(d / rd.SUMMARY, summary)
        summaries.append((label, summary))
    if config.sweep:
        write_sweep_report(run_dir, config, summaries)
    summary = dict(summaries[0][1])
    if config.sweep:
        summary["sweep"] = {
            label: s["final_mean_return_per_seed"] for label, s in summaries
        }
    write_json_atomic(run_dir / rd.SUMMARY, summary)
    return summary
