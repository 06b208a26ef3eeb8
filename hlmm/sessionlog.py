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

Parts
-----
A live session runs for days and writes ~15 MB an hour, so its log can be split into parts of
about ``part_bytes`` each: ``X.jsonl`` is part 1, part k is ``X.part000k.jsonl``, and each part
after the first opens with ``{"type": "session_part", "part": k}``. A finished part is gzipped
(``X.jsonl.gz``, ~5x smaller) in the background while the session goes on; the last part stays
as written. :func:`read_session_log` takes the first part's name, either form, and reads the
parts in order as one log, so ``hlmm audit`` and ``hlmm replay`` see one session.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import gzip
import hashlib
import json
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import IO, Any

from hlmm.instrument import Instrument

FORMAT_VERSION = 1
PART_HEADER = "session_part"
# below this, a part would hold a few hundred lines: a typo, not a choice
MIN_PART_BYTES = 4096
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
    environment use to avoid disk I/O. ``part_bytes`` (with a ``path``) starts a new part once
    the current one holds that many bytes (see the module's "Parts").

    ``live=True`` is for a session trading real money: each line reaches the file as it is
    written (a crash loses none, an audit of the running session sees all), and a write that
    fails (a full disk) does not raise into the trading loop, whose kill switch must still be
    able to close out. It is kept in :attr:`write_error`, said once on stderr, and the log stops
    writing to the file; the runner then stops the session.
    """

    def __init__(self, path: str | Path | None, header: dict[str, Any], keep_in_memory: bool = False,
                 part_bytes: int | None = None, live: bool = False) -> None:
        if part_bytes is not None and (type(part_bytes) is not int or part_bytes < MIN_PART_BYTES):
            raise ValueError(f"part_bytes={part_bytes!r}: expected an integer >= {MIN_PART_BYTES} (bytes) or None")
        self.path = Path(path) if path is not None else None
        self._fh: IO[str] | None = None
        self._hash = hashlib.sha256()
        self.keep_in_memory = keep_in_memory or path is None
        self.records: list[dict[str, Any]] = []
        self.part = 1
        self._part_bytes = part_bytes if self.path is not None else None
        self._part_len = 0
        self._compressing: list[threading.Thread] = []
        self._live = live
        self.write_error: OSError | None = None
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = self._open(self.path)
            except OSError as exc:
                self._lost(exc)
        self._write({"type": "session", "version": FORMAT_VERSION, **_plain(header)})

    def _open(self, path: Path) -> IO[str]:
        return path.open("w", encoding="utf-8", buffering=1 if self._live else -1)

    def _write(self, rec: dict[str, Any]) -> None:
        line = _ENCODER.encode(rec) + "\n"
        self._hash.update(line.encode())
        if self._fh is not None:
            try:
                self._fh.write(line)
                if self._part_bytes is not None:
                    self._part_len += len(line)  # the encoder writes ASCII: characters are bytes
                    if self._part_len >= self._part_bytes:
                        self._next_part()
            except OSError as exc:
                self._lost(exc)
        if self.keep_in_memory:
            self.records.append(rec)

    def _lost(self, exc: OSError) -> None:
        """The file cannot be written: raise, or for a live session record it and stop writing."""
        if not self._live:
            raise exc
        if self.write_error is None:
            self.write_error = exc
            print(f"hlmm: session log {self.path}: {exc}: no more lines are written; the session stops",
                  file=sys.stderr, flush=True)
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None

    def _next_part(self) -> None:
        """Close the full part, gzip it in the background and open the next with its header
        (not part of the digest nor of ``records``: the split is not the session's)."""
        assert self.path is not None and self._fh is not None
        self._fh.close()
        finished = part_path(self.path, self.part)
        worker = threading.Thread(target=compress_part, args=(finished,), name=f"gzip {finished.name}")
        worker.start()
        self._compressing.append(worker)
        self.part += 1
        self._fh = self._open(part_path(self.path, self.part))
        header = _ENCODER.encode({"type": PART_HEADER, "part": self.part}) + "\n"
        self._fh.write(header)
        self._part_len = len(header)

    def write(self, rx: float, rec_type: str, **fields: Any) -> None:
        """An agent or simulator record."""
        self._write({"type": rec_type, "rx": rx, **{k: v if type(v) in _AS_IS else _plain(v) for k, v in fields.items()}})

    def event(self, rx: float, obj: Any) -> None:
        """A venue event or an agent command (any :mod:`hlmm.venue` dataclass)."""
        rec = record_of(obj)
        self._write({"type": rec.pop("type"), "rx": rx, **rec})

    @property
    def sha256(self) -> str:
        """Digest of every record written so far: the sha256 of the log as one file (once
        closed), however it was split into parts."""
        return self._hash.hexdigest()

    def close(self) -> None:
        """Close the file and wait for the finished parts' compression."""
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError as exc:
                self._lost(exc)
            self._fh = None
        for worker in self._compressing:
            worker.join()
        self._compressing.clear()

    def __enter__(self) -> SessionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def part_path(first: Path, part: int) -> Path:
    """The file of part ``part`` (1-based) of the log whose first part is ``first``, as written
    (``.gz`` is added once it is compressed)."""
    if part == 1:
        return first
    return first.with_name(f"{first.stem}.part{part:04d}{first.suffix}")


def compress_part(path: Path) -> None:
    """Gzip a finished part next to itself and remove it. Readers take the plain file while
    it exists, so a crash at any point leaves one complete copy. A failure leaves the part as
    written and says so on stderr: the log is complete either way."""
    tmp = path.with_name(path.name + ".gz.tmp")
    try:
        with path.open("rb") as src, tmp.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, path.with_name(path.name + ".gz"))
        path.unlink()
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        print(f"hlmm: session log part {path} left uncompressed: {exc}", file=sys.stderr)


def session_log_parts(path: str | Path) -> list[Path]:
    """The files of the log whose first part is ``path`` (named as written, or with ``.gz``), in
    order; each as it is on disk now. ``FileNotFoundError`` without a first part,
    ``ValueError`` when a part is missing before a later one."""
    given = Path(path)
    if given.is_dir():
        raise ValueError(f"{given}: a directory, not a session log")
    first = given.with_name(given.name.removesuffix(".gz"))
    files: list[Path] = []
    while True:
        plain = part_path(first, len(files) + 1)
        packed = plain.with_name(plain.name + ".gz")
        found = plain if plain.is_file() else packed if packed.is_file() else None
        if found is None:
            break
        files.append(found)
    if not files:
        raise FileNotFoundError(2, "No such file or directory", str(given))
    prefix, suffix = f"{first.stem}.part", first.suffix
    beyond = []
    for later in first.parent.glob(f"{glob.escape(prefix)}*{glob.escape(suffix)}*"):
        number = later.name[len(prefix):].partition(".")[0]
        if number.isdigit() and int(number) > len(files) and not later.name.endswith(".tmp"):
            beyond.append((int(number), later.name))
    if beyond:
        raise ValueError(f"{given}: part {len(files) + 1} of the session log is missing, but {min(beyond)[1]} is there")
    return files


def instrument_header(instrument: Instrument) -> dict[str, Any]:
    return dataclasses.asdict(instrument)


def _open_part(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    try:
        return path.open(encoding="utf-8")
    except FileNotFoundError:  # a running session gzipped it since the parts were listed
        return gzip.open(path.with_name(path.name + ".gz"), "rt", encoding="utf-8")


def read_session_log(path: str | Path) -> Iterator[dict[str, Any]]:
    """Records of a session log in order, all its parts' (without their part headers); raises
    ``ValueError`` naming the file and line on bad input.

    The last line of the last part may lack its newline: the session is still writing it (an
    audit of a running session), or its writer stopped mid-line. It is left out, and stderr
    says so; anywhere else a line without its end is a damaged log."""
    files = session_log_parts(path)
    for part, file, lineno, line in _lines(files):
        if not line.endswith("\n") and part == len(files) and not file.name.endswith(".gz"):
            print(f"hlmm: {file}:{lineno}: an unfinished last line (still being written, or its writer "
                  f"stopped mid-line) is left out", file=sys.stderr)
            return
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{file}:{lineno}: not JSON ({exc.msg})") from exc
        if not isinstance(rec, dict) or "type" not in rec:
            raise ValueError(f"{file}:{lineno}: record without 'type'")
        if lineno == 1 and part == 1 and (rec["type"] != "session" or rec.get("version") != FORMAT_VERSION):
            hint = " (a later part of a log: read its first part)" if rec["type"] == PART_HEADER else ""
            raise ValueError(
                f"{file}:1: expected a session header of version {FORMAT_VERSION}, got "
                f"type={rec.get('type')!r} version={rec.get('version')!r}{hint}"
            )
        if lineno == 1 and part > 1:
            if rec["type"] != PART_HEADER or rec.get("part") != part:
                raise ValueError(f"{file}:1: expected the header of part {part}, got "
                                 f"type={rec.get('type')!r} part={rec.get('part')!r}")
            continue
        yield rec


def _lines(files: list[Path]) -> Iterator[tuple[int, Path, int, str]]:
    """``(part, file, line number, line)`` over the parts in order. A part that cannot be read as
    text (not gzip, a gzip cut short, not UTF-8) is a ``ValueError`` naming it."""
    for part, file in enumerate(files, 1):
        try:
            with _open_part(file) as fh:
                for lineno, line in enumerate(fh, 1):
                    yield part, file, lineno, line
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise ValueError(f"{file}: not readable as a session log ({exc})") from exc


def locate_record(path: str | Path, record: int) -> str:
    """``file:line`` of the ``record``-th record :func:`read_session_log` yields (1-based), or
    the log's name when it has fewer records."""
    seen = 0
    for part, file, lineno, line in _lines(session_log_parts(path)):
        if not line.strip() or (part > 1 and lineno == 1):
            continue
        seen += 1
        if seen == record:
            return f"{file}:{lineno}"
    return str(path)
