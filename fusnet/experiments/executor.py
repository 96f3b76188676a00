"""One run executor: unfinished runs trained here one after another (the notebooks:
:func:`ensure_runs`) or in child processes (``scripts/baselines_parallel.py``), finished
ones read back.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from fusnet.experiments.config import ExperimentConfig
from fusnet.experiments.runs import RunRecord, RunRequest, ensure_run, is_finished, request_config

logger = logging.getLogger(__name__)

DEADLINE_ERROR = "not finished by the deadline"


@dataclass
class Execution:
    """The finished runs, in order, and ``{"request", "error"}`` per run not finished."""

    records: list[RunRecord] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)


class RunExecutor:
    """Trains the unfinished runs of ``exp``'s requests here (``workers`` None) or in
    ``workers`` child processes of ``threads`` torch threads. After ``deadline``
    (``time.monotonic()``) no run is started nor waited for: those left are failures, and
    :meth:`close` ends the children. ``keep_going``: a failed run is recorded, not raised."""

    def __init__(self, exp: ExperimentConfig, workers: int | None = None, threads: int = 1,
                 deadline: float = math.inf, keep_going: bool = False) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be None or at least 1, got {workers}")
        self.exp, self.workers, self.threads = exp, workers, threads
        self.deadline, self.keep_going = deadline, keep_going
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> RunExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, requests: Sequence[RunRequest]) -> Execution:
        """Every request's finished run: read back, resumed or trained now."""
        return (self._run_here if self.workers is None else self._run_in_children)(requests)

    def close(self) -> None:
        """Shut the child processes down; past the deadline, end those still training."""
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        if time.monotonic() < self.deadline:
            pool.shutdown()
            return
        children = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)  # runs still going are abandoned
        for child in children:
            child.terminate()

    def _finished(self, done: Execution, record: RunRecord, n: int) -> None:
        done.records.append(record)
        logger.info("[%d/%d] %s %d bits %s: test mAP %.4f (index ties)%s", len(done.records), n,
                    record.dataset, record.bits, record.label, record.map_index_ties,
                    " (finished before)" if record.reused else "")

    def _run_here(self, requests: Sequence[RunRequest]) -> Execution:
        done = Execution()
        for request in requests:
            if time.monotonic() >= self.deadline:
                done.failures.append({"request": repr(request), "error": DEADLINE_ERROR})
                continue
            try:
                record = ensure_run(self.exp, request)
            except Exception as exc:
                self._failed(done, request, exc)
                continue
            self._finished(done, record, len(requests))
        return done

    def _run_in_children(self, requests: Sequence[RunRequest]) -> Execution:
        done, todo = Execution(), []
        for request in requests:  # finished runs are read here, not sent to a child
            try:
                finished = is_finished(Path(request_config(self.exp, request).output_dir))
            except Exception as exc:  # a wrong config: the run cannot start
                self._failed(done, request, exc)
                continue
            if finished:
                self._finished(done, ensure_run(self.exp, request), len(requests))
            else:
                todo.append(request)
        futures: dict[Future, RunRequest] = {
            self._children().submit(ensure_run, self.exp, r): r for r in todo
        }
        pending = set(futures)
        while pending:
            left = self.deadline - time.monotonic()
            if left <= 0:
                break
            finished, pending = wait(pending, timeout=left if math.isfinite(left) else None,
                                     return_when=FIRST_COMPLETED)
            for future in finished:
                try:
                    record = future.result()
                except Exception as exc:  # one failed run must not lose the others
                    self._failed(done, futures[future], exc)
                    continue
                self._finished(done, record, len(requests))
        for future in pending:
            future.cancel()
            done.failures.append({"request": repr(futures[future]), "error": DEADLINE_ERROR})
        return done

    def _children(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"),
                                             initializer=_child_init,
                                             initargs=(self.threads, os.getpid()))
        return self._pool

    def _failed(self, done: Execution, request: RunRequest, exc: Exception) -> None:
        if not self.keep_going:
            raise exc
        logger.error("FAILED %s: %r", request, exc)
        done.failures.append({"request": repr(request), "error": repr(exc)})


def _child_init(threads: int, driver: int) -> None:
    """Die with the driver (prctl PR_SET_PDEATHSIG; a watchdog thread can wait for the GIL
    for minutes), so no orphan writes into a run folder the next driver resumes."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != driver:  # it died before the request
        os._exit(1)
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING)


def ensure_runs(exp: ExperimentConfig, requests: Sequence[RunRequest], workers: int | None = None,
                threads: int = 1) -> list[RunRecord]:
    """:func:`~fusnet.experiments.runs.ensure_run` for each request (``workers``, ``threads``:
    :class:`RunExecutor`'s), logging mAP; the records in the order the runs finished."""
    with RunExecutor(exp, workers=workers, threads=threads) as executor:
        return executor.run(requests).records

