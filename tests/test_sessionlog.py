"""Session logs in parts: a long session's log rolls into parts, the finished ones gzipped, and
every reader sees the parts as the one log that was written."""

from __future__ import annotations

import gzip
import hashlib

import pytest

from hlmm.audit import audit_cli
from hlmm.sessionlog import SessionLog, read_session_log, session_log_parts
from tests.test_audit import random_session

PART_BYTES = 8192


def write_log(path, seconds: int = 400, part_bytes: int | None = PART_BYTES) -> SessionLog:
    with SessionLog(path, {"source": "sim", "seed": 1}, keep_in_memory=True, part_bytes=part_bytes) as log:
        for t in range(seconds):
            log.write(float(t), "cycle", mid=30880 + t % 7, position=t % 11, cap_lots=400, state="ACTIVE", reasons=[])
            log.write(t + 0.5, "timer")
    return log


def test_a_log_in_parts_reads_back_as_the_one_log_that_was_written(tmp_path):
    log = write_log(tmp_path / "s.jsonl")
    files = session_log_parts(tmp_path / "s.jsonl")
    assert log.part == len(files) > 3
    # every part but the last is gzipped once the log is closed; the last stays as written
    assert [f.name for f in files] == ["s.jsonl.gz"] + [f"s.part{k:04d}.jsonl.gz" for k in range(2, len(files))] + [
        f"s.part{len(files):04d}.jsonl"]
    assert sorted(p.name for p in tmp_path.glob("s.*")) == sorted(f.name for f in files), "no plain or temporary leftovers"
    raw = [gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes() for f in files]
    assert all(len(r) < PART_BYTES + 200 for r in raw)
    part_headers = [r.split(b"\n", 1)[0] for r in raw[1:]]
    assert part_headers == [b'{"type":"session_part","part":%d}' % k for k in range(2, len(files) + 1)]
    # the digest is the log's as one file: a split does not change it
    one_file = b"".join([raw[0]] + [r.split(b"\n", 1)[1] for r in raw[1:]])
    assert hashlib.sha256(one_file).hexdigest() == log.sha256 == write_log(tmp_path / "one.jsonl", part_bytes=None).sha256
    assert list(read_session_log(tmp_path / "s.jsonl")) == log.records
    assert list(read_session_log(tmp_path / "s.jsonl.gz")) == log.records, "the first part's name in either form"


def test_a_log_of_one_part_is_one_plain_file_with_the_digest_of_its_bytes(tmp_path):
    log = write_log(tmp_path / "s.jsonl", seconds=5, part_bytes=None)
    assert [p.name for p in tmp_path.iterdir()] == ["s.jsonl"]
    assert hashlib.sha256((tmp_path / "s.jsonl").read_bytes()).hexdigest() == log.sha256


def test_a_missing_part_is_refused_rather_than_silently_ending_the_log(tmp_path):
    write_log(tmp_path / "s.jsonl")
    (tmp_path / "s.part0002.jsonl.gz").unlink()
    with pytest.raises(ValueError, match=r"part 2 of the session log is missing, but s\.part0003\.jsonl\.gz is there"):
        list(read_session_log(tmp_path / "s.jsonl"))


def test_a_later_part_read_on_its_own_names_what_to_read_instead(tmp_path):
    write_log(tmp_path / "s.jsonl")
    with pytest.raises(ValueError, match=r"s\.part0002\.jsonl\.gz:1: .*type='session_part'.*read its first part"):
        list(read_session_log(tmp_path / "s.part0002.jsonl.gz"))


def test_a_part_whose_header_is_not_its_own_is_refused(tmp_path):
    write_log(tmp_path / "s.jsonl")
    last = session_log_parts(tmp_path / "s.jsonl")[-1]
    lines = last.read_text().splitlines(keepends=True)
    last.write_text(lines[1] + "".join(lines[2:]))
    with pytest.raises(ValueError, match=rf"{last.name}:1: expected the header of part \d+, got type='(cycle|timer)'"):
        list(read_session_log(tmp_path / "s.jsonl"))


@pytest.mark.parametrize("part_bytes", [0, 100, 4095, 8192.0, True, "8192"])
def test_a_bad_part_size_is_refused_by_name(tmp_path, part_bytes):
    with pytest.raises(ValueError, match=rf"part_bytes={part_bytes!r}: expected an integer >= 4096"):
        SessionLog(tmp_path / "s.jsonl", {}, part_bytes=part_bytes)
    assert not (tmp_path / "s.jsonl").exists()


def test_a_part_that_cannot_be_compressed_stays_as_written_and_says_so(tmp_path, monkeypatch, capsys):
    def no_space(*_a, **_kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("hlmm.sessionlog.gzip.GzipFile", no_space)
    log = write_log(tmp_path / "s.jsonl")
    files = session_log_parts(tmp_path / "s.jsonl")
    assert [f.suffix for f in files] == [".jsonl"] * log.part
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.name for f in files), "no temporary leftovers"
    assert f"session log part {tmp_path / 's.jsonl'} left uncompressed: [Errno 28] No space left on device" in capsys.readouterr().err
    assert len(list(read_session_log(tmp_path / "s.jsonl"))) == 2 * 400 + 1


