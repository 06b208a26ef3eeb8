"""Independent simulation runs on a process pool, with a progress bar: what ``hlmm stress``,
``hlmm eval`` and ``hlmm ablate`` share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

J = TypeVar("J")
R = TypeVar("R")


class JobFailed(RuntimeError):
    """A run raised: the message names its job (``str(job)``) and the run's error, which is the
    cause, with the worker's traceback when it ran in a pool."""

    def __init__(self, job: object, error: BaseException) -> None:
        super().__init__(f"{job}: {type(error).__name__}: {error}")
        self.job = job


def run_jobs(fn: Callable[[J], R], jobs: Sequence[J], workers: int, desc: str, progress: bool = True) -> list[R]:
    """``[fn(job) for job in jobs]`` on ``workers`` processes (in this one when ``workers`` <= 1
    or there is a single job), in the jobs' order; the bar moves as runs complete. ``fn`` must be
    a module-level function, so the pool can pickle it. A run that raises raises
    :class:`JobFailed` for the first such job in order."""
    from tqdm import tqdm

    if workers <= 1 or len(jobs) == 1:
        out = []
        for j in tqdm(jobs, desc=desc, unit="run", disable=not progress):
            try:
                out.append(fn(j))
            except Exception as exc:
                raise JobFailed(j, exc) from exc
        return out
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        futures = [pool.submit(fn, j) for j in jobs]
        for _ in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="run", disable=not progress):
            pass
        results = []
        for j, f in zip(jobs, futures, strict=True):
            try:
                results.append(f.result())
            except Exception as exc:
                raise JobFailed(j, exc) from exc
        return results
