"""One way to read a TOML file and validate it with pydantic, with errors that name the file, the
field and the value (scenarios, the agent's configuration, training configs)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)

# Every settings model's pydantic config: unknown fields are refused (a typo must not silently fall
# back to a default), so are NaN and infinities (no bound check can hold against them), and a
# validated configuration is frozen.
SETTINGS = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def validation_message(source: str, exc: ValidationError) -> str:
    """One line per error: ``source: field.path = value: message`` (the value is left out for
    whole tables, which would drown the line)."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        value = err.get("input")
        shown = "" if isinstance(value, dict) else f" = {value!r}"
        lines.append(f"{source}: {loc}{shown}: {err['msg']}")
    return "\n".join(lines)


def read_toml(path: Path, what: str, error: type[Exception]) -> dict[str, Any]:
    """The TOML table in ``path``; a missing file or bad TOML raises ``error`` naming the file."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None


def validate(model: type[ModelT], data: dict[str, Any], source: str, error: type[Exception]) -> ModelT:
    """``model`` validated from ``data``; failures raise ``error`` with :func:`validation_message`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(validation_message(source, exc)) from None


def command_error(command: str, message: str) -> int:
    """Report a command's refusal (bad input, nothing run) on stderr as ``hlmm COMMAND: error:
    MESSAGE``, the one form every command uses; returns the exit status 2."""
    print(f"hlmm {command}: error: {message}", file=sys.stderr)
    return 2
