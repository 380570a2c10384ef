"""What the plan-time parameter check costs on S3 (moto over HTTP): time and requests.

    python bench/bench_plan_params.py [--analyses 2000] [--files 2] [--with-params 10]

A batch of ANALYSES folders with FILES objects each, every WITH_PARAMS-th of them holding a
params.json. Prints the time and S3 requests of listing the batch (what plan did before) and of
the parameter check added to it (one listing of the batch, one GetObject per params.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--analyses", type=int, default=2000)
    parser.add_argument("--files", type=int, default=2)
    parser.add_argument("--with-params", type=int, default=10, help="every Nth analysis has a params.json")
    args = parser.parse_args()

    from tests.aws.server import CountingMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = CountingMotoServer()
    server.start()
    os.environ.update(AWS_ENDPOINT_URL=server.endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    import boto3
    from moto.s3.models import s3_backends

    from bot import catalog
    from bot.parameters import check_parameters
    from bot.store.s3 import S3Store

    boto3.client("s3").create_bucket(Bucket="lab-bucket")
    backend = s3_backends["123456789012"]["aws"]
    prefix = "Input/2024-01-02/big"
    with_params = 0
    for i in range(args.analyses):
        for f in range(args.files):
            backend.put_object("lab-bucket", f"{prefix}/A{i:05d}/well-{f:03d}.fcs", b"")
        if i % args.with_params == 0:
            backend.put_object("lab-bucket", f"{prefix}/A{i:05d}/params.json", json.dumps({"transform": "arcsinh"})
                               .encode())
            with_params += 1
    store = S3Store.from_uri("s3://lab-bucket")
    store.check()

    server.middleware.reset()
    started = time.perf_counter()
    ref, analyses = catalog.resolve_batch(store, "2024-01-02", "big")
    listed = time.perf_counter() - started
    list_calls = server.middleware.calls["s3:ListObjectsV2"]

    server.middleware.reset()
    started = time.perf_counter()
    check_parameters(store, ref, analyses, "cytometry", {"transform": "logicle"})
    checked = time.perf_counter() - started
    calls = server.middleware.calls
    print(f"{len(analyses)} analyses, {args.files} files each, {with_params} with a params.json")
    print(f"list the batch (plan before):  {listed:.2f} s, {list_calls} ListObjectsV2")
    print(f"parameter check (added):       {checked:.2f} s, {calls['s3:ListObjectsV2']} ListObjectsV2, "
          f"{calls['s3:GET']} GetObject")
    server.stop()


if __name__ == "__main__":
    main()
