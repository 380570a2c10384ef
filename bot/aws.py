"""boto3 clients for the AWS store and executor, with botocore's retry modes.

Credentials, region and endpoint come from boto3's own chain (`AWS_PROFILE`, `AWS_ACCESS_KEY_ID`,
instance roles, `AWS_REGION`, `AWS_ENDPOINT_URL`...), so nothing here reads them itself.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

# "standard": throttling errors (TooManyRequestsException) and 5xx are retried with jittered
# exponential backoff, each thread on its own; the executor's bounded submit pool caps the burst.
# "adaptive" adds a shared client-side rate limiter, but it recovers slowly: against moto, 3
# throttles among 5 sequential SubmitJobs cost 4.6 s with it and 1.3 s without.
DEFAULT_RETRY_MODE = "standard"
DEFAULT_MAX_ATTEMPTS = 10

CREDENTIALS_FIX = ("set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                   "or run where an instance/task role provides them")


def client(service: str, *, retry_mode: str = DEFAULT_RETRY_MODE, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
           max_pool_connections: int = 10, session: boto3.session.Session | None = None) -> Any:
    config = Config(retries={"mode": retry_mode, "max_attempts": max_attempts},
                    max_pool_connections=max_pool_connections, connect_timeout=10, read_timeout=60)
    return (session or boto3.session.Session()).client(service, config=config)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def describe_access_problem(exc: BaseException) -> str | None:
    """Plain words for failures that are about credentials, region or endpoint, not the request."""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return f"no AWS credentials found: {CREDENTIALS_FIX}"
    if isinstance(exc, NoRegionError):
        return "no AWS region configured: set AWS_REGION (for example eu-west-1)"
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach AWS at {exc.kwargs.get('endpoint_url')}: check AWS_REGION and AWS_ENDPOINT_URL"
    code = error_code(exc)
    if code in ("InvalidAccessKeyId", "UnrecognizedClientException", "InvalidClientTokenId",
                "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException"):
        return f"the AWS credentials in use are invalid or expired ({code}): {CREDENTIALS_FIX}"
    return None
