"""Move a job's files between the store and the job's local work directory.

Two kinds of URI are understood:

- a local store: `file:///abs/path/...` (percent-encoded, as `Path.as_uri()` writes it) or a plain
  absolute path;
- S3: `s3://bucket/prefix/`, through `boto3.client("s3")` and boto3's own configuration (the
  standard credential chain, `AWS_REGION`, `AWS_ENDPOINT_URL`, ...). boto3 is imported only when an
  s3:// URI is used, so a local job needs nothing beyond the standard library.

A prefix always names a folder: `s3://b/Input/A1` means the keys under `Input/A1/`, never those of
`Input/A10/`. Keys keep their path relative to the prefix, and a key that would land outside the
target directory (`..`, a leading `/`) is refused.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from container.atomic import create_beside

S3_DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys


class StagingError(RuntimeError):
    """Files could not be copied to or from the store; the message names the URI and the cause."""


class NotFound(StagingError):
    """The object or folder named is not in the store."""


@dataclass(frozen=True)
class LocalLocation:
    path: Path


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @property
    def folder_prefix(self) -> str:
        """The key as a folder prefix: '' (the whole bucket) or ending with '/'."""
        return self.key if not self.key or self.key.endswith("/") else self.key + "/"


Location = LocalLocation | S3Location


def parse_uri(uri: str) -> Location:
    """Parse a `file://`, plain absolute path or `s3://` URI; raise StagingError otherwise."""
    if uri.startswith("s3://"):
        return _parse_s3(uri)
    if uri.startswith("file:"):
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise StagingError(f"{uri!r}: file URIs must name a local path (file:///abs/path)")
        path = unquote(parts.path)
    elif "://" in uri:
        raise StagingError(f"{uri!r}: unsupported scheme; use file:///abs/path or s3://bucket/prefix/")
    else:
        path = uri
    if not path.startswith("/"):
        raise StagingError(f"{uri!r}: a local path must be absolute")
    _refuse_dot_dot(uri, PurePosixPath(path).parts)
    return LocalLocation(Path(path))


def _parse_s3(uri: str) -> S3Location:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise StagingError(f"{uri!r}: no bucket name (expected s3://bucket/prefix/)")
    _refuse_dot_dot(uri, key.split("/"))
    return S3Location(bucket, key)


def _refuse_dot_dot(uri: str, parts: Any) -> None:
    if ".." in parts:
        raise StagingError(f"{uri!r}: '..' is not allowed in a store URI")


def join_uri(prefix_uri: str, name: str) -> str:
    """`prefix_uri` taken as a folder, plus `name` (`s3://b/Logs/A1` + `x.log` -> `s3://b/Logs/A1/x.log`)."""
    return prefix_uri + name if prefix_uri.endswith("/") else f"{prefix_uri}/{name}"


def safe_target(dest: Path, relative: str) -> Path:
    """`dest / relative`, refusing a relative path that would land outside `dest`."""
    parts = relative.split("/")
    if relative.startswith("/") or ".." in parts or not relative.strip("/"):
        raise StagingError(f"refusing to stage {relative!r}: it would land outside {dest}")
    target = (dest / relative).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise StagingError(f"refusing to stage {relative!r}: it would land outside {dest}")
    return target


# -- download ---------------------------------------------------------------------------------


def download_prefix(uri: str, dest: Path, *, page_size: int | None = None) -> list[Path]:
    """Copy every object under the prefix `uri` into `dest`; return the local files, sorted.

    Raise StagingError when the prefix does not exist or holds no objects. `page_size` caps the keys
    S3 lists a page (S3's own cap, 1,000, by default).
    """
    dest.mkdir(parents=True, exist_ok=True)
    location = parse_uri(uri)
    if isinstance(location, S3Location):
        files = _download_s3(uri, location, dest, page_size)
    else:
        files = _download_local(uri, location.path, dest)
    if not files:
        raise StagingError(f"no objects under {uri}: the input prefix is empty")
    return sorted(files)


def download_file(uri: str, target: Path) -> Path:
    """Copy the one object `uri` (an S3 key or a local file) to `target`; NotFound when it is absent."""
    location = parse_uri(uri)
    if isinstance(location, S3Location):
        if not location.key or location.key.endswith("/"):
            raise StagingError(f"{uri!r} names a folder, not an object")
        target.parent.mkdir(parents=True, exist_ok=True)
        with _s3_errors(uri):
            _s3_client().download_file(location.bucket, location.key, str(target))
    elif location.path.is_file():
        _copy_file(location.path, target)
    else:
        raise NotFound(f"{uri} does not exist" if not location.path.exists() else f"{uri} is not a file")
    return target


def _download_local(uri: str, source: Path, dest: Path) -> list[Path]:
    if not source.exists():
        raise StagingError(f"{uri} does not exist")
    if not source.is_dir():
        raise StagingError(f"{uri} is not a folder")
    files = []
    for path in _walk_files(source):
        target = safe_target(dest, path.relative_to(source).as_posix())
        _copy_file(path, target)
        files.append(target)
    return files


def _download_s3(uri: str, location: S3Location, dest: Path, page_size: int | None = None) -> list[Path]:
    client = _s3_client()
    prefix = location.folder_prefix
    files = []
    for key in _list_s3_keys(client, uri, location.bucket, prefix, page_size):
        relative = key[len(prefix) :]
        if not relative or key.endswith("/"):
            continue  # a zero-byte "folder" marker made by the S3 console
        target = safe_target(dest, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        with _s3_errors(f"s3://{location.bucket}/{key}"):
            client.download_file(location.bucket, key, str(target))
        files.append(target)
    return files


def _list_s3_keys(client: Any, uri: str, bucket: str, prefix: str, page_size: int | None = None) -> Iterator[str]:
    paginator = client.get_paginator("list_objects_v2")
    pages = {"PaginationConfig": {"PageSize": page_size}} if page_size else {}
    with _s3_errors(uri):
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, **pages):
            for item in page.get("Contents", []):
                yield item["Key"]


# -- upload -----------------------------------------------------------------------------------


def upload(source: Path, uri: str) -> list[str]:
    """Upload a directory under the prefix `uri`, or one file to `uri`; return the URIs written.

    For one file, a `uri` ending with '/' is a folder and the file keeps its name.
    """
    if source.is_dir():
        return upload_dir(source, uri)
    return [upload_file(source, join_uri(uri, source.name) if uri.endswith("/") else uri)]


def upload_dir(source: Path, prefix_uri: str) -> list[str]:
    """Upload every file under `source` to the prefix `prefix_uri`, keeping relative paths."""
    written = []
    for path in _walk_files(source):
        written.append(upload_file(path, join_uri(prefix_uri, path.relative_to(source).as_posix())))
    return written


def upload_file(source: Path, uri: str) -> str:
    """Upload one local file to exactly `uri` (an object key or a local file path)."""
    location = parse_uri(uri)
    if isinstance(location, S3Location):
        if not location.key or location.key.endswith("/"):
            raise StagingError(f"{uri!r} names a folder, not an object")
        client = _s3_client()
        with _s3_errors(uri):
            client.upload_file(str(source), location.bucket, location.key)
    else:
        _copy_file(source, location.path)
    return uri


def replace_prefix(source: Path, prefix_uri: str, last: str) -> tuple[list[str], list[str]]:
    """Make the folder `prefix_uri` hold exactly the files under `source`; return (URIs written,
    relative paths removed).

    `last` (a file directly in `source`, e.g. result.json) is removed from the folder first and
    uploaded last, so while the folder is being replaced it has no `last` and, once `last` is back,
    everything beside it came from `source`: files an earlier run or attempt left are deleted.
    """
    delete_under(prefix_uri, [last])
    files = {path.relative_to(source).as_posix(): path for path in _walk_files(source)}
    written = [upload_file(path, join_uri(prefix_uri, relative))
               for relative, path in files.items() if relative != last]
    stale = [relative for relative in list_under(prefix_uri) if relative not in files]
    delete_under(prefix_uri, stale)
    if last in files:
        written.append(upload_file(files[last], join_uri(prefix_uri, last)))
    return written, stale


def list_under(prefix_uri: str) -> list[str]:
    """The files under the folder `prefix_uri`, as sorted paths relative to it ([] when it is absent)."""
    location = parse_uri(prefix_uri)
    if isinstance(location, S3Location):
        prefix = location.folder_prefix
        keys = _list_s3_keys(_s3_client(), prefix_uri, location.bucket, prefix)
        return sorted(key[len(prefix):] for key in keys if not key.endswith("/"))
    if not location.path.is_dir():
        return []
    return sorted(path.relative_to(location.path).as_posix() for path in _walk_files(location.path))


def delete_under(prefix_uri: str, relatives: Sequence[str]) -> None:
    """Delete these files (paths relative to the folder `prefix_uri`); a missing one is not an error."""
    if not relatives:
        return
    location = parse_uri(prefix_uri)
    if isinstance(location, S3Location):
        _delete_s3(prefix_uri, location, relatives)
        return
    root = location.path
    for relative in relatives:
        target = _deletable(root, relative)
        try:
            target.unlink(missing_ok=True)
            _remove_empty_parents(target.parent, root)
        except OSError as exc:
            raise StagingError(f"cannot remove {target}: {exc.strerror or exc}") from exc


def _delete_s3(prefix_uri: str, location: S3Location, relatives: Sequence[str]) -> None:
    client = _s3_client()
    keys = [location.folder_prefix + relative for relative in relatives]
    for start in range(0, len(keys), S3_DELETE_BATCH):
        chunk = keys[start:start + S3_DELETE_BATCH]
        with _s3_errors(prefix_uri):
            response = client.delete_objects(Bucket=location.bucket, Delete={
                "Objects": [{"Key": key} for key in chunk], "Quiet": True})
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            raise StagingError(f"s3://{location.bucket}/{first.get('Key')}: could not delete "
                               f"({first.get('Code')}: {first.get('Message')}); {len(errors)} object(s) left")


def _deletable(root: Path, relative: str) -> Path:
    """`root / relative`, refusing a path that leaves `root`; the last part is not resolved, so a
    symlink is removed itself, never what it points to."""
    parts = relative.split("/")
    target = root / relative
    if relative.startswith("/") or ".." in parts or not relative.strip("/") or \
            not target.parent.resolve().is_relative_to(root.resolve()):
        raise StagingError(f"refusing to remove {relative!r}: it is outside {root}")
    return target


def _remove_empty_parents(folder: Path, root: Path) -> None:
    """Remove `folder` and its parents up to (not including) `root` while they are empty."""
    root = root.resolve()
    folder = folder.resolve()
    while folder != root and folder.is_relative_to(root):
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (or gone): stop here
        folder = folder.parent


# -- helpers ----------------------------------------------------------------------------------


def _walk_files(root: Path) -> Iterator[Path]:
    """Regular files under `root`, recursively, in sorted order (symlinked folders not followed)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if path.is_file():
                yield path


def _copy_file(source: Path, target: Path) -> None:
    """Copy via a temporary file and a rename, so a reader never sees half a file."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = create_beside(target)  # with the user's umask, unlike mkstemp
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise StagingError(f"cannot copy {source} to {target}: {exc.strerror or exc}") from exc


def _s3_client() -> Any:
    try:
        import boto3
    except ImportError as exc:  # pragma: no cover - boto3 is in the job image
        raise StagingError("s3:// URIs need boto3, which is not installed") from exc
    # botocore reads AWS_DEFAULT_REGION and the profile, not AWS_REGION; honour it as the AWS CLI does.
    region = (os.environ.get("AWS_REGION") or "").strip() or None
    try:
        return boto3.session.Session(region_name=region).client("s3")
    except Exception as exc:
        if not _is_boto_error(exc):
            raise
        raise StagingError(f"cannot make an S3 client (check AWS_PROFILE and AWS_REGION): {exc}") from exc


@contextmanager
def _s3_errors(uri: str) -> Iterator[None]:
    """Turn boto3/botocore failures into a StagingError naming `uri`."""
    try:
        yield
    except Exception as exc:
        if not _is_boto_error(exc):
            raise
        missing = _s3_error_code(exc) in ("404", "NoSuchKey", "NotFound")
        raise (NotFound if missing else StagingError)(_describe_s3_error(uri, exc)) from exc


def _is_boto_error(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith(("botocore.", "boto3.", "s3transfer."))


def _s3_error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _describe_s3_error(uri: str, exc: BaseException) -> str:
    code = _s3_error_code(exc)
    bucket = uri.removeprefix("s3://").partition("/")[0]
    if code == "NoSuchBucket" or "NoSuchBucket" in str(exc):
        return f"{uri}: bucket {bucket!r} does not exist"
    if code in ("404", "NoSuchKey"):
        return f"{uri} does not exist"
    if code in ("403", "AccessDenied"):
        return f"{uri}: access denied (check the job's AWS credentials and bucket policy)"
    return f"{uri}: {exc}"
