"""The session log: one JSON object per line, written by the simulator and the live bridge alike.

Format (version 1)
------------------
The first line is a header ``{"type": "session", "version": 1, "source": "sim"|"live", ...}``
with the instrument, fees, scenario name, seed, ``agent`` (its kind), ``config_hash`` (the agent
configuration's, as in the summary) and ``cap_lots`` (the configured position cap in lots, which
audits judge positions against; a cycle's ``cap_lots`` is the effective cap). Every later line
has ``"type"`` and ``"rx"`` (the session clock, seconds, when the line was written) and the
fields of the record:

- venue events, as delivered to the agent: ``book``, ``trade``, ``ack``, ``reject``, ``fill``,
  ``canceled``, ``cancel_reject``, ``account``, ``funding``, ``connection``, ``timer``
  (fields of the :mod:`hlmm.venue` dataclass of the same ``kind``);
- agent commands, as sent: ``place``, ``cancel``, ``modify``, ``cancel_all``,
  ``schedule_cancel``, ``query``;
- agent records: ``cycle`` (one decision cycle: market state, signals, quotes, overlay state),
  ``markout`` (a fill's resolved markouts), ``overlay`` (risk state changes with a reason),
  ``kill`` (kill-switch steps), ``alarm``;
- runner records: ``stop`` (``reason`` = ``operator``: the runner stopped the agent, at the
  session's end or on Ctrl-C; trading ends here and the close-out begins);
- simulator ground truth: ``regime`` (a changepoint of the hidden regime), ``venue_fill``
  (a fill as it happened at the venue, before any delivery latency).

Agent record fields (the contract between the agent, which writes them, and ``hlmm audit``):

- ``cycle``: ``mid`` (ticks, ex-own), ``position`` (lots), ``cap_lots`` (effective cap),
  ``state`` (ACTIVE/REDUCING/HALTED), ``reasons`` (list), ``bid_px``/``ask_px``/``bid_sz``/
  ``ask_sz`` (what the overlay allowed; null when that side is not quoted), ``live_bid``/
  ``live_ask`` (bool: an order of ours is resting or in flight on that side after this cycle),
  ``half_spread_bps``, ``glft_half_spread_bps``, ``skew_bps``, ``inventory_skew_bps``,
  ``signal_skew_bps``, ``policy_half_spread_bps``, ``policy_skew_bps``, ``floor_bound`` (bool),
  ``kappa_eff`` (per bps), ``a_eff`` (per s), ``sigma`` (bps/sqrt s), ``cp_prob``, ``alarm``,
  ``toxicity``, ``signals`` ({name: [value, spread_bps, skew_bps, active]}).
- ``markout``: ``fill_t``, ``trade_id``, ``side``, ``px``, ``size``, ``mid_at_placement``,
  ``mid_at_fill``, ``quoted_depth_bps``, ``drift_to_fill_bps``, ``fee_usd``, and per horizon
  (keys are seconds as strings, e.g. ``"5"``): ``markout_bps``, ``as_bps``, ``edge_bps``. Written
  when a fill's last horizon resolves, or at the session's end for the fills still pending, with
  ``null`` for the horizons that had not resolved.
- ``overlay``: ``from``, ``to``, ``reason`` (one record per state change; an emergency pull of a
  side is an ``overlay`` record with ``pull`` naming the side and ``reason`` the trigger).
- ``kill``: ``step`` (triggered/cancel_all/close/confirm_flat/flat/alarm), ``reason``, ``position``.
- ``alarm``: ``name``, ``detail``. The order manager writes ``reconcile_mismatch`` (one per
  correction a venue snapshot forced; ``detail`` starts with the kind: ``position_fixed``,
  ``reconcile_dropped``, ``reconcile_resized`` or ``reconcile_adopted``), ``startup_adoption`` (the
  same for the first snapshot: what a previous session left, adopted) and ``order_blocked``
  (an order its last check refused to send).
- ``summary`` (last line of a finished run): the run's figures as the runner computed them.

Prices are integer ticks and sizes integer lots, as everywhere inside hlmm; the header's
instrument converts them. Floats are written with ``repr`` precision, so the same run gives
byte-identical files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import IO, Any

from hlmm.instrument import Instrument

FORMAT_VERSION = 1
# Exactly these types are written as they are (subclasses such as enums or numpy scalars are
# not: they take the conversions below). Checked first because almost every value is one.
_AS_IS = frozenset({int, float, str, bool, type(None)})
# One encoder for every line (``json.dumps`` with options builds a new one per call).
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _plain(value: Any) -> Any:
    if type(value) in _AS_IS:
        return value
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: _plain(getattr(value, name)) for name in _field_names(type(value))}
    if isinstance(value, tuple | list):
        return [v if type(v) in _AS_IS else _plain(v) for v in value]
    if isinstance(value, dict):
        return {k: v if type(v) in _AS_IS else _plain(v) for k, v in value.items()}
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    return value


def _field_names(cls: type) -> tuple[str, ...]:
    """``dataclasses.fields`` names of ``cls`` in order, looked up once per class."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def record_of(obj: Any) -> dict[str, Any]:
    """A venue event or command as a log record (``type`` = its ``kind``)."""
    rec: dict[str, Any] = {"type": obj.kind}
    for name in _field_names(type(obj)):
        rec[name] = _plain(getattr(obj, name))
    return rec


