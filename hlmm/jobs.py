"""Independent simulation runs on a process pool, with a progress bar: what ``hlmm stress``,
``hlmm eval`` and ``hlmm ablate`` share."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import partial
from typing import TypeVar

from hlmm.validation import command_error

J = TypeVar("J")
R = TypeVar("R")


class JobFailed(RuntimeError):
    """A run raised: the message names its job (as ``described``) and the run's error, which is
    the cause, with the worker's traceback when it ran in a pool."""

    def __init__(self, job: object, error: BaseException, described: str) -> None:
        super().__init__(f"{described}: {type(error).__name__}: {error}")
        self.job = job


def report_failure(command: str, failure: JobFailed) -> int:
    """The failed run's traceback (the worker's, when it ran in a pool), then ``hlmm COMMAND:
    error: a run failed: JOB: ERROR``; returns the exit status 2."""
    traceback.print_exception(failure.__cause__, file=sys.stderr)
    return command_error(command, f"a run failed: {failure}")


def run_jobs(fn: Callable[[J], R], jobs: Sequence[J], workers: int, desc: str, progress: bool = True,
             describe: Callable[[J], str] = str) -> list[R]:
    """``[fn(job) for job in jobs]`` on ``workers`` processes (in this one when ``workers`` <= 1
    or there is a single job), in the jobs' order; the bar moves as runs complete. ``fn`` must be
    a module-level function, so the pool can pickle it. A run that raises raises
    :class:`JobFailed` for the first such job in order, named by ``describe(job)``."""
    from tqdm import tqdm

    def result(job: J, get: Callable[[], R]) -> R:
        try:
            return get()
        except Exception as exc:
            raise JobFailed(job, exc, describe(job)) from exc

    if workers <= 1 or len(jobs) == 1:
        return [result(j, partial(fn, j)) for j in tqdm(jobs, desc=desc, unit="run", disable=not progress)]
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        futures = [pool.submit(fn, j) for j in jobs]
        for _ in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="run", disable=not progress):
            pass
        return [result(j, f.result) for j, f in zip(jobs, futures, strict=True)]
