"""The S3 store against moto's S3 over HTTP, with the real boto3 code paths."""

from __future__ import annotations

import boto3
import pytest

from bot import catalog
from bot.store import ObjectInfo, ObjectNotFound, StoreError, open_store
from bot.store.s3 import S3Store, parse_s3_uri
from tests.aws.batch_setup import put_text, seed_objects
from tests.aws.conftest import Aws

pytest_plugins = ["tests.aws.conftest"]


@pytest.fixture
def bucket(aws: Aws) -> str:
    boto3.client("s3").create_bucket(Bucket="lab-bucket")
    return "lab-bucket"


def test_uri_parsing_and_uris() -> None:
    assert parse_s3_uri("s3://lab-bucket") == ("lab-bucket", "")
    assert parse_s3_uri("s3://lab-bucket/cyto/prod/") == ("lab-bucket", "cyto/prod")
    store = S3Store.from_uri("s3://lab-bucket/cyto/")
    assert store.uri == "s3://lab-bucket/cyto"
    assert store.uri_for("Input/2024-01-02/b1/A01/") == "s3://lab-bucket/cyto/Input/2024-01-02/b1/A01/"
    assert S3Store.from_uri("s3://lab-bucket").uri_for("Logs/x.log") == "s3://lab-bucket/Logs/x.log"
    assert isinstance(open_store("s3://lab-bucket/x"), S3Store)


@pytest.mark.parametrize("uri", ["s3://", "s3://Lab_Bucket", "s3://ab", "s3://bucket/a//b", "s3://bucket/../x",
                                 "s3://-bucket"])
def test_invalid_uri_names_the_setting(uri: str) -> None:
    with pytest.raises(StoreError, match=r"CYTO_STORE=.*s3://bucket\[/prefix\]|CYTO_STORE=.*prefix"):
        S3Store.from_uri(uri)


def test_read_write_exists_and_listing_under_a_prefix(bucket: str) -> None:
    store = S3Store.from_uri(f"s3://{bucket}/lab")
    store.check()
    store.write_bytes("Input/2024-01-02/b1/A01/x.txt", b"hello")
    store.write_bytes("Input/2024-01-02/b1/A02/sub/y.txt", b"hi")
    put_text(bucket, {"lab/Input/2024-01-02/b1/A03/": "", "lab/Input/2024-01-02/b1/.hidden/z": "z",
                      "elsewhere/Input/2024-01-02/b1/A99/x": "not ours"})
    assert store.read_bytes("Input/2024-01-02/b1/A01/x.txt") == b"hello"
    assert store.exists("Input/2024-01-02/b1/A01/x.txt")
    assert not store.exists("Input/2024-01-02/b1/A01/nope.txt")
    with pytest.raises(ObjectNotFound, match=r"nope\.txt"):
        store.read_bytes("Input/2024-01-02/b1/A01/nope.txt")
    assert list(store.list_children("Input/2024-01-02/b1/")) == ["A01", "A02", "A03"]
    assert list(store.list_children("Input/")) == ["2024-01-02"]
    assert list(store.list_children("Input/2030-01-01/")) == []
    assert list(store.list_objects("Input/2024-01-02/b1/A02/")) == [
        ObjectInfo("Input/2024-01-02/b1/A02/sub/y.txt", 2)]
    with pytest.raises(StoreError, match="outside"):
        store.read_bytes("../elsewhere/x")


def test_listing_streams_every_page(bucket: str, aws: Aws) -> None:
    # 1,001 analyses need two ListObjectsV2 pages (1,000 common prefixes each at most).
    seed_objects(bucket, [f"Input/2024-01-02/big/A{i:04d}/x" for i in range(1001)])
    store = S3Store.from_uri(f"s3://{bucket}")
    before = aws.calls("s3:ListObjectsV2")
    names = list(store.list_children("Input/2024-01-02/big/"))
    assert len(names) == 1001 and names == sorted(names)
    assert aws.calls("s3:ListObjectsV2") - before == 2
    ref, analyses = catalog.resolve_batch(store, "2024-01-02", "big")
    assert len(analyses) == 1001 and ref.batch == "big"


def test_missing_bucket_names_the_setting(aws: Aws) -> None:
    store = S3Store.from_uri("s3://no-such-bucket/lab")
    with pytest.raises(StoreError, match=r"bucket 'no-such-bucket' does not exist \(CYTO_STORE=s3://no-such-bucket/lab\)"):
        store.check()
    with pytest.raises(StoreError, match="does not exist"):
        list(store.list_children("Input/"))


def test_no_credentials_names_the_fix(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StoreError, match="no AWS credentials found: set AWS_PROFILE"):
        S3Store.from_uri("s3://lab-bucket").check()
    assert aws.calls("s3:ListObjectsV2") == 0  # nothing left the machine


def test_access_denied_names_the_credentials(bucket: str, aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    iam = boto3.client("iam")
    iam.create_user(UserName="intern")
    key = iam.create_access_key(UserName="intern")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    aws.server.moto_api("reset-auth", b"0")  # moto enforces IAM policies from now on
    try:
        with pytest.raises(StoreError, match=r"access denied to s3://lab-bucket: .*AWS_PROFILE"):
            S3Store.from_uri("s3://lab-bucket").check()
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWN000000000")
        with pytest.raises(StoreError, match="invalid or expired"):
            S3Store.from_uri("s3://lab-bucket").check()
    finally:
        aws.server.moto_api("reset-auth", b"inf")
