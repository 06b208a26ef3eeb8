"""``python -m bench.ab``: alternation, medians and ratios, and its refusals (the env runs
themselves are left to the command: a fresh checkout compiles every kernel)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import ab


def test_runs_alternate_and_ratios_are_of_medians_over_runs(monkeypatch, capsys) -> None:
    calls: list[str] = []
    means = {"a": iter([100.0, 130.0, 101.0]), "b": iter([90.0, 91.0, 200.0])}

    def fake(tree: Path, n_steps: int, warmup: int, seed: int) -> tuple[float, float]:
        calls.append(tree.name)
        mean = next(means[tree.name])
        return mean, mean - 10.0

    monkeypatch.setattr(ab, "time_steps", fake)
    res = ab.run_ab(Path("a"), Path("b"), pairs=3, n_steps=10, warmup=0, seed=1)
    assert calls == ["a", "b", "b", "a", "a", "b"]  # A B, B A, A B
    assert (res["A_mean_us"], res["B_mean_us"]) == (101.0, 91.0)  # the medians: one slow run each is ignored
    assert res["mean_ratio"] == pytest.approx(91.0 / 101.0)
    assert res["median_ratio"] == pytest.approx(81.0 / 91.0)
    assert capsys.readouterr().out.count("mean") == 6


def test_a_directory_is_used_as_it_is_and_a_bad_revision_is_named(tmp_path) -> None:
    repo = Path(__file__).resolve().parents[1]
    with ab.checkout(str(tmp_path), repo) as tree:
        assert tree == tmp_path.resolve()
    with pytest.raises(SystemExit, match="no-such-rev-xyz"), ab.checkout("no-such-rev-xyz", repo):
        pass


@pytest.mark.parametrize("args, field", [(["--pairs", "0"], "--pairs=0"), (["--steps", "0"], "--steps=0"),
                                         (["--warmup", "-1"], "--warmup=-1")])
def test_bad_counts_are_refused_by_name(args, field, capsys) -> None:
    with pytest.raises(SystemExit):
        ab.main([".", ".", *args])
    assert field in capsys.readouterr().err
