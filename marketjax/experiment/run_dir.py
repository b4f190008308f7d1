"""A run directory that cannot lie: its lock, its version record, and the checks that
a resume makes before anything compiles.

- ``.lock``: ``fcntl.flock`` held for the whole run, so two ``--resume`` of one run
  cannot both write it.
- ``version.json``: the code version (``marketjax.__version__`` and a hash of the
  package's source files) and the config schema's hash; ``compare`` re-runs a
  finished run whose record differs.
- A resume reads (never writes) the checkpoint and ``metrics.jsonl`` first: a
  missing checkpoint beside written metrics, an empty, truncated, random or foreign
  checkpoint, or a damaged metrics line is one line ("... is corrupt: ...;
  --overwrite to start again", exit 2) and leaves every file as it was.
- ``summary.json`` marks a finished run; it is deleted before a (re)run writes its
  first metrics line, so a summary never sits beside metrics of another attempt.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import os
import shutil
import typing
from pathlib import Path

from flax import serialization

import marketjax
from marketjax.core.config import ConfigError, dump_yaml, load_yaml
from marketjax.core.schema import RunnerConfig, TrainConfig
from marketjax.experiment.checkpoint import write_json_atomic
from marketjax.experiment.registry import (
    get_algorithm,
    parse_train_config,
    sweep_points,
    train_config_to_dict,
)

CHECKPOINT = "checkpoint.msgpack"
LOCK = ".lock"
VERSION = "version.json"
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
START_AGAIN = "--overwrite to start again"


class RunError(Exception):
    """A run stopped for a reason the user can act on: one line, an exit status."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class CorruptRunError(ConfigError):
    """A file of the run directory cannot be what a run wrote (exit status 2)."""


@functools.cache
def code_version() -> str:
    """``<__version__>+<12 hex digits>``: the version and a hash of every ``.py``
    file of the package (path and bytes), so any edit of the code changes it."""
    root = Path(marketjax.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return f"{marketjax.__version__}+{digest.hexdigest()[:12]}"


def _describe_schema(cls: type) -> list:
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        default = None if f.default is dataclasses.MISSING else repr(f.default)
        meta = {k: repr(v) for k, v in sorted(f.metadata.items()) if k != "doc"}
        rows.append([f.name, repr(hints[f.name]), default, meta])
    return rows


def schema_version(config: TrainConfig) -> str:
    """A hash of the config schema a run was parsed with (the keys, types, defaults
    and ranges of the top level, ``runner:`` and the algorithm's section)."""
    algo_class = get_algorithm(config.algo).config_class
    text = json.dumps(
        [_describe_schema(c) for c in (TrainConfig, RunnerConfig, algo_class)]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def version_record(config: TrainConfig) -> dict:
    """What ``version.json`` holds for a run of ``config`` with this code."""
    return {"code": code_version(), "schema": schema_version(config)}


def version_change(run_dir: Path, config: TrainConfig) -> str | None:
    """Why the run in ``run_dir`` was made by other code or schema (None: it was
    not)."""
    path = run_dir / VERSION
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return "it has no readable version.json"
    now = version_record(config)
    if not isinstance(saved, dict):
        return "its version.json is damaged"
    if saved.get("code") != now["code"]:
        return f"the code changed ({saved.get('code')} -> {now['code']})"
    if saved.get("schema") != now["schema"]:
        return f"the config schema changed ({saved.get('schema')} -> {now['schema']})"
    return None


@contextlib.contextmanager
def locked(run_dir: Path):
    """Holds ``run_dir/.lock`` (``fcntl.flock``, exclusive) while the body runs.

    Raises:
      ConfigError: another process holds the lock.
    """
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"run directory {run_dir} is in use by another process (it holds "
                f"{run_dir / LOCK}); wait for it to finish or stop it"
            ) from None
        yield
    finally:
        os.close(fd)


def point_dirs_of(config: TrainConfig, run_dir: Path) -> list[Path]:
    """Where each grid point's files go (the run directory itself without a sweep)."""
    if not config.sweep:
        return [run_dir]
    return [run_dir / label for label, _ in sweep_points(config)]


def make_run_dir(config: TrainConfig) -> tuple[Path, bool]:
    """Creates ``<out_dir>/<name>``; returns it and whether it is new.

    Raises:
      ConfigError: naming ``runner.out_dir`` when it cannot be created or written
        (a read-only folder, a file in the way).
    """
    run_dir = Path(config.runner.out_dir) / config.name
    existed = run_dir.is_dir()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / LOCK
        probe.touch()
        if not os.access(run_dir, os.W_OK):
            raise PermissionError(13, "Permission denied", str(run_dir))
    except OSError as e:
        reason = e.strerror or type(e).__name__
        if isinstance(e, (FileExistsError, NotADirectoryError)):
            reason = "a file is in the way"
        raise ConfigError(
            f"'runner.out_dir': cannot create {run_dir} ({reason})"
        ) from None
    return run_dir, not existed


def check_fresh_or_resumable(
    config: TrainConfig, run_dir: Path, *, resume: bool, overwrite: bool
) -> None:
    """Refuses to clobber a run; on resume, checks the saved config (read only)."""
    if resume and overwrite:  # checked first: overwrite would delete what to resume
        raise ConfigError("--resume and --overwrite exclude each other; pass one")
    entries = [p for p in run_dir.iterdir() if p.name != LOCK]
    if overwrite:
        for p in entries:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        return
    if resume:
        saved = run_dir / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"cannot resume: {saved} does not exist")
        if not same_config(saved, config):
            raise ConfigError(f"cannot resume: the config differs from {saved}")
    elif entries:
        state = "finished" if (run_dir / SUMMARY).exists() else "interrupted"
        raise ConfigError(
            f"run directory {run_dir} exists ({state}); pass --resume to continue "
            "it, --overwrite to replace it, or choose another name"
        )