class SessionLog:
    """Append-only JSON-lines writer. Use as a context manager or call :meth:`close`.

    ``path=None`` keeps records in memory only (``records``), which tests and the RL
    environment use to avoid disk I/O.
    """

    def __init__(self, path: str | Path | None, header: dict[str, Any], keep_in_memory: bool = False) -> None:
        self.path = Path(path) if path is not None else None
        self._fh: IO[str] | None = None
        self._hash = hashlib.sha256()
        self.keep_in_memory = keep_in_memory or path is None
        self.records: list[dict[str, Any]] = []
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("w", encoding="utf-8")
        self._write({"type": "session", "version": FORMAT_VERSION, **_plain(header)})

    def _write(self, rec: dict[str, Any]) -> None:
        line = _ENCODER.encode(rec) + "\n"
        self._hash.update(line.encode())
        if self._fh is not None:
            self._fh.write(line)
        if self.keep_in_memory:
            self.records.append(rec)

    def write(self, rx: float, rec_type: str, **fields: Any) -> None:
        """An agent or simulator record."""
        self._write({"type": rec_type, "rx": rx, **{k: v if type(v) in _AS_IS else _plain(v) for k, v in fields.items()}})

    def event(self, rx: float, obj: Any) -> None:
        """A venue event or an agent command (any :mod:`hlmm.venue` dataclass)."""
        rec = record_of(obj)
        self._write({"type": rec.pop("type"), "rx": rx, **rec})

    @property
    def sha256(self) -> str:
        """Digest of every line written so far (equals the file's sha256 once closed)."""
        return self._hash.hexdigest()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> SessionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def instrument_header(instrument: Instrument) -> dict[str, Any]:
    return dataclasses.asdict(instrument)


def read_session_log(path: str | Path) -> Iterator[dict[str, Any]]:
    """Records of a session log in order; raises ``ValueError`` naming the line on bad input."""
    with Path(path).open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not JSON ({exc.msg})") from exc
            if not isinstance(rec, dict) or "type" not in rec:
                raise ValueError(f"{path}:{lineno}: record without 'type'")
            if lineno == 1 and (rec["type"] != "session" or rec.get("version") != FORMAT_VERSION):
                raise ValueError(
                    f"{path}:1: expected a session header of version {FORMAT_VERSION}, got "
                    f"type={rec.get('type')!r} version={rec.get('version')!r}"
                )
            yield rec
