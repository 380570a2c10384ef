"""container/staging.py against a real local folder and against S3 as moto implements it (in process)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from container.staging import (
    LocalLocation,
    S3Location,
    StagingError,
    download_prefix,
    join_uri,
    list_under,
    parse_uri,
    replace_prefix,
    safe_target,
    upload,
    upload_dir,
    upload_file,
)

BUCKET = "lab-bucket"


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- URIs and paths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file:///data/Input/A1/", LocalLocation(Path("/data/Input/A1"))),
        ("file:///data/My%20Batch/A%231", LocalLocation(Path("/data/My Batch/A#1"))),
        ("file://localhost/data/x", LocalLocation(Path("/data/x"))),
        ("/data/Input/A1", LocalLocation(Path("/data/Input/A1"))),
        ("s3://bucket", S3Location("bucket", "")),
        ("s3://bucket/Input/2024-01-02/b/A1/", S3Location("bucket", "Input/2024-01-02/b/A1/")),
    ],
)
def test_parse_uri(uri: str, expected: Any) -> None:
    assert parse_uri(uri) == expected


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("relative/path", "must be absolute"),
        ("file://otherhost/data", "local path"),
        ("gs://bucket/x", "unsupported scheme"),
        ("s3:///nobucket", "no bucket"),
        ("s3://bucket/Input/../Output/", "'..'"),
        ("/data/../etc", "'..'"),
    ],
)
def test_parse_uri_refuses(uri: str, message: str) -> None:
    with pytest.raises(StagingError, match=message):
        parse_uri(uri)


def test_s3_prefix_is_a_folder() -> None:
    assert S3Location("b", "Input/A1").folder_prefix == "Input/A1/"
    assert S3Location("b", "Input/A1/").folder_prefix == "Input/A1/"
    assert S3Location("b", "").folder_prefix == ""


def test_join_uri() -> None:
    assert join_uri("s3://b/Logs/A1/", "attempt-1.log") == "s3://b/Logs/A1/attempt-1.log"
    assert join_uri("s3://b/Logs/A1", "attempt-1.log") == "s3://b/Logs/A1/attempt-1.log"


@pytest.mark.parametrize("relative", ["../x", "a/../../x", "/etc/passwd", "a/..", "", "/"])
def test_safe_target_refuses_escapes(tmp_path: Path, relative: str) -> None:
    with pytest.raises(StagingError, match="refusing"):
        safe_target(tmp_path / "in", relative)


def test_safe_target_keeps_relative_paths(tmp_path: Path) -> None:
    assert safe_target(tmp_path, "a/b/c.txt") == (tmp_path / "a/b/c.txt").resolve()


# -- local store --------------------------------------------------------------------------------


def test_local_download_keeps_relative_paths(tmp_path: Path) -> None:
    source = tmp_path / "store" / "Input" / "My Batch" / "A1"
    write(source / "a.txt", b"a")
    write(source / "sub" / "deeper" / "b.bin", b"\x00\xff")
    write(tmp_path / "store" / "Input" / "My Batch" / "A10" / "other.txt", b"not mine")
    dest = tmp_path / "in"

    files = download_prefix(source.as_uri() + "/", dest)

    assert files == [dest / "a.txt", dest / "sub" / "deeper" / "b.bin"]
    assert tree(dest) == {"a.txt": b"a", "sub/deeper/b.bin": b"\x00\xff"}


def test_local_download_of_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(StagingError, match="does not exist"):
        download_prefix((tmp_path / "nope").as_uri(), tmp_path / "in")


def test_local_download_of_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(StagingError, match="no objects"):
        download_prefix(str(tmp_path / "empty"), tmp_path / "in")


def test_local_upload_dir_and_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write(out / "result.json", b"{}")
    write(out / "plots" / "p.png", b"png")
    log = write(tmp_path / "job.log", b"log line\n")
    store = tmp_path / "store"

    written = upload_dir(out, (store / "Output" / "A1").as_uri() + "/")
    upload_file(log, (store / "Logs" / "A1" / "attempt-1.log").as_uri())
    upload(log, str(store / "Logs" / "A2") + "/")

    assert sorted(written) == [
        (store / "Output/A1").as_uri() + "/plots/p.png",
        (store / "Output/A1").as_uri() + "/result.json",
    ]
    assert tree(store) == {
        "Output/A1/result.json": b"{}",
        "Output/A1/plots/p.png": b"png",
        "Logs/A1/attempt-1.log": b"log line\n",
        "Logs/A2/job.log": b"log line\n",
    }


def test_local_replace_prefix_leaves_exactly_the_new_files(tmp_path: Path) -> None:
    store = tmp_path / "lab store"
    earlier = {"result.json": b'{"run_id": "old"}', "stats.csv": b"old", "plots/stale.png": b"png",
               "plots/deep/er.png": b"png", ".stats.csv.tmp": b"half a copy"}
    for name, data in earlier.items():
        write(store / "Output/A1" / name, data)
    write(store / "Output/A10/keep.png", b"another analysis")
    out = tmp_path / "out"
    write(out / "stats.csv", b"new")
    write(out / "plots/p.png", b"new png")
    write(out / "result.json", b'{"run_id": "new"}')
    prefix = (store / "Output" / "A1").as_uri() + "/"

    written, removed = replace_prefix(out, prefix, "result.json")

    assert written[-1] == prefix + "result.json", "result.json is written last"
    assert sorted(removed) == [".stats.csv.tmp", "plots/deep/er.png", "plots/stale.png"]
    assert tree(store) == {"Output/A1/stats.csv": b"new", "Output/A1/plots/p.png": b"new png",
                           "Output/A1/result.json": b'{"run_id": "new"}', "Output/A10/keep.png": b"another analysis"}
    assert not (store / "Output/A1/plots/deep").exists(), "emptied folders are removed"
    assert list_under(prefix) == ["plots/p.png", "result.json", "stats.csv"]


def test_local_replace_prefix_into_a_new_folder_and_removing_a_symlink_not_its_target(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write(out / "result.json", b"{}")
    assert replace_prefix(out, str(tmp_path / "store/Output/A1"), "result.json") == (
        [str(tmp_path / "store/Output/A1") + "/result.json"], [])
    precious = write(tmp_path / "elsewhere/precious.txt", b"keep")
    (tmp_path / "store/Output/A1/link.txt").symlink_to(precious)
    _, removed = replace_prefix(out, str(tmp_path / "store/Output/A1"), "result.json")
    assert removed == ["link.txt"] and precious.read_bytes() == b"keep"


# -- S3 (moto, in process) ----------------------------------------------------------------------


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from moto import mock_aws

    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        import boto3

        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client


def put(client: Any, key: str, body: bytes) -> None:
    client.put_object(Bucket=BUCKET, Key=key, Body=body)


def keys(client: Any, prefix: str = "") -> dict[str, bytes]:
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"]] = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
    return found


def test_s3_download_keeps_relative_paths_and_stays_in_the_folder(s3: Any, tmp_path: Path) -> None:
    put(s3, "Input/2024-01-02/b/A1/a.txt", b"hello")
    put(s3, "Input/2024-01-02/b/A1/sub/b.bin", b"\x00\x01")
    put(s3, "Input/2024-01-02/b/A1/sub/", b"")  # a console "folder" marker
    put(s3, "Input/2024-01-02/b/A10/other.txt", b"not mine")

    files = download_prefix(f"s3://{BUCKET}/Input/2024-01-02/b/A1", tmp_path / "in")

    assert files == [tmp_path / "in" / "a.txt", tmp_path / "in" / "sub" / "b.bin"]
    assert tree(tmp_path / "in") == {"a.txt": b"hello", "sub/b.bin": b"\x00\x01"}


def test_s3_download_paginates(s3: Any, tmp_path: Path) -> None:
    for index in range(7):  # list_objects_v2 returns at most 1,000 keys a page; here 2, so four pages
        put(s3, f"Input/A1/f{index:04d}.txt", b"x")
    files = download_prefix(f"s3://{BUCKET}/Input/A1/", tmp_path / "in", page_size=2)
    assert [f.name for f in files] == [f"f{index:04d}.txt" for index in range(7)]


@pytest.mark.parametrize("evil", ["Input/A1/../../escape.txt", "Input/A1//etc/escape.txt"])
def test_s3_download_refuses_keys_escaping_the_folder(s3: Any, tmp_path: Path, evil: str) -> None:
    put(s3, "Input/A1/ok.txt", b"ok")
    put(s3, evil, b"evil")
    with pytest.raises(StagingError, match="refusing"):
        download_prefix(f"s3://{BUCKET}/Input/A1/", tmp_path / "work" / "in")
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "work" / "escape.txt").exists()


def test_s3_download_of_empty_prefix(s3: Any, tmp_path: Path) -> None:
    put(s3, "Input/A10/x.txt", b"x")
    with pytest.raises(StagingError, match=r"no objects under s3://lab-bucket/Input/A1/"):
        download_prefix(f"s3://{BUCKET}/Input/A1/", tmp_path / "in")


def test_s3_download_from_missing_bucket(s3: Any, tmp_path: Path) -> None:
    with pytest.raises(StagingError, match="bucket 'no-such-bucket' does not exist"):
        download_prefix("s3://no-such-bucket/Input/A1/", tmp_path / "in")


def test_s3_upload_dir_and_file(s3: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    write(out / "result.json", b"{}")
    write(out / "plots" / "p.png", b"png")
    log = write(tmp_path / "job.log", b"line\n")

    upload_dir(out, f"s3://{BUCKET}/Output/A1/")
    upload(log, f"s3://{BUCKET}/Logs/A1/attempt-2.log")

    assert keys(s3) == {
        "Output/A1/result.json": b"{}",
        "Output/A1/plots/p.png": b"png",
        "Logs/A1/attempt-2.log": b"line\n",
    }


def test_s3_upload_to_missing_bucket(s3: Any, tmp_path: Path) -> None:
    log = write(tmp_path / "job.log", b"line\n")
    with pytest.raises(StagingError, match="does not exist"):
        upload_file(log, "s3://no-such-bucket/Logs/A1/attempt-1.log")


def test_s3_upload_needs_an_object_key(s3: Any, tmp_path: Path) -> None:
    log = write(tmp_path / "job.log", b"line\n")
    with pytest.raises(StagingError, match="names a folder"):
        upload_file(log, f"s3://{BUCKET}/Logs/A1/")


def test_s3_replace_prefix_deletes_what_an_earlier_run_left_in_batches(s3: Any, tmp_path: Path) -> None:
    put(s3, "Output/A1/result.json", b'{"run_id": "old"}')
    put(s3, "Output/A1/stats.csv", b"old")
    for i in range(1003):  # more than one DeleteObjects call (at most 1,000 keys each)
        put(s3, f"Output/A1/plots/p{i:04d}.png", b"png")
    put(s3, "Output/A10/keep.png", b"another analysis")
    put(s3, "Logs/A1/r1/attempt-1.log", b"log")
    out = tmp_path / "out"
    write(out / "stats.csv", b"new")
    write(out / "result.json", b'{"run_id": "new"}')

    written, removed = replace_prefix(out, f"s3://{BUCKET}/Output/A1", "result.json")

    assert written == [f"s3://{BUCKET}/Output/A1/stats.csv", f"s3://{BUCKET}/Output/A1/result.json"]
    assert len(removed) == 1003
    assert keys(s3) == {"Output/A1/stats.csv": b"new", "Output/A1/result.json": b'{"run_id": "new"}',
                        "Output/A10/keep.png": b"another analysis", "Logs/A1/r1/attempt-1.log": b"log"}
    assert list_under(f"s3://{BUCKET}/Output/A1/") == ["result.json", "stats.csv"]
    assert list_under(f"s3://{BUCKET}/Output/none/") == []


def test_s3_replace_prefix_in_a_missing_bucket_names_it(s3: Any, tmp_path: Path) -> None:
    write(tmp_path / "out" / "result.json", b"{}")
    with pytest.raises(StagingError, match="does not exist"):
        replace_prefix(tmp_path / "out", "s3://no-such-bucket/Output/A1/", "result.json")
