"""run_jobs: results in the jobs' order, and a run that raises names its job, in a pool too."""

from __future__ import annotations

import pytest

from hlmm.jobs import JobFailed, run_jobs


def _square_unless_three(n: int) -> int:
    if n == 3:
        raise ValueError(f"n={n}: refused")
    return n * n


@pytest.mark.parametrize("workers", [1, 2])
def test_results_keep_the_jobs_order(workers: int) -> None:
    assert run_jobs(_square_unless_three, [5, 1, 4, 2], workers, desc="t", progress=False) == [25, 1, 16, 4]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_run_names_its_job_and_keeps_its_error_as_the_cause(workers: int) -> None:
    with pytest.raises(JobFailed, match=r"^3: ValueError: n=3: refused$") as info:
        run_jobs(_square_unless_three, [1, 3, 2, 3], workers, desc="t", progress=False)
    assert info.value.job == 3 and isinstance(info.value.__cause__, ValueError)


def test_a_failing_run_is_named_by_describe() -> None:
    with pytest.raises(JobFailed, match=r"^job number 3: ValueError: n=3: refused$"):
        run_jobs(_square_unless_three, [1, 3], 1, desc="t", progress=False, describe=lambda n: f"job number {n}")