def test_the_audit_reads_every_part_and_names_the_part_and_line_of_a_bad_record(tmp_path, capsys):
    whole, parted = tmp_path / "whole.jsonl", tmp_path / "parted.jsonl"
    random_session(whole, seed=4, duration_s=300)
    header, *records = read_session_log(whole)
    with SessionLog(parted, {k: v for k, v in header.items() if k not in ("type", "version")},
                    part_bytes=PART_BYTES * 4) as log:
        for rec in records:
            log.write(rec.pop("rx"), rec.pop("type"), **rec)
    assert log.part > 2
    for path, out in ((whole, "a"), (parted, "b")):
        assert audit_cli(path, tmp_path / out) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(" -> ")[0] == lines[1].split(" -> ")[0], "the same figures from the log in parts"

    last = session_log_parts(parted)[-1]
    text = last.read_text().splitlines(keepends=True)
    text[2] = text[2].replace('"rx":', '"rx":"soon","was":', 1)
    last.write_text("".join(text))
    assert audit_cli(parted, tmp_path / "c") == 2
    assert f"{last}:3: " in capsys.readouterr().err



def test_a_running_sessions_unfinished_last_line_is_left_out_and_said(tmp_path, capsys):
    """An audit of a session still writing: the file ends mid-record (its buffer flushed part of
    a line). Everything before reads; the unfinished line is named on stderr, not an error."""
    log = write_log(tmp_path / "s.jsonl")
    last = session_log_parts(tmp_path / "s.jsonl")[-1]
    whole = last.read_text()
    lines = len(whole.splitlines())
    last.write_text(whole + '{"type":"cycle","rx":400.0,"mid":308')
    assert list(read_session_log(tmp_path / "s.jsonl")) == log.records
    assert f"{last}:{lines + 1}: an unfinished last line" in capsys.readouterr().err


def test_a_line_cut_short_inside_a_finished_part_is_an_error(tmp_path):
    write_log(tmp_path / "s.jsonl")
    first = session_log_parts(tmp_path / "s.jsonl")[0]
    text = gzip.decompress(first.read_bytes())
    first.write_bytes(gzip.compress(text[: text.rindex(b"\n", 0, len(text) - 1) + 20]))
    with pytest.raises(ValueError, match=r"s\.jsonl\.gz:\d+: not JSON"):
        list(read_session_log(tmp_path / "s.jsonl"))


def test_a_part_gzipped_after_the_parts_were_listed_is_read_from_its_gzip(tmp_path, monkeypatch):
    """A running session finishes and gzips a part while an audit reads the parts before it."""
    import hlmm.sessionlog as sessionlog

    log = write_log(tmp_path / "s.jsonl")
    files = session_log_parts(tmp_path / "s.jsonl")
    plain = [f.with_name(f.name.removesuffix(".gz")) for f in files]  # the list as a running session had it
    monkeypatch.setattr(sessionlog, "session_log_parts", lambda _path: plain[:-1] + files[-1:])
    assert list(read_session_log(tmp_path / "s.jsonl")) == log.records


@pytest.mark.parametrize("damage, said", [
    ("not_gzip", "not readable as a session log (Not a gzipped file"),
    ("gzip_cut_short", "not readable as a session log (Compressed file ended before the end-of-stream marker"),
    ("not_utf8", "not readable as a session log ('utf-8' codec can't decode"),
    ("directory", "a directory, not a session log"),
])
def test_an_unreadable_log_is_refused_by_name_not_with_a_traceback(tmp_path, capsys, damage, said):
    write_log(tmp_path / "s.jsonl")
    first = session_log_parts(tmp_path / "s.jsonl")[0]
    target = first
    if damage == "not_gzip":
        first.write_bytes(b"plain text, not gzip\n")
    elif damage == "gzip_cut_short":
        first.write_bytes(first.read_bytes()[:200])
    elif damage == "not_utf8":
        target = tmp_path / "raw.jsonl"
        target.write_bytes(b"\xff\xfe{}\n")
    else:
        target = tmp_path
    with pytest.raises(ValueError) as refused:
        list(read_session_log(target))
    assert str(refused.value).startswith(str(target)) and said in str(refused.value)
    assert audit_cli(target, tmp_path / "audit") == 2
    assert f"hlmm audit: error: {target}" in capsys.readouterr().err


class _FullDisk:
    """A file that takes ``room`` characters, then fails as a full disk does."""

    def __init__(self, room: int) -> None:
        self.room = room

    def write(self, text: str) -> int:
        self.room -= len(text)
        if self.room < 0:
            raise OSError(28, "No space left on device")
        return len(text)

    def close(self) -> None:
        pass


def test_a_live_log_on_a_full_disk_records_the_error_instead_of_raising_into_the_trading_loop(tmp_path, monkeypatch,
                                                                                                capsys):
    monkeypatch.setattr(SessionLog, "_open", lambda self, path: _FullDisk(room=2000))
    log = SessionLog(tmp_path / "s.jsonl", {"source": "live"}, live=True)
    for t in range(100):
        log.write(float(t), "timer")  # never raises
    log.close()
    assert log.write_error is not None and log.write_error.errno == 28
    assert capsys.readouterr().err.count("No space left on device: no more lines are written; the session stops") == 1


def test_a_simulator_log_on_a_full_disk_raises_as_before(tmp_path, monkeypatch):
    monkeypatch.setattr(SessionLog, "_open", lambda self, path: _FullDisk(room=2000))
    log = SessionLog(tmp_path / "s.jsonl", {"source": "sim"})
    with pytest.raises(OSError, match="No space left"):
        for t in range(100):
            log.write(float(t), "timer")


def test_a_live_log_is_written_line_by_line(tmp_path):
    log = SessionLog(tmp_path / "s.jsonl", {"source": "live"}, live=True)
    log.write(1.0, "timer")
    assert (tmp_path / "s.jsonl").read_text().count("\n") == 2, "both lines are on disk before close"
    log.close()
