"""Where snapshots, landed batches, reports and exports live: a local directory or an S3 prefix.

`Storage` is the plain client (the assets get it through `defs.resources.storage`). `root` is a path
(empty: `MLOPS_STORAGE_ROOT`, else the data dir) or `s3://bucket/prefix` on AWS or any S3-compatible
store at `endpoint_url`. Callers never branch on the backend: they ask for a snapshot, a landing glob
or a report location and get a path or an `s3://` URI back.

Snapshots are written once under their content id: locally a temporary name hard-linked into place;
on S3 one PUT with `If-None-Match: *` (no replacing a key) and `Content-MD5` (no truncated body), so
a failed upload never leaves half a snapshot. Stores that ignore `If-None-Match` still get the HEAD
check before every write (two writers of one id write the same bytes: the race costs an upload,
never a wrong snapshot); `conditional_writes=False` is for stores that reject the header.
Credentials are never configuration: boto3 reads its usual chain, imported only for S3.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import io
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlops_pipeline.ids import check_segment
from mlops_pipeline.spec import data_dir, resolve_path

if TYPE_CHECKING:
    from mlops_pipeline.spec import DatasetSpec

S3_SCHEME = "s3://"
GLOB_CHARS = "*?["
_MISSING = ("404", "NoSuchKey", "NotFound")


class StorageError(RuntimeError):
    """The store could not be reached or refused an operation; the message names the store."""


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> (`bucket`, `a/b`); the key part has no leading or trailing slash."""
    if not uri.startswith(S3_SCHEME):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len(S3_SCHEME):].partition("/")
    if not bucket:
        raise ValueError(f"s3 URI without a bucket: {uri!r}")
    return bucket, key.strip("/")


def _glob_match(key: str, pattern: str) -> bool:
    """Shell-glob semantics per path segment (`*` never crosses `/`), like `glob.glob` locally."""
    parts, pats = key.split("/"), pattern.split("/")
    return len(parts) == len(pats) and all(
        fnmatch.fnmatchcase(p, q) for p, q in zip(parts, pats, strict=True)
    )


def _link_once(final: Path, write: Callable[[str], None], suffix: str = "") -> bool:
    """Write through `write(tmp)` and hard-link into place: `link` fails if the name exists, so two
    writers cannot clobber each other and a reader never sees half a file. False if it existed."""
    if final.exists():
        return False
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".incoming-", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o444)
        try:
            os.link(tmp, final)
        except FileExistsError:
            return False
    finally:
        os.unlink(tmp)
    return True


