"""Listing a batch of 10,000 analyses in S3 (moto): time and ListObjectsV2 calls.

    python bench/bench_s3_listing.py [--analyses 10000]

The objects are put straight into the in-process moto server's backend (10,000 PutObject calls over
HTTP would dominate the run); the listing itself goes through boto3 over HTTP like production.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--analyses", type=int, default=10_000)
    args = parser.parse_args()

    from tests.aws.server import CountingMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = CountingMotoServer()
    server.start()
    os.environ.update(AWS_ENDPOINT_URL=server.endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    import boto3

    from bot import catalog
    from bot.store.s3 import S3Store
    from tests.aws.batch_setup import seed_objects

    boto3.client("s3").create_bucket(Bucket="lab-bucket")
    # Two files per analysis, as a lab drop would have: the listing must not pay for them.
    keys = [f"Input/2024-01-02/big/A{i:05d}/{name}" for i in range(args.analyses) for name in ("a.fcs", "b.fcs")]
    seed_objects("lab-bucket", keys)
    store = S3Store.from_uri("s3://lab-bucket")
    store.check()
    server.middleware.reset()
    started = time.perf_counter()
    _, analyses = catalog.resolve_batch(store, "2024-01-02", "big")
    wall = time.perf_counter() - started
    calls = server.middleware.calls["s3:ListObjectsV2"]
    print(f"listed {len(analyses)} analyses ({len(keys)} objects) in {wall:.2f} s with {calls} ListObjectsV2 calls "
          f"(Delimiter='/', 1,000 common prefixes a page)")
    server.stop()


if __name__ == "__main__":
    main()
