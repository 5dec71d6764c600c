"""Images as objects in an S3 bucket (AWS, MinIO, R2, …), under one key prefix.

The only module that imports boto3 (the ``s3`` extra). Whatever keeps S3 from answering
(no bucket, refused credentials, an endpoint away) is :class:`StorageUnavailable`, a 503
with Retry-After; only a missing object is :class:`ImageNotFound`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import boto3
import structlog
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from imagegate.errors import ImageNotFound
from imagegate.storage import StorageUnavailable
from imagegate.storage.keys import content_type_of

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

    from imagegate.settings import Settings

log = structlog.get_logger(__name__)
MISSING = frozenset({"NoSuchKey", "404"})


def open_s3(settings: Settings) -> S3Storage:
    """The bucket and prefix of ``IMAGEGATE_STORAGE_URL`` (``s3://bucket/prefix``)."""
    assert settings.storage_url is not None
    url = urlsplit(settings.storage_url)
    secret = settings.s3_secret_access_key
    # Other stores than AWS (MinIO, R2) are reached at their endpoint, by path: a bucket
    # name in the host needs DNS that a MinIO rarely has.
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
        # Short, so that /ready and an image fetch answer in seconds while S3 is away.
        connect_timeout=3,
        read_timeout=20,
        retries={"mode": "standard", "max_attempts": 3},
    )
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,  # None: boto3's credential chain
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        config=config,
    )
    return S3Storage(client, url.netloc, url.path)


class S3Storage:
    def __init__(self, client: S3Client, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""

    def _key(self, key: str) -> str:
        """The object key under our prefix. S3 keys are not paths, but proxies and other
        stores may read ``..`` as one: such a key is refused, as ``local`` refuses it."""
        if any(part in ("", ".", "..") for part in key.split("/")):
            raise ImageNotFound()  # the key is ours, never the client's to see
        return self.prefix + key

    def put(self, key: str, data: bytes) -> None:
        name = self._key(key)
        with _reached(self.bucket):
            self.client.put_object(
                Bucket=self.bucket, Key=name, Body=data, ContentType=content_type_of(key)
            )

    def get(self, key: str) -> bytes:
        name = self._key(key)
        with _reached(self.bucket):
            try:
                return self.client.get_object(Bucket=self.bucket, Key=name)["Body"].read()
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in MISSING:
                    raise ImageNotFound() from exc
                raise

    def delete(self, key: str) -> None:
        name = self._key(key)
        with _reached(self.bucket):
            self.client.delete_object(Bucket=self.bucket, Key=name)  # a missing key: no error

    def delete_prefix(self, prefix: str) -> None:
        pages = self.client.get_paginator("list_objects_v2")
        folder = self._key(prefix.rstrip("/")) + "/"
        with _reached(self.bucket):
            for page in pages.paginate(Bucket=self.bucket, Prefix=folder):
                found: list[ObjectIdentifierTypeDef] = [
                    {"Key": item["Key"]} for item in page.get("Contents", [])
                ]
                if found:  # at most 1,000 a page: what one DeleteObjects call takes
                    self.client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": found, "Quiet": True}
                    )

    def check_writable(self) -> None:
        probe = self._key(f".ready/{uuid.uuid4().hex}")
        with _reached(self.bucket):
            self.client.put_object(Bucket=self.bucket, Key=probe, Body=b"")
            self.client.delete_object(Bucket=self.bucket, Key=probe)

    def presigned_url(self, key: str, expires_s: int) -> str:
        """A GET URL for the object, signed with our credentials (no request is made)."""
        params = {"Bucket": self.bucket, "Key": self._key(key)}
        with _reached(self.bucket):
            return self.client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires_s
            )


@contextmanager
def _reached(bucket: str) -> Iterator[None]:
    """S3's failures as ours; the details (endpoint, bucket, code) go to the log only."""
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        log.warning("storage.unavailable", bucket=bucket, error=f"{type(exc).__name__}: {exc}")
        raise StorageUnavailable() from exc
