"""Every command refuses bad input the same way: nothing on stdout (which carries results, often
JSON), one ``hlmm COMMAND: error: ...`` line on stderr naming the bad value, exit status 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hlmm.cli import app

MISSING = "/nonexistent/hlmm-test-input"

REFUSALS = [
    (["sim", "run", "nosuch"], "sim run", "'nosuch'"),
    (["stress", "nosuch"], "stress", "'nosuch'"),
    (["ablate", "--scenarios", "nosuch", "--seeds", "1"], "ablate", "'nosuch'"),
    (["ablate", "--signals", "nosuch", "--seeds", "1"], "ablate", "'nosuch'"),
    (["train", MISSING + ".toml"], "train", MISSING),
    (["eval", MISSING + ".npz", "--seeds", "1"], "eval", MISSING),
    (["replay", MISSING + ".jsonl"], "replay", MISSING),
    (["replay", MISSING + ".jsonl", "--cadence-s", "0"], "replay", "cadence_s=0.0"),
    (["audit", MISSING + ".jsonl"], "audit", MISSING),
    (["live", "--venue", "local", "--scenario", "nosuch"], "live", "'nosuch'"),
    (["live", "--venue", "nosuch"], "live", "'nosuch'"),
    (["venue", "serve", "--host", "8.8.8.8"], "venue serve", "'8.8.8.8'"),
    (["flatten", "--venue", "mainnet"], "flatten", "--i-understand-this-trades-real-money"),
]


@pytest.mark.parametrize(("argv", "command", "named"), REFUSALS, ids=[" ".join(argv) for argv, _, _ in REFUSALS])
def test_a_refusal_is_one_stderr_line_naming_the_value_and_exit_2(argv: list[str], command: str, named: str) -> None:
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith(f"hlmm {command}: error: "), result.stderr
    assert named in result.stderr


OUTPUTS = [
    (["sim", "run", "calm", "--out", "{file}"], "--out"),
    (["demo", "--out", "{file}/below"], "--out"),
    (["audit", MISSING + ".jsonl", "--out", "{file}"], "--out"),
    (["live", "--venue", "local", "--out", "{file}"], "--out"),
    (["stress", "calm", "--report", "{file}"], "--report"),
    (["stress", "calm", "--json", "{file}/x.json"], "--json"),
    (["chaos", "--runs", "1", "--json", "{file}/x.json"], "--json"),
    (["replay", MISSING + ".jsonl", "--json", "{dir}"], "--json"),
    (["bench", "--quick", "--json", "{dir}"], "--json"),
]


@pytest.mark.parametrize(("argv", "option"), OUTPUTS, ids=[" ".join(argv[:2]) + " " + opt for argv, opt in OUTPUTS])
def test_an_output_path_that_cannot_be_written_is_refused_before_the_command_runs(tmp_path, argv, option) -> None:
    """An --out that is a file, a --json below a file or naming a directory: refused up front
    (exit 2, the option named), so no run's figures are computed and then lost."""
    afile = tmp_path / "afile"
    afile.write_text("")
    args = [a.format(file=afile, dir=tmp_path) for a in argv]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert f"Invalid value for '{option}'" in result.stderr and result.stdout == ""


def test_a_file_system_error_during_a_command_is_one_line_naming_the_path(monkeypatch, capsys) -> None:
    import hlmm.audit
    from hlmm.cli import main

    for error, code in ((OSError(28, "No space left on device", "/srv/out/report.md"), 1),  # a failed run
                        (FileExistsError(17, "File exists", "/srv/out/report.md"), 2)):  # a path that cannot be used

        def fail(*_a, error=error, **_kw):
            raise error

        monkeypatch.setattr(hlmm.audit, "audit_cli", fail)
        with pytest.raises(SystemExit) as ended:
            main(["audit", MISSING + ".jsonl"])
        assert ended.value.code == code
        assert capsys.readouterr().err == f"hlmm audit: error: /srv/out/report.md: {error.strerror}\n"