def same_config(saved: Path, config: TrainConfig) -> bool:
    """Whether the run's ``config.yaml`` is ``config``, compared as this code
    resolves it: a key added to the schema after the run was written (absent from
    its file) takes its default, which keeps the earlier behaviour (``env_reset:
    eager``), so adding a key does not make every older run unresumable.

    Raises:
      ConfigError: the saved file no longer parses (one line naming it).
    """
    text = dump_yaml(train_config_to_dict(config))
    if saved.read_text() == text:
        return True
    try:
        resolved = parse_train_config(load_yaml(saved))
    except ConfigError as e:
        raise ConfigError(f"cannot resume: {saved}: {e}") from None
    return dump_yaml(train_config_to_dict(resolved)) == text


def read_checkpoint_payload(path: Path) -> tuple[dict, dict]:
    """``(state dict, meta)`` of a checkpoint file, checked before compiling.

    Raises:
      CorruptRunError: the file is empty, truncated, not msgpack, or not a
        checkpoint of this runner.
    """
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CorruptRunError(
            f"checkpoint is corrupt: {path}: cannot read ({e.strerror}); {START_AGAIN}"
        ) from None
    if not raw:
        raise CorruptRunError(f"checkpoint is corrupt: {path} is empty; {START_AGAIN}")
    try:
        payload = serialization.msgpack_restore(raw)
    except Exception as e:  # msgpack raises several unrelated types
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CorruptRunError(
            f"checkpoint is corrupt: {path} is not msgpack ({why}); {START_AGAIN}"
        ) from None
    try:
        state, meta = payload["state"], json.loads(payload["meta"])
        done = meta["chunks_done"]
        ok = isinstance(state, dict) and isinstance(done, int) and done >= 0
        ok = ok and isinstance(meta["wall_s"], (int, float))
    except (TypeError, KeyError, ValueError):
        ok = False
    if not ok:
        raise CorruptRunError(
            f"checkpoint is corrupt: {path} is not a marketjax checkpoint; "
            f"{START_AGAIN}"
        )
    return state, meta


def check_metrics(path: Path, done_chunks: int, num_seeds: int) -> list[str]:
    """The first ``done_chunks`` lines of a metrics file, each checked.

    Raises:
      CorruptRunError: the file is missing or short, or a line is not a metrics row.
    """
    lines = path.read_text().splitlines() if path.is_file() else []
    if len(lines) < done_chunks:  # metrics are written before the checkpoint
        raise CorruptRunError(
            f"{path} is corrupt: it holds {len(lines)} of the {done_chunks} chunks "
            f"in the checkpoint; {START_AGAIN}"
        )
    for i, line in enumerate(lines[:done_chunks]):
        try:
            row = json.loads(line)
            ok = len(row["mean_return_per_seed"]) == num_seeds
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise CorruptRunError(
                f"{path} is corrupt: line {i + 1} is not a metrics row; {START_AGAIN}"
            )
    return lines[:done_chunks]


def written_chunks(dirs: list[Path]) -> int:
    """How many metrics lines the run's files hold (the most of any point)."""
    counts = [
        len((d / METRICS).read_text().splitlines()) if (d / METRICS).is_file() else 0
        for d in dirs
    ]
    return max(counts, default=0)


def check_resume(config: TrainConfig, run_dir: Path) -> tuple[dict | None, int]:
    """What a resume continues from, checked without writing: ``(meta, chunks)``.

    ``meta`` is None when there is no checkpoint and no chunk was written (a run
    interrupted while compiling starts again from chunk 0).

    Raises:
      CorruptRunError: see :func:`read_checkpoint_payload` and
        :func:`check_metrics`; or a missing checkpoint beside written metrics.
    """
    dirs = point_dirs_of(config, run_dir)
    path = run_dir / CHECKPOINT
    if not path.exists():
        written = written_chunks(dirs)
        if written:
            raise CorruptRunError(
                f"cannot resume: {path} is missing but {dirs[0] / METRICS} holds "
                f"{written} chunks; {START_AGAIN}"
            )
        return None, 0
    _, meta = read_checkpoint_payload(path)
    for d in dirs:
        check_metrics(d / METRICS, meta["chunks_done"], config.num_seeds)
    return meta, meta["chunks_done"]


def invalidate_summaries(run_dir: Path, dirs: list[Path]) -> None:
    """Deletes every ``summary.json`` of the run (each unlink is atomic)."""
    for d in {run_dir, *dirs}:
        (d / SUMMARY).unlink(missing_ok=True)


def write_version(run_dir: Path, config: TrainConfig) -> None:
    write_json_atomic(run_dir / VERSION, version_record(config))