class Storage:
    """A local directory or an `s3://bucket/prefix`; see the module docstring for the defaults."""

    def __init__(self, root: str = "", endpoint_url: str = "", region_name: str = "",
                 max_attempts: int = 3, conditional_writes: bool = True):
        self.root = root
        self.endpoint_url = endpoint_url
        self.region_name = region_name
        self.max_attempts = max_attempts
        self.conditional_writes = conditional_writes
        self._client: Any = None

    # ---- where ------------------------------------------------------------------------------
    @property
    def location(self) -> str:
        """The resolved root: an `s3://` URI, or an absolute local path."""
        root = self.root or os.environ.get("MLOPS_STORAGE_ROOT", "")
        if root.startswith(S3_SCHEME):
            return root.rstrip("/")
        return str(Path(root).expanduser().resolve()) if root else str(data_dir())

    @property
    def is_s3(self) -> bool:
        return self.location.startswith(S3_SCHEME)

    @property
    def base(self) -> Path:
        """The local root. On S3 there is none: use `uri()`, `landing_glob()` and friends."""
        if self.is_s3:
            raise StorageError(
                f"storage root is {self.location}: there is no local directory; use "
                "Storage.uri()/landing_glob()/write_landing() instead of .base"
            )
        return Path(self.location)

    def uri(self, relative: str) -> str:
        """Location of `relative` (a `/`-separated path under the root)."""
        relative = relative.strip("/")
        return f"{self.location}/{relative}" if self.is_s3 else str(Path(self.location) / relative)

    def describe(self) -> str:
        """How error messages name the store (endpoint included, since that is what goes down)."""
        if not self.is_s3:
            return f"local store {self.location}"
        endpoint = self._endpoint() or "AWS S3"
        return f"S3 store {endpoint} ({self.location})"

    def _endpoint(self) -> str | None:
        return self.endpoint_url or os.environ.get("MLOPS_S3_ENDPOINT_URL") or None

    @property
    def reports_dir(self) -> Path:
        """Where a report is written first. On S3 this is a local staging directory:
        `publish_report()` then uploads the file and returns its URI."""
        if self.is_s3:
            digest = hashlib.sha256(self.location.encode()).hexdigest()[:12]
            path = Path(tempfile.gettempdir()) / f"mlops-reports-{digest}"
        else:
            path = self.base / "reports"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def landing_glob(self, spec: DatasetSpec) -> str:
        """The spec's landing glob under this root (a local glob or an `s3://` key glob)."""
        if self.is_s3:
            return self.uri(spec.source.path)
        return str(resolve_path(spec.source.path, self.base))

    # ---- S3 plumbing --------------------------------------------------------------------------
    def s3_client(self) -> Any:
        """A boto3 S3 client with the endpoint, region and standard retries (`max_attempts`) the
        Dagster S3 I/O manager's client uses, built once per `Storage`."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=self._endpoint(),
                region_name=self.region_name or os.environ.get("AWS_REGION") or None,
                config=Config(retries={"max_attempts": self.max_attempts, "mode": "standard"}),
            )
        return self._client

    @contextmanager
    def _s3_errors(self, action: str, uri: str) -> Iterator[None]:
        """Turn botocore's errors into one that says which store, which object and what failed."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise StorageError(
                f"{self.describe()}: {action} {uri} failed: {err.get('Code')} {err.get('Message')}"
            ) from exc
        except BotoCoreError as exc:
            raise StorageError(f"{self.describe()} unreachable: {action} {uri} failed: {exc}") from exc

    def _exists(self, uri: str) -> bool:
        from botocore.exceptions import ClientError

        bucket, key = split_s3_uri(uri)
        with self._s3_errors("HEAD", uri):
            try:
                self.s3_client().head_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in _MISSING:
                    return False
                raise
        return True

    def _get(self, uri: str) -> bytes:
        from botocore.exceptions import ClientError

        bucket, key = split_s3_uri(uri)
        with self._s3_errors("GET", uri):
            try:
                return self.s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in _MISSING:
                    raise FileNotFoundError(f"{uri} not found in {self.describe()}") from None
                raise

    def _put(self, uri: str, body: bytes, content_type: str, if_absent: bool = False) -> bool:
        """PUT in one request with Content-MD5; with `if_absent`, False when the key exists."""
        from botocore.exceptions import ClientError

        bucket, key = split_s3_uri(uri)
        extra: dict[str, Any] = {"IfNoneMatch": "*"} if if_absent and self.conditional_writes else {}
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        with self._s3_errors("PUT", uri):
            try:
                self.s3_client().put_object(
                    Bucket=bucket, Key=key, Body=body, ContentMD5=md5, ContentType=content_type, **extra
                )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if if_absent and (code in ("PreconditionFailed", "ConditionalRequestConflict")
                                  or status in (409, 412)):
                    return False
                raise
        return True

    def listing(self, pattern: str) -> list[tuple[str, int, str]]:
        """(location, size, version) of every object or file matching a glob, sorted by location.
        The version (mtime locally, ETag on S3) notices a changed batch without reading it; on S3 the
        glob is matched per path segment after listing the literal prefix before the first wildcard."""
        if not pattern.startswith(S3_SCHEME):
            import glob

            return [(f, (st := os.stat(f)).st_size, str(st.st_mtime_ns)) for f in sorted(glob.glob(pattern))]
        bucket, key_pattern = split_s3_uri(pattern)
        cut = min((key_pattern.find(c) for c in GLOB_CHARS if c in key_pattern), default=len(key_pattern))
        prefix = key_pattern[:cut]
        found: list[tuple[str, int, str]] = []
        with self._s3_errors("LIST", f"{S3_SCHEME}{bucket}/{prefix}"):
            pages = self.s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                found += [
                    (f"{S3_SCHEME}{bucket}/{o['Key']}", int(o["Size"]), str(o.get("ETag", "")))
                    for o in page.get("Contents", [])
                    if _glob_match(o["Key"], key_pattern)
                ]
        return sorted(found)

    def list_uris(self, pattern: str) -> list[str]:
        """Every object (or file) matching a glob, sorted: the landed batches, exports, ..."""
        return [location for location, _, _ in self.listing(pattern)]

    # ---- generic objects (reports, exports, landed batches) -----------------------------------
    def read_bytes(self, location: str) -> bytes:
        """The bytes at a path or `s3://` URI (FileNotFoundError when there is none)."""
        if location.startswith(S3_SCHEME):
            return self._get(location)
        return Path(location).read_bytes()

    def write_bytes(self, relative: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Store `data` under `relative` (replacing it) and return its location."""
        return self.write_bytes_at(self.uri(relative), data, content_type)

    def write_bytes_at(self, location: str, data: bytes,
                       content_type: str = "application/octet-stream") -> str:
        """Store `data` at a full location (a path or `s3://` URI, e.g. one `listing` returned)
        rather than under the root; locally through a temporary name and a rename."""
        if location.startswith(S3_SCHEME):
            self._put(location, data, content_type)
            return location
        path = Path(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        return location

    def exists(self, location: str) -> bool:
        """Whether a path or `s3://` URI holds an object (StorageError when the store is down)."""
        return self._exists(location) if location.startswith(S3_SCHEME) else Path(location).exists()

    def read_table(self, location: str, fmt: str = "parquet",
                   columns: list[str] | None = None) -> pd.DataFrame:
        """A Parquet or CSV file by path or `s3://` URI."""
        source: Any = io.BytesIO(self._get(location)) if location.startswith(S3_SCHEME) else location
        if fmt == "parquet":
            return pd.read_parquet(source, columns=columns)
        return pd.read_csv(source, usecols=columns)

    def write_landing(self, spec: DatasetSpec, name: str, df: pd.DataFrame) -> str:
        """Land a batch next to the spec's other batches (a reader never sees half a file)."""
        rel_dir = spec.source.path.rsplit("/", 1)[0] if "/" in spec.source.path else ""
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        return self.write_bytes(f"{rel_dir}/{name}" if rel_dir else name, buf.getvalue(),
                                "application/vnd.apache.parquet")

    def publish_report(self, path: Path) -> str:
        """Make a report written under `reports_dir` durable; returns where it now lives.

        Locally the file already is in place. On S3 it is uploaded to `<root>/reports/<name>`.
        """
        check_segment(path.name, "report name")
        if not self.is_s3:
            return str(path)
        content_type = "text/html" if path.suffix == ".html" else "application/octet-stream"
        return self.write_bytes(f"reports/{path.name}", path.read_bytes(), content_type)

    # ---- snapshots ----------------------------------------------------------------------------
    def snapshot_uri(self, snapshot_id: str) -> str:
        """Where a snapshot is stored; `InvalidId` for an id that is not one path segment."""
        return self.uri(f"snapshots/{check_segment(snapshot_id, 'snapshot id')}.parquet")

    def snapshot_path(self, snapshot_id: str) -> Path:
        """Local file of a snapshot (local root only; `snapshot_uri` works for both)."""
        return self.base / "snapshots" / f"{check_segment(snapshot_id, 'snapshot id')}.parquet"

    def has_snapshot(self, snapshot_id: str) -> bool:
        return self.exists(self.snapshot_uri(snapshot_id))

    def write_snapshot(self, snapshot_id: str, df: pd.DataFrame) -> bool:
        """Write once; returns False (and touches nothing) when the id is already stored."""
        return self._write_once(self.snapshot_uri(snapshot_id), df)

    def _write_once(self, uri: str, df: pd.DataFrame) -> bool:
        if self.is_s3:
            if self._exists(uri):
                return False
            buf = io.BytesIO()
            df.to_parquet(buf, index=False)
            return self._put(uri, buf.getvalue(), "application/vnd.apache.parquet", if_absent=True)
        return _link_once(Path(uri), lambda tmp: df.to_parquet(tmp, index=False), suffix=".parquet")

    def read_snapshot(self, snapshot_id: str) -> pd.DataFrame:
        """The stored snapshot; FileNotFoundError naming the id and where it was looked for."""
        uri = self.snapshot_uri(snapshot_id)
        if self.is_s3:
            try:
                return self.read_table(uri)
            except FileNotFoundError:
                raise FileNotFoundError(f"snapshot {snapshot_id} not found at {uri}") from None
        if not Path(uri).exists():
            raise FileNotFoundError(f"snapshot {snapshot_id} not found at {uri}")
        return pd.read_parquet(uri)

    # ---- drift references ---------------------------------------------------------------------
    def reference_uri(self, run_id: str) -> str:
        """Where a run's drift reference is stored; `InvalidId` for a run id that is not one
        path segment."""
        return self.uri(f"references/{check_segment(run_id, 'run id')}.parquet")

    def write_reference(self, run_id: str, df: pd.DataFrame) -> str:
        """A model's drift reference (its training split, scored by it), written once per run."""
        uri = self.reference_uri(run_id)
        self._write_once(uri, df)
        return uri

    # ---- performance estimators ----------------------------------------------------------------
    def estimator_uri(self, run_id: str) -> str:
        """Where a run's performance estimator is stored (run id checked like `reference_uri`)."""
        return self.uri(f"estimators/{check_segment(run_id, 'run id')}.skops")

    def write_estimator(self, run_id: str, data: bytes) -> str:
        """A model's performance estimator (`monitoring.estimation`), written once per run like
        the drift reference: a second write of the same run keeps the first."""
        uri = self.estimator_uri(run_id)
        if self.is_s3:
            if not self._exists(uri):
                self._put(uri, data, "application/octet-stream", if_absent=True)
        else:
            _link_once(Path(uri), lambda tmp: Path(tmp).write_bytes(data))
        return uri


def copy_tree_to_storage(storage: Storage, local_dir: Path, relative: str) -> list[str]:
    """Copy every file under `local_dir` to `relative/...` in the store (e.g. seeding an S3
    landing area from batches landed locally)."""
    return [
        storage.write_bytes(f"{relative.strip('/')}/{f.relative_to(local_dir).as_posix()}", f.read_bytes())
        for f in sorted(p for p in local_dir.rglob("*") if p.is_file())
    ]
