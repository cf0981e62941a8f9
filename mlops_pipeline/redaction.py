"""Credentials never leave the process: one filter for every log record and every printed line.

`install` is called once at each entry point (the CLI's `main`, the code location's
`definitions.py` — so every Dagster run and step process — and serving's `configure_logging`). It
masks, wherever they appear:
- `scheme://user:password@` in any text (the password becomes `***`);
- every known secret (`secrets_in`: the passwords of the configured URIs, as written and
  URL-decoded, tokens and keys from the environment) — so a password MLflow or boto3 echoes
  without its URI is masked too.
Log records are masked when they are made (the record factory: message and traceback), before any
handler sees them, so libraries that bring their own handlers are covered. `sys.stdout` and
`sys.stderr` are wrapped: lines a library prints (MLflow's "View run ... at: URL") are masked
before they reach the file descriptor, which is what Dagster's compute logs capture.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from typing import TextIO
from urllib.parse import unquote, urlsplit

#: `scheme://user:password@` in any text: the password is replaced by ***.
URI_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:@/\s]*):(?P<pw>[^@/\s]+)@")

#: Environment variables whose whole value is a secret.
SECRET_VARS = ("MLOPS_SERVE_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
               "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "PGPASSWORD", "DAGSTER_PG_PASSWORD")
#: Environment variables that may hold a URI with a password.
URI_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLOPS_PREDICTIONS_URL",
            "MLOPS_STORAGE_ROOT", "MLOPS_S3_ENDPOINT_URL", "MLOPS_ALERT_WEBHOOK_URL",
            "MLOPS_SERVING_URL", "MLOPS_SERVE_URL", "MLOPS_SERVE_PREDICTIONS_URL")
#: Shorter values are not masked wherever they occur (a 2-character password would mask half the log).
MIN_SECRET_CHARS = 3


def secrets_in(uris: Iterable[str | None] = (), values: Iterable[str | None] = (),
               env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """What must never be shown: the passwords of `uris` and of the URI variables of `env`
    (default: this process's environment), as written and URL-decoded; `values` and the secret
    variables of `env` whole. Longest first, so a secret containing another is masked whole."""
    source = os.environ if env is None else env
    found: set[str] = {v for v in values if v}
    found.update(source.get(var, "") for var in SECRET_VARS)
    for uri in [*uris, *(source.get(var, "") for var in URI_VARS)]:
        try:
            password = urlsplit(uri).password if uri else None
        except ValueError:
            password = None
        if password:
            found.update({password, unquote(password)})
    return tuple(sorted((s for s in found if s and len(s.strip()) >= MIN_SECRET_CHARS),
                        key=len, reverse=True))


def redact(text: str | None, secrets: Iterable[str] = ()) -> str | None:
    """`text` with credentials masked: `scheme://user:***@host` for any URI with a password, and
    every one of `secrets` wherever else it appears."""
    if not text:
        return text
    text = URI_CREDENTIALS.sub(r"\g<head>:***@", text)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


class RedactingFormatter(logging.Formatter):
    """A log formatter that masks credentials in the whole record, traceback included."""

    def __init__(self, fmt: str | None = None, secrets: Iterable[str] = ()):
        super().__init__(fmt)
        self.secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets) or ""


class RedactingStream:
    """A text stream that masks credentials in what is written to it, line by line, and otherwise
    behaves as the stream it wraps (its file descriptor, encoding, flush, isatty)."""

    redacting = True

    def __init__(self, stream: TextIO, secrets: Iterable[str]):
        self.stream, self.secrets, self._partial = stream, tuple(secrets), ""

    def write(self, text: str) -> int:
        # Whole lines only (a URI split over two writes is still masked); an unfinished line is
        # held back until its newline, a flush, or 4 KiB.
        head, sep, tail = (self._partial + text).rpartition("\n")
        if len(tail) >= 4096:
            head, sep, tail = head + sep + tail, "", ""
        self._partial = tail
        if head or sep:
            self.stream.write(redact(head + sep, self.secrets) or "")
        return len(text)

    def flush(self) -> None:
        if self._partial:
            self.stream.write(redact(self._partial, self.secrets) or "")
            self._partial = ""
        self.stream.flush()

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def install(secrets: Iterable[str] = ()) -> tuple[str, ...]:
    """Mask credentials in every log record made and every line printed from now on in this
    process (module docstring). Idempotent: a second call widens the secrets rather than wrapping
    twice. Returns the secrets in force."""
    secrets = tuple(sorted(set(secrets_in()) | set(secrets), key=len, reverse=True))
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None:
            continue
        if getattr(stream, "redacting", False):
            stream.secrets = tuple(sorted(set(stream.secrets) | set(secrets), key=len, reverse=True))
            secrets = stream.secrets
        else:
            setattr(sys, name, RedactingStream(stream, secrets))
    formatter = RedactingFormatter(None, secrets)
    base = logging.getLogRecordFactory()
    if getattr(base, "redacting", False):
        base = base.base  # type: ignore[attr-defined]

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = base(*args, **kwargs)
        try:
            record.msg, record.args = redact(record.getMessage(), secrets), None
        except Exception:  # noqa: BLE001 - a malformed record is logging's to report, not ours
            return record
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact(formatter.formatException(record.exc_info), secrets)
        return record

    factory.redacting = True  # type: ignore[attr-defined]
    factory.base = base  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
    return secrets
