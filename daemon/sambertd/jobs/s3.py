"""The result store in an S3-compatible object store (a site's MinIO): both nodes of a pair see
every object, so either can finish a job and serve its audio.

boto3 is an optional dependency (``pip install 'sambertd[s3]'``), imported only when
``jobs.store = s3``.  One client per store, made once: boto3 clients are thread-safe (its
sessions are not), and the store is called from worker threads.  Every boto3/botocore error
leaves here as :class:`StoreError` with a message naming the endpoint, bucket and key, never the
secret.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sambertd.jobs.store import StoreError, _safe

if TYPE_CHECKING:
    from sambertd.config import JobsConfig

T = TypeVar("T")

# S3's DeleteObjects takes at most this many keys per request.
_DELETE_BATCH = 1000
# Codes S3 (and MinIO, and moto) answer for "no such object".
_MISSING = {"NoSuchKey", "NotFound", "404"}


class S3Store:
    """``s3://<bucket>/<s3_prefix><key>``.  A PUT is atomic by itself: readers see a whole
    object or none, which is what the protocol asks of every write."""

    def __init__(self, config: JobsConfig) -> None:
        try:
            import boto3
            import boto3.exceptions
            import botocore.config
            import botocore.exceptions
            from boto3.s3.transfer import TransferConfig
        except ImportError as exc:
            raise StoreError("jobs.store = s3 needs boto3: pip install 'sambertd[s3]'") from exc
        if not config.s3_bucket:
            raise StoreError("jobs.store = s3 needs jobs.s3_bucket")
        self.endpoint = config.s3_endpoint or "(AWS default endpoint)"
        self.bucket = config.s3_bucket
        prefix = config.s3_prefix.lstrip("/")
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self._client_error: type[Exception] = botocore.exceptions.ClientError
        self._errors: tuple[type[Exception], ...] = (
            botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError,
            boto3.exceptions.Boto3Error,
        )
        options: dict[str, Any] = {
            "region_name": config.s3_region or None,
            "signature_version": "s3v4",
            "s3": {"addressing_style": "path"},  # MinIO: no bucket-named DNS records
            # A dead endpoint must fail a job's step in seconds, not hang a worker thread.
            "connect_timeout": 3,
            "read_timeout": 15,
            "retries": {"total_max_attempts": 3, "mode": "standard"},
        }
        # botocore >= 1.36 adds CRC checksums to every PUT by default, which older MinIO and
        # other S3-compatible stores refuse; ask for them only where S3 requires them.
        for option in ("request_checksum_calculation", "response_checksum_validation"):
            if option in botocore.config.Config.OPTION_DEFAULTS:
                options[option] = "when_required"
        secret: str | None = None
        if config.s3_secret_key_file:
            try:
                secret = Path(config.s3_secret_key_file).read_text().strip()
            except OSError as exc:
                raise StoreError(f"jobs.s3_secret_key_file: {exc}") from exc
            if not secret:
                raise StoreError(f"jobs.s3_secret_key_file {config.s3_secret_key_file} is empty")
        try:
            # Without a key pair, boto3's own chain applies (environment, instance role).
            self._client: Any = boto3.session.Session().client(
                "s3",
                endpoint_url=config.s3_endpoint or None,
                aws_access_key_id=config.s3_access_key or None,
                aws_secret_access_key=secret,
                verify=config.s3_tls_ca or True,
                config=botocore.config.Config(**options),
            )
        except self._errors as exc:
            raise StoreError(f"S3 client for {self.endpoint}: {exc}") from None
        # Bigger files go up in 8 MiB parts, a few at a time (a finished job's audio file).
        self._transfer: Any = TransferConfig(
            multipart_threshold=8 * 1024 * 1024,
            multipart_chunksize=8 * 1024 * 1024,
            max_concurrency=4,
        )

    def _key(self, key: str) -> str:
        return self.prefix + _safe(key)

    def _code(self, exc: Exception) -> str:
        """The S3 error code of a ClientError, '' for anything else (connection errors…)."""
        if isinstance(exc, self._client_error):
            response: dict[str, Any] = getattr(exc, "response", {}) or {}
            return str(response.get("Error", {}).get("Code", ""))
        return ""

    def _error(self, what: str, key: str, exc: Exception) -> StoreError:
        """A readable StoreError (botocore's text names the code, never the credentials)."""
        where = f"s3://{self.bucket}/{self.prefix}{key} at {self.endpoint}"
        return StoreError(f"S3 {what} {where}: {exc}")

    def _call(self, what: str, key: str, fn: Callable[[], T]) -> T:
        """Run one S3 call, its errors as StoreError."""
        try:
            return fn()
        except self._errors as exc:
            raise self._error(what, key, exc) from None

    def _maybe(self, what: str, key: str, fn: Callable[[], T]) -> T | None:
        """Run one S3 call; None when the object is missing."""
        try:
            return fn()
        except self._errors as exc:
            if self._code(exc) in _MISSING:
                return None
            raise self._error(what, key, exc) from None

    def check(self) -> None:
        """The bucket answers and a probe object can be written and deleted, as the jobs will."""
        probe = self.prefix + ".probe"
        try:
            self._client.head_bucket(Bucket=self.bucket)
            self._client.put_object(Bucket=self.bucket, Key=probe, Body=b"ok")
            self._client.delete_object(Bucket=self.bucket, Key=probe)
        except self._errors as exc:
            code = self._code(exc)
            if code in ("404", "NoSuchBucket"):
                why = "no such bucket"
            elif code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                why = f"refused ({code}: check jobs.s3_access_key and the secret key file)"
            else:
                why = str(exc)
            raise StoreError(
                f"S3 store at {self.endpoint}, bucket {self.bucket!r}: {why}"
            ) from None

    def put(self, key: str, data: bytes) -> None:
        full = self._key(key)
        self._call(
            "put", key, lambda: self._client.put_object(Bucket=self.bucket, Key=full, Body=data)
        )

    def put_file(self, key: str, path: Path) -> None:
        """Uploaded (in parts when big, by boto3's transfer manager), then the local file is
        removed: the protocol's "the file may be moved", so a finished job leaves no copy."""
        full = self._key(key)
        self._call(
            "upload",
            key,
            lambda: self._client.upload_file(str(path), self.bucket, full, Config=self._transfer),
        )
        path.unlink(missing_ok=True)

    def get(self, key: str) -> bytes | None:
        full = self._key(key)

        def fetch() -> bytes:
            body = self._client.get_object(Bucket=self.bucket, Key=full)["Body"]
            with body:
                data: bytes = body.read()
            return data

        return self._maybe("get", key, fetch)

    def size(self, key: str) -> int | None:
        full = self._key(key)

        def head() -> int:
            return int(self._client.head_object(Bucket=self.bucket, Key=full)["ContentLength"])

        return self._maybe("head", key, head)

    def read(self, key: str, start: int, length: int) -> bytes:
        """A ranged GET.  A range past the end is S3's 416 InvalidRange: no bytes, as a file's
        read past its end; a missing object is an error, as for :class:`LocalStore`."""
        full = self._key(key)
        if start < 0 or length < 0:
            raise StoreError(f"bad range {start}+{length} of {key}")
        if length == 0:
            return b""

        def fetch() -> bytes:
            try:
                response = self._client.get_object(
                    Bucket=self.bucket, Key=full, Range=f"bytes={start}-{start + length - 1}"
                )
            except self._client_error as exc:
                if self._code(exc) == "InvalidRange":
                    return b""
                raise
            with response["Body"] as body:
                data: bytes = body.read()
            return data

        return self._call("read", key, fetch)

    def delete_prefix(self, prefix: str) -> int:
        """Deletes ``prefix`` itself and everything under ``prefix/``, as LocalStore removes a
        file or a directory tree: ``jobs/ab`` must not take ``jobs/abc/…`` with it."""
        base = self._key(prefix.rstrip("/"))

        def delete() -> int:
            keys: list[str] = []
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base
            )
            for page in pages:
                for item in page.get("Contents", []):
                    name = str(item["Key"])
                    if name == base or name.startswith(base + "/"):
                        keys.append(name)
            for i in range(0, len(keys), _DELETE_BATCH):
                batch = [{"Key": k} for k in keys[i : i + _DELETE_BATCH]]
                response = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
                errors = response.get("Errors") or []
                if errors:  # per-key refusals come back in a 200 answer
                    first = errors[0]
                    raise StoreError(
                        f"S3 delete under s3://{self.bucket}/{base}: {len(errors)} refused, "
                        f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                    )
            return len(keys)

        return self._call("delete", prefix, delete)
