"""The formats of ids that become paths or storage keys: one home, checked before any path is built.

A snapshot id, a run id, a report or queue file name is joined under the store's root
(`snapshots/<id>.parquet`, `references/<run id>.parquet`, `reports/<name>.html`). A value from a
user (a CLI argument, a tag, an HTTP body) that held `/`, `\\` or `..` would name a file outside it.
Each `check_*` returns the value when it has its format and raises `InvalidId` otherwise, with a
one-line message naming what was expected.
"""

from __future__ import annotations

import re

#: A snapshot's content id: the sha256 of its canonical rows (`data.snapshots.content_id`).
SNAPSHOT_ID = re.compile(r"[0-9a-f]{64}")
#: What a user may give for a snapshot: its id or a prefix of it (`explain --snapshot`).
SNAPSHOT_PREFIX = re.compile(r"[0-9a-f]{1,64}")
#: A day (a daily partition, a labeling queue export's name): ISO `YYYY-MM-DD`.
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
#: One path segment: a name (ids of runs, stored objects, reports, queue days). No separators,
#: no leading dot (so neither `.` nor `..`), at most 200 characters.
SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}")


class InvalidId(ValueError):
    """A value that does not have the format of the id it is used as."""


def _check(pattern: re.Pattern[str], value: object, what: str, expected: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidId(f"{what} {value!r} is not valid: expected {expected}")
    return value


def check_snapshot_prefix(value: object) -> str:
    """A snapshot id or a prefix of one: 1 to 64 lowercase hex digits."""
    return _check(SNAPSHOT_PREFIX, value, "snapshot id", "1 to 64 lowercase hex digits (sha256)")


def check_day(value: object, what: str = "day") -> str:
    """An ISO date, `YYYY-MM-DD` (the name of a day's labeling queue files)."""
    return _check(DAY, value, what, "an ISO date YYYY-MM-DD")


def check_segment(value: object, what: str = "id") -> str:
    """A name used as one path segment under the store (a stored id, a run id, a report or file
    name): letters, digits, `_`, `.`, `-`, not starting with a dot, at most 200 characters."""
    return _check(SEGMENT, value, what, "letters, digits, '_', '.' or '-' (no '/', no leading '.'), "
                  "at most 200 characters")
