"""A :class:`~atlasguard.registry.stores.Store` in S3-compatible object storage.

Blobs live at ``<prefix>/<aa>/<sha256>`` in one bucket (AWS S3, MinIO, Ceph...).
A put streams: the bytes are hashed while they are spooled to a temporary file,
then uploaded (in parts when large) under the key their hash names, and only if
no object is there yet. Credentials come from boto3's usual chain (the
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` environment variables, a
profile, an instance role), never from the policy file. Needs the ``s3`` extra
(``pip install 'atlasguard[s3]'``).

>>> parse_s3_url("s3://models/registry")
('models', 'registry')
>>> S3Store("models", "registry/", client=object())._name("ab" * 32)[:12]
'registry/ab/'
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, cast
from urllib.parse import urlsplit

from atlasguard.errors import ConfigurationError, IntegrityError, UsageError

__all__ = ["S3Store", "parse_s3_url"]

_KEY = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
_SPOOL = 8 * _CHUNK  # blobs up to this size are spooled in memory, larger ones on disk
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> ``(bucket, prefix)``; :class:`UsageError` if malformed."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise UsageError(f"{url!r}: expected s3://BUCKET[/PREFIX]")
    return parts.netloc, parts.path.strip("/")


class _Body(io.RawIOBase):
    """A botocore ``StreamingBody`` as a raw stream, so it can be buffered into a BinaryIO."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._body.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3Store:
    """Content-addressed blobs in ``bucket`` under ``prefix``.

    ``endpoint_url`` and ``region`` select a non-AWS service (MinIO, Ceph, moto);
    ``client`` is a ready boto3 S3 client (then neither is used).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any = None,
    ) -> None:
        if not bucket:
            raise UsageError("an S3 store needs a bucket")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.region = region
        self._client = client if client is not None else self._make_client()

    def _make_client(self) -> Any:
        try:
            import boto3
        except ImportError:
            raise ConfigurationError(
                "the S3 store needs boto3: pip install 'atlasguard[s3]'"
            ) from None
        # A session of its own, not boto3's process-wide default one.
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url or None, region_name=self.region or None
        )

    @staticmethod
    def _transfer() -> Any:
        from boto3.s3.transfer import TransferConfig

        # Parts of 8 MiB, four at a time: memory stays bounded whatever the blob size.
        return TransferConfig(multipart_chunksize=_SPOOL, max_concurrency=4)

    def __repr__(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"S3Store(s3://{self.bucket}/{self.prefix}{where})"

    def _name(self, key: str) -> str:
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise UsageError(f"invalid blob key {key!r}")
        name = f"{key[:2]}/{key}"
        return f"{self.prefix}/{name}" if self.prefix else name

    @contextmanager
    def _translated(self, key: str) -> Iterator[None]:
        """A missing object as :class:`KeyError`; no bucket or no credentials: configuration."""
        from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise KeyError(key) from None
            if code == "NoSuchBucket":
                raise ConfigurationError(f"{self!r}: no bucket named {self.bucket!r}") from None
            raise
        except (NoCredentialsError, PartialCredentialsError):
            raise ConfigurationError(
                f"{self!r}: no S3 credentials: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment"
            ) from None

    def put(self, stream: BinaryIO) -> str:
        h = hashlib.sha256()
        size = 0
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL, prefix="atlasguard-s3-") as spool:
            while chunk := stream.read(_CHUNK):
                h.update(chunk)
                spool.write(chunk)
                size += len(chunk)
            key = h.hexdigest()
            if self.exists(key):
                return key
            spool.seek(0)
            name = self._name(key)
            with self._translated(key):
                # upload_fileobj switches to a multipart upload for large blobs and
                # sends a checksum of each part for the server to check (botocore default).
                self._client.upload_fileobj(spool, self.bucket, name, Config=self._transfer())
                stored = self._client.head_object(Bucket=self.bucket, Key=name)
        if int(stored.get("ContentLength", -1)) != size:
            # Never leave a wrong object under a content address: later puts would skip it.
            with contextlib.suppress(Exception):
                self._client.delete_object(Bucket=self.bucket, Key=name)
            raise IntegrityError(
                f"{self!r}: {key} was stored with {stored.get('ContentLength')} of {size} bytes"
            )
        return key

    def put_bytes(self, data: bytes) -> str:
        return self.put(io.BytesIO(data))

    def get(self, key: str) -> bytes:
        with self.open(key) as stream:
            return stream.read()

    def open(self, key: str) -> BinaryIO:
        name = self._name(key)
        with self._translated(key):
            response = self._client.get_object(Bucket=self.bucket, Key=name)
        return cast(BinaryIO, io.BufferedReader(_Body(response["Body"]), _CHUNK))

    def exists(self, key: str) -> bool:
        name = self._name(key)
        try:
            with self._translated(key):
                self._client.head_object(Bucket=self.bucket, Key=name)
        except KeyError:
            return False
        return True

    def delete(self, key: str) -> None:
        name = self._name(key)
        with self._translated(key):
            self._client.delete_object(Bucket=self.bucket, Key=name)
