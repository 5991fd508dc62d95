"""The framed result-record format (pyjoule._records): round trip, torn tails, damage."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from pyjoule import _records
from pyjoule._records import MAGIC, frame, parse, read_from

RECORDS = [
    {"pset_id": "a", "status": "done", "value": 1.5},
    {"pset_id": "b", "status": "failed", "value": None, "message": "boom\n\x00é"},
    {"pset_id": "c", "status": "done", "value": {"arr": np.arange(5.0), "s": "x" * 1000}},
    {"pset_id": "d", "status": "done", "value": b"PJR1 inside a payload"},
]


def _same(a, b) -> bool:
    """Equality that also works for dicts holding numpy arrays."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (type(a) is type(b) and a.dtype == b.dtype
                and np.array_equal(a, b))
    return type(a) is type(b) and a == b


def _assert_records(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert _same(g, w), (g, w)


def test_frame_starts_with_magic_and_parse_round_trips():
    buf = b"".join(frame(r) for r in RECORDS)
    assert buf.startswith(MAGIC)
    got, used = parse(buf)
    _assert_records(got, RECORDS)
    assert used == len(buf)


def test_read_from_round_trip_and_incremental_offsets(tmp_path):
    path = tmp_path / "w.rec"
    first, second = RECORDS[:2], RECORDS[2:]
    path.write_bytes(b"".join(frame(r) for r in first))
    got, offset = read_from(path)
    _assert_records(got, first)
    assert offset == path.stat().st_size

    with open(path, "ab") as fh:
        fh.write(b"".join(frame(r) for r in second))
    got, offset2 = read_from(path, offset)
    _assert_records(got, second)  # only the new ones
    assert offset2 == path.stat().st_size

    got, offset3 = read_from(path, offset2)  # nothing new
    assert got == [] and offset3 == offset2


def test_read_from_with_a_limit_takes_the_records_in_bites(tmp_path):
    """A reader far behind (a million records) reads them in bounded bites: each bite
    ends at a whole record, the next one starts where it ended, none is lost."""
    path = tmp_path / "w.rec"
    records = [{"pset_id": f"p{i}", "status": "done", "value": i} for i in range(200)]
    path.write_bytes(b"".join(frame(r) for r in records))
    limit = len(frame(records[0])) * 7 + 3  # seven records and part of the eighth
    got, offset, bites = [], 0, 0
    while True:
        new, offset = read_from(path, offset, limit=limit)
        if not new:
            break
        assert len(new) <= 7
        got.extend(new)
        bites += 1
    _assert_records(got, records)
    assert offset == path.stat().st_size and bites > 1


def test_read_from_with_a_limit_still_reads_a_record_bigger_than_it(tmp_path):
    path = tmp_path / "w.rec"
    big = {"pset_id": "big", "status": "done", "value": "x" * 10_000}
    path.write_bytes(frame(big) + frame(RECORDS[0]))
    got, offset = read_from(path, 0, limit=100)
    assert got and _same(got[0], big)
    more, offset = read_from(path, offset, limit=100)
    _assert_records(got + more, [big, RECORDS[0]])
    assert offset == path.stat().st_size


def test_append_writes_readable_frames(tmp_path):
    path = tmp_path / "w.rec"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for rec in RECORDS:
            _records.append(fd, rec)
    finally:
        os.close(fd)
    got, offset = read_from(path)
    _assert_records(got, RECORDS)
    assert offset == path.stat().st_size


def test_frame_of_unpicklable_object_raises():
    import threading

    with pytest.raises(TypeError, match="pickle"):
        frame({"value": threading.Lock()})


@pytest.mark.parametrize("cut", [1, 5, 11, 12, 13, "mid", -1])
def test_torn_tail_is_left_for_later_then_read(tmp_path, cut):
    """A file truncated mid-frame (header or payload) yields the complete records only;
    the offset stays before the torn frame, and once the rest is there it is read."""
    path = tmp_path / "w.rec"
    whole = [frame(r) for r in RECORDS[:3]]
    last = whole[-1]
    cut = len(last) // 2 if cut == "mid" else (len(last) + cut if cut < 0 else cut)
    assert 0 < cut < len(last)
    head = b"".join(whole[:-1])
    path.write_bytes(head + last[:cut])

    got, offset = read_from(path)
    _assert_records(got, RECORDS[:2])
    assert offset == len(head)

    got, again = read_from(path, offset)  # still torn: nothing, offset unchanged
    assert got == [] and again == offset

    with open(path, "ab") as fh:
        fh.write(last[cut:])
    got, offset = read_from(path, offset)
    _assert_records(got, RECORDS[2:3])
    assert offset == path.stat().st_size


def test_bad_checksum_frame_is_skipped_and_next_record_read(tmp_path, caplog):
    good1, bad, good2 = (frame(r) for r in RECORDS[:3])
    bad = bytearray(bad)
    bad[-3] ^= 0xFF  # damage the payload, same length: a complete frame
    path = tmp_path / "w.rec"
    path.write_bytes(good1 + bytes(bad) + good2)
    with caplog.at_level(logging.WARNING, logger="pyjoule"):
        got, offset = read_from(path)
    _assert_records(got, [RECORDS[0], RECORDS[2]])
    assert offset == path.stat().st_size  # the damaged frame is consumed, not waited for
    assert any(r.name == "pyjoule" and r.levelno == logging.WARNING for r in caplog.records)


@pytest.mark.parametrize("garbage", [
    b"\x00" * 37,                       # a hole of zeros (crashed client on a cluster FS)
    b"junk",                            # shorter than a header
    b"PJR",                             # a partial magic
    os.urandom(300).replace(MAGIC, b"XXXX"),
])
def test_garbage_between_frames_is_skipped_to_next_magic(tmp_path, garbage):
    path = tmp_path / "w.rec"
    frames = [frame(r) for r in RECORDS]
    path.write_bytes(frames[0] + garbage + frames[1] + frames[2] + garbage + frames[3])
    got, offset = read_from(path)
    _assert_records(got, RECORDS)
    assert offset == path.stat().st_size


def test_garbage_at_start_of_file_is_skipped(tmp_path):
    path = tmp_path / "w.rec"
    path.write_bytes(b"\xff" * 20 + frame(RECORDS[0]))
    got, _ = read_from(path)
    _assert_records(got, RECORDS[:1])


def test_damaged_length_field_does_not_hide_later_records(tmp_path):
    frames = [frame(r) for r in RECORDS[:3]]
    damaged = bytearray(frames[1])
    damaged[4:8] = (10**6).to_bytes(4, "little")  # claims 1 MB; the file is complete
    path = tmp_path / "w.rec"
    path.write_bytes(frames[0] + bytes(damaged) + frames[2])
    got, _ = read_from(path)
    _assert_records(got, [RECORDS[0], RECORDS[2]])


def test_missing_file_returns_no_records(tmp_path):
    assert read_from(tmp_path / "nope.rec") == ([], 0)
    assert read_from(tmp_path / "nope.rec", 123) == ([], 123)


def test_empty_file_returns_no_records(tmp_path):
    path = tmp_path / "w.rec"
    path.write_bytes(b"")
    assert read_from(path) == ([], 0)
