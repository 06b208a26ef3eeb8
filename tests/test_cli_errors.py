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
