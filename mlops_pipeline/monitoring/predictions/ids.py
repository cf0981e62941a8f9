"""Batch and request ids: a request id names its record, so feedback finds its row by primary key.

A batch id is a time-ordered UUIDv7 (hex) whose low `RECORD_BITS` bits are zero; the request id of
a record is its batch id with the record's index in those bits. So ids sort by time and then by
record, need no per-record index, and are 32 hex characters like any UUID.
"""

from __future__ import annotations

import os
import time

#: The low bits of a request id that number the records of its batch.
RECORD_BITS = 24
#: The most records one batch (one request) can hold.
MAX_BATCH_RECORDS = 1 << RECORD_BITS
_RECORD_HEX = RECORD_BITS // 4


def new_batch_id() -> str:
    """A time-ordered batch id: UUIDv7 layout (48-bit Unix milliseconds, version 7, random bits,
    RFC 9562 variant) with the low 24 bits zero, left for the record index.

    Time-ordered because the batch id leads the primary key: random ids land all over the B-tree,
    so every insert and WAL checkpoint touches pages everywhere; time-ordered ids append.
    """
    raw = bytearray(os.urandom(16))
    raw[:6] = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    raw[6] = (raw[6] & 0x0F) | 0x70
    raw[8] = (raw[8] & 0x3F) | 0x80
    raw[13:] = b"\0\0\0"
    return raw.hex()


_index_hex: list[str] = []


def request_ids(batch_id: str, n: int) -> list[str]:
    """The request ids of a batch's n records (the batch id's prefix + the record index).

    The index suffixes are formatted once and reused (a 10k-record answer needs 10k ids)."""
    if n > MAX_BATCH_RECORDS:
        raise ValueError(f"a batch holds at most {MAX_BATCH_RECORDS} records, not {n}")
    global _index_hex
    table = _index_hex
    if n > len(table):  # rebuilt, then rebound in one step: threads never see a partial table
        table = _index_hex = [f"{i:06x}" for i in range(max(n, 1024))]
    return list(map(batch_id[:-_RECORD_HEX].__add__, table[:n]))


def parse_request_id(request_id: str) -> tuple[str, int] | None:
    """(batch id, record index) of a request id; None for anything that is not one."""
    if not isinstance(request_id, str) or len(request_id) != 32:
        return None
    try:
        record = int(request_id[-_RECORD_HEX:], 16)
        int(request_id, 16)
    except ValueError:
        return None
    return request_id[:-_RECORD_HEX] + "0" * _RECORD_HEX, record
