"""An S3 bucket (optionally a prefix in it) as the store: `CYTO_STORE=s3://bucket[/prefix]`.

Listings stream page by page through botocore paginators, so a batch of 10,000 analyses costs
ten ListObjectsV2 calls and never sits in memory at once. S3 returns keys in UTF-8 byte order,
which is also Python's `str` order, so children come out sorted without sorting.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3

from bot import aws
from bot.store.base import ObjectInfo, ObjectNotFound, StoreError

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_MISSING_BUCKET = ("NoSuchBucket", "404", "NotFound")
_DENIED = ("AccessDenied", "403", "Forbidden", "AllAccessDisabled")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix/` -> ("bucket", "some/prefix"); StoreError naming CYTO_STORE otherwise."""
    if not uri.startswith("s3://"):
        raise StoreError(f"CYTO_STORE={uri!r} is not an S3 URI: expected s3://bucket[/prefix]")
    bucket, _, prefix = uri[5:].partition("/")
    if not _BUCKET_NAME.match(bucket) or ".." in bucket:
        raise StoreError(f"CYTO_STORE={uri!r}: {bucket!r} is not a valid S3 bucket name (3-63 lowercase "
                         "letters, digits, '.' or '-'); expected s3://bucket[/prefix]")
    prefix = prefix.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise StoreError(f"CYTO_STORE={uri!r}: the prefix must not contain empty, '.' or '..' parts")
    return bucket, prefix


class S3Store:
    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client = client
        self._signer: Any = None

    @classmethod
    def from_uri(cls, uri: str, client: Any = None) -> S3Store:
        bucket, prefix = parse_s3_uri(uri)
        return cls(bucket, prefix, client)

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._errors(self.uri):
                self._client = aws.client("s3", retry_mode="standard", max_pool_connections=32)
        return self._client

    def object_key(self, key: str) -> str:
        """The bucket's key for a store key (the store's prefix in front)."""
        return self._key(key)

    def errors(self, uri: str) -> Any:
        """A context that turns boto3 failures on `uri` into one-line StoreErrors."""
        return self._errors(uri)

    def _key(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise StoreError(f"key {key!r} points outside the store")
        return f"{self.prefix}/{key}" if self.prefix else key

    # -- the Store interface ------------------------------------------------------------------
    def list_children(self, prefix: str) -> Iterator[str]:
        full = self._key(prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors(self.uri_for(prefix)):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    name = common["Prefix"][len(full):].rstrip("/")
                    if name and not name.startswith("."):
                        yield name

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        full = self._key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors(self.uri_for(prefix)):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for item in page.get("Contents", []):
                    if not item["Key"].endswith("/"):  # a console "folder" marker is not an object
                        yield ObjectInfo(item["Key"][strip:], int(item["Size"]))

    def read_bytes(self, key: str) -> bytes:
        uri = self.uri_for(key)
        with self._errors(uri):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            except Exception as exc:
                if aws.error_code(exc) in ("NoSuchKey", "404"):
                    raise ObjectNotFound(f"{key} does not exist in {self.uri}") from None
                raise
            return response["Body"].read()

    def write_bytes(self, key: str, data: bytes) -> None:
        with self._errors(self.uri_for(key)):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def exists(self, key: str) -> bool:
        with self._errors(self.uri_for(key)):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            except Exception as exc:
                if aws.error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
        return True

    def uri_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def presigned_url(self, key: str, expires_s: int, content_type: str | None = None) -> str:
        """A GET link to `key` that works without AWS credentials for `expires_s` seconds (at most 7
        days; with temporary credentials, until they expire if sooner). Signing is local: no request."""
        params = {"Bucket": self.bucket, "Key": self._key(key)}
        if content_type:
            params["ResponseContentType"] = content_type  # a browser shows the page instead of saving it
        with self._errors(self.uri_for(key)):
            if self._signer is None:  # SigV4 whatever the client's default: its links say how long they live
                from botocore.config import Config

                meta = self.client.meta
                self._signer = boto3.session.Session().client(
                    "s3", region_name=meta.region_name, endpoint_url=meta.endpoint_url,
                    config=meta.config.merge(Config(signature_version="s3v4")))
            return str(self._signer.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s))

    def check(self) -> None:
        """One ListObjectsV2 under the prefix: what every run needs first. Unlike HeadBucket, its error
        has a body, so a missing bucket, denied access and a bad key are told apart."""
        with self._errors(self.uri):
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._key(""), MaxKeys=1)

    # -- errors -------------------------------------------------------------------------------
    @contextmanager
    def _errors(self, uri: str) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            message = describe_s3_error(exc, self.uri, self.bucket, uri)
            if message is None:
                raise
            raise StoreError(message) from exc


def describe_s3_error(exc: BaseException, store_uri: str, bucket: str, uri: str) -> str | None:
    """A StoreError message naming the setting and the fix, or None for errors that are not boto's.
    Object-level 404s never get here: read_bytes and exists handle them first."""
    problem = aws.describe_access_problem(exc)
    if problem:
        return f"cannot use the store {uri}: {problem}"
    code = aws.error_code(exc)
    if code in _MISSING_BUCKET:
        return (f"bucket {bucket!r} does not exist (CYTO_STORE={store_uri}): "
                "create it, or set CYTO_STORE to the lab's bucket")
    if code in _DENIED:
        return (f"access denied to {uri}: the AWS credentials in use need s3:ListBucket, s3:GetObject and "
                "s3:PutObject on the bucket (check AWS_PROFILE / the instance role, and CYTO_STORE)")
    if type(exc).__module__.startswith(("botocore.", "boto3.")):
        return f"S3 error on {uri}: {exc}"
    return None
