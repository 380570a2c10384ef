"""Where a report is reached: a presigned link that moto's S3 serves as a web page, or a local path."""

from __future__ import annotations

import urllib.request
from urllib.parse import parse_qs, urlparse

import boto3

from bot.report.links import LINK_LIFETIME_S, report_link
from bot.store.local import LocalStore
from bot.store.s3 import S3Store
from tests.aws.conftest import Aws
from tests.timeouts import seconds

pytest_plugins = ["tests.aws.conftest"]


def test_a_report_in_s3_gets_a_presigned_link_that_opens_as_a_page(aws: Aws) -> None:
    boto3.client("s3").create_bucket(Bucket="lab-bucket")
    store = S3Store("lab-bucket", "cyto")
    key = "Output/2018-12-05/b7/_runs/abc123/report.html"
    store.write_bytes(key, b"<!DOCTYPE html><p>report</p>")
    link = report_link(store, key)
    assert link.path == "s3://lab-bucket/cyto/" + key and link.lifetime_text == "7 days"
    assert link.url is not None and parse_qs(urlparse(link.url).query)["X-Amz-Expires"] == [str(LINK_LIFETIME_S)]
    with urllib.request.urlopen(link.url, timeout=seconds(10)) as response:  # no AWS credentials on this request
        assert response.read() == b"<!DOCTYPE html><p>report</p>"
        assert response.headers["Content-Type"].startswith("text/html")


def test_a_local_report_is_its_path(tmp_path) -> None:
    store = LocalStore(tmp_path / "my store")
    link = report_link(store, "Output/2018-12-05/b7/_runs/abc123/report.html")
    assert link.url is None and link.lifetime_s is None
    assert link.path == f"{tmp_path}/my store/Output/2018-12-05/b7/_runs/abc123/report.html"
