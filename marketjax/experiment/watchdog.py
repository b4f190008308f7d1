"""A watchdog over the host runner's chunks: a run cannot hang silently.

Each chunk (the compiled call and the ``device_get`` of its metrics) runs in a
daemon worker thread; the main thread waits for it with a limit of
``max(runner.watchdog_s, runner.watchdog_factor x median of the earlier chunks)``
(the first chunk, which has no predecessors, is measured against the compile time).
A chunk past its limit is reported in one line on stderr. With
``runner.watchdog_restart`` the run is then restarted from its last checkpoint
(``train_io`` does that; the runner's resume is bit-exact), otherwise the watchdog
keeps waiting. The stalled thread is abandoned: it is a daemon, so it never keeps
the process alive.

Waiting on an ``Event`` with a timeout (rather than inside ``device_get``) also
keeps Ctrl-C responsive while a chunk runs.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

MAX_RESTARTS = 3  # restarts of one run before the watchdog gives up
# How to run the current command again, resuming (``python -m marketjax.cli ...``
# arguments); set by the command line, None when marketjax is used as a library.
RESTART_COMMAND: list[str] | None = None
REEXECS = "MARKETJAX_REEXECS"  # environment: process restarts so far
FAULT_STALL = "MARKETJAX_FAULT_STALL"  # "<chunk>:<seconds>", for tests only


def restart_process(log: Callable[[str], None]) -> None:
    """Replaces this process by a fresh one running :data:`RESTART_COMMAND` (does
    not return), unless none is set or it already restarted MAX_RESTARTS times.

    A restart inside the process cannot cure a wedged XLA thread pool (the new
    program would queue onto the same threads); a new process can. The run
    directory's lock is released by ``exec`` (its descriptor is close-on-exec).
    """
    count = int(os.environ.get(REEXECS, "0"))
    if RESTART_COMMAND is None or count >= MAX_RESTARTS:
        return
    log(f"watchdog: restarting the process: marketjax {' '.join(RESTART_COMMAND[2:])}")
    sys.stdout.flush()
    sys.stderr.flush()
    env = dict(os.environ, **{REEXECS: str(count + 1)})
    os.execve(sys.executable, [sys.executable, *RESTART_COMMAND], env)


def injected_stall(chunk_index: int) -> None:
    """Sleeps in chunk ``k`` when ``MARKETJAX_FAULT_STALL=k:seconds`` is set, in
    the first process only (a fault injection for tests of the watchdog)."""
    spec = os.environ.get(FAULT_STALL)
    if spec and REEXECS not in os.environ:
        chunk, seconds = spec.split(":")
        if int(chunk) == chunk_index + 1:
            time.sleep(float(seconds))


class ChunkStalled(Exception):
    """A chunk ran past the watchdog's limit and a restart was asked for."""

    def __init__(self, chunk_index: int, waited_s: float):
        super().__init__(f"chunk {chunk_index + 1} stalled after {waited_s:.0f} s")
        self.chunk_index = chunk_index
        self.waited_s = waited_s


class Watchdog:
    """Runs chunks with a time limit derived from the earlier chunks' times.

    Args:
      min_s: the smallest limit, in seconds.
      factor: the limit is ``factor`` times the median earlier chunk time.
      restart: raise :class:`ChunkStalled` at the limit (else report and wait).
      first_s: the reference time of the first chunk (the compile time).
      log: where the one-line report goes.
    """

    def __init__(
        self,
        min_s: float,
        factor: float,
        restart: bool,
        first_s: float = 0.0,
        log: Callable[[str], None] | None = None,
    ):
        self.min_s, self.factor, self.restart = min_s, factor, restart
        self.first_s = first_s
        self.durations: list[float] = []
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))

    def limit(self) -> float:
        """Seconds the next chunk may take before the watchdog speaks."""
        ref = statistics.median(self.durations) if self.durations else self.first_s
        return max(self.min_s, self.factor * ref)

    def run(self, fn: Callable[[], Any], chunk_index: int) -> Any:
        """``fn()`` in a worker thread, watched; returns its result or re-raises."""
        done = threading.Event()
        box: dict = {}

        def work():
            try:
                box["result"] = fn()
            except BaseException as e:  # re-raised in the main thread
                box["error"] = e
            finally:
                done.set()

        limit = self.limit()
        start = time.perf_counter()
        threading.Thread(target=work, daemon=True, name="marketjax-chunk").start()
        if not done.wait(limit):
            waited = time.perf_counter() - start
            ref = statistics.median(self.durations) if self.durations else None
            typical = f"median earlier chunk {ref:.2f} s" if ref else "first chunk"
            action = (
                "restarting from the last checkpoint"
                if self.restart
                else "still waiting (runner.watchdog_restart: true restarts it)"
            )
            self.log(
                f"watchdog: chunk {chunk_index + 1} has run {waited:.0f} s "
                f"(limit {limit:.0f} s, {typical}); {action}"
            )
            if self.restart:
                raise ChunkStalled(chunk_index, waited)
            while not done.wait(1.0):
                pass
        self.durations.append(time.perf_counter() - start)
        if "error" in box:
            raise box["error"]
        return box["result"]
