"""The framed result-record format written by workers and read by the dispatcher.

A result file is append-only and has exactly one writer. Each record is::

    b"PJR1" | length: uint32 LE | crc32 of payload: uint32 LE | payload (pickle)

A reader keeps the offset of the first byte it has not consumed. A frame whose bytes
are not all there yet (a writer mid-write, or killed mid-write: a *torn tail*) is left
for the next read; a complete frame whose checksum does not match is skipped and
logged, so one damaged record never hides the ones after it.
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import zlib
from typing import Any

MAGIC = b"PJR1"

# A result travels as a tuple of these fields plus one dict of extras (the error of
# a failure) or None: half the bytes of a dict and three times faster to read.
FIELDS = ("pset_id", "status", "value", "runtime_s", "started", "finished", "host", "pid",
          "stdout", "stderr")
_HEADER = struct.Struct("<4sII")
_MAX_LEN = 1 << 31

log = logging.getLogger("pyjoule")


def frame(obj: Any, by_value: bool = False) -> bytes:
    """Serialise ``obj`` into one framed record (raises if it cannot be pickled).

    ``by_value`` uses cloudpickle, for values whose classes exist only by value in
    this process (defined in the user's ``__main__`` or a notebook); plain pickle
    reads the result back wherever cloudpickle is installed.
    """
    if by_value:
        import cloudpickle

        payload = cloudpickle.dumps(obj, protocol=5)
    else:
        payload = pickle.dumps(obj, protocol=5)
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def append(fd: int, obj: Any) -> None:
    """Write one record with a single ``os.write`` to an ``O_APPEND`` descriptor."""
    data = frame(obj)
    view = memoryview(data)
    while view:  # a regular-file write is rarely short, but a signal can cut it
        view = view[os.write(fd, view):]


def parse(buf: bytes, path: str = "?", raw: bool = False) -> tuple[list[Any], int]:
    """Records complete in ``buf`` and the number of bytes they used.

    Result records come back as dicts, or with ``raw=True`` in their compact tuple
    form (what the dispatcher ingests, without building a dict per record).
    """
    convert = (lambda x: x) if raw else as_dict
    records: list[Any] = []
    pos, size, hsize = 0, len(buf), _HEADER.size
    while pos + hsize <= size:
        magic, length, crc = _HEADER.unpack_from(buf, pos)
        if magic != MAGIC or length > _MAX_LEN:
            nxt = buf.find(MAGIC, pos + 1)
            log.warning("damaged record in %s at byte %d: skipping to next frame", path, pos)
            if nxt < 0:
                return records, size
            pos = nxt
            continue
        end = pos + hsize + length
        if end > size:
            nxt = _next_valid_frame(buf, pos + hsize)
            if nxt < 0:
                break  # torn or still being written: leave it for later
            # a complete frame follows, so the writer moved on: this one is damaged
            log.warning("damaged record in %s at byte %d: skipping to next frame", path, pos)
            pos = nxt
            continue
        payload = buf[pos + hsize:end]
        if zlib.crc32(payload) != crc:
            log.warning("record with a bad checksum in %s at byte %d: ignored", path, pos)
        else:
            try:
                records.append(convert(pickle.loads(payload)))
            except Exception as exc:  # noqa: BLE001 - a record we cannot read is damage
                log.warning("unreadable record in %s at byte %d: %s", path, pos, exc)
        pos = end
    return records, pos


def complete(buf: bytes | bytearray) -> tuple[int, int]:
    """``(frames, bytes)``: how many whole frames ``buf`` starts with, and their
    length; nothing is unpickled (a writer's progress, counted by its reader)."""
    pos, count, size, hsize = 0, 0, len(buf), _HEADER.size
    while pos + hsize <= size:
        _magic, length, _crc = _HEADER.unpack_from(buf, pos)
        if pos + hsize + length > size:
            break
        pos += hsize + length
        count += 1
    return count, pos


def pack(record: dict) -> tuple:
    """The compact form of a result record (see ``FIELDS``)."""
    extra = {k: v for k, v in record.items() if k not in FIELDS and k != "kwargs"} or None
    return tuple(record.get(k) for k in FIELDS) + (extra,)


def as_dict(obj: Any) -> Any:
    """A record as a dict (compact tuples are expanded; anything else is returned)."""
    if type(obj) is tuple and len(obj) == len(FIELDS) + 1:
        record = dict(zip(FIELDS, obj))
        if obj[-1]:
            record.update(obj[-1])
        return record
    return obj


def _next_valid_frame(buf: bytes, start: int) -> int:
    """Offset of the next complete frame with a good checksum after ``start``, or -1."""
    pos = buf.find(MAGIC, start)
    while pos >= 0:
        if pos + _HEADER.size <= len(buf):
            _, length, crc = _HEADER.unpack_from(buf, pos)
            end = pos + _HEADER.size + length
            if end <= len(buf) and zlib.crc32(buf[pos + _HEADER.size:end]) == crc:
                return pos
        pos = buf.find(MAGIC, pos + 1)
    return -1


def read_from(path: str | os.PathLike, offset: int = 0, raw: bool = False,
              limit: int | None = None) -> tuple[list[Any], int]:
    """Complete records of ``path`` after ``offset``, and the new offset; with
    ``limit``, those in the next ``limit`` bytes (at least one record, however big):
    a reader that fell behind by a million records takes them in bounded bites."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            buf = fh.read() if limit is None else fh.read(limit)
            records, used = parse(buf, str(path), raw)
            if not used and limit is not None and len(buf) == limit:  # one big record
                buf += fh.read()
                records, used = parse(buf, str(path), raw)
    except FileNotFoundError:
        return [], offset
    return records, offset + used
