"""boto3 clients for the AWS store and executor, with botocore's retry modes.

Credentials and endpoint come from boto3's own chain (`AWS_PROFILE`, `AWS_ACCESS_KEY_ID`, instance
roles, `AWS_ENDPOINT_URL`...). The region follows the AWS CLI v2 order: `AWS_REGION`, then
`AWS_DEFAULT_REGION`, then the profile's `region`. botocore itself reads only the last two, so
`make_session()` passes `AWS_REGION` on explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    InvalidRegionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)

# "standard": throttling errors (TooManyRequestsException) and 5xx are retried with jittered
# exponential backoff, each thread on its own; the executor's bounded submit pool caps the burst.
# "adaptive" adds a shared client-side rate limiter, but it recovers slowly: against moto, 3
# throttles among 5 sequential SubmitJobs cost 4.6 s with it and 1.3 s without.
DEFAULT_RETRY_MODE = "standard"
DEFAULT_MAX_ATTEMPTS = 10

CREDENTIALS_FIX = ("set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                   "or run where an instance/task role provides them")


REGION_FIX = "set AWS_REGION (for example eu-west-1), or a region in the AWS profile (aws configure set region ...)"


def env_region(env: Mapping[str, str] | None = None) -> str | None:
    """The region named by the environment, AWS_REGION first (as the AWS CLI v2 reads it)."""
    env = os.environ if env is None else env
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        value = (env.get(name) or "").strip()
        if value:
            return value
    return None


def make_session() -> boto3.session.Session:
    """A boto3 session honouring AWS_PROFILE, AWS_REGION, AWS_DEFAULT_REGION and the profile's region."""
    return boto3.session.Session(region_name=env_region())


def region() -> tuple[str | None, str]:
    """The region clients will use, and where it came from (for `cyto doctor`)."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        value = (os.environ.get(name) or "").strip()
        if value:
            return value, name
    found = boto3.session.Session().region_name
    profile = os.environ.get("AWS_PROFILE") or "default"
    return (found, f"profile {profile}") if found else (None, "nowhere")


def client(service: str, *, retry_mode: str = DEFAULT_RETRY_MODE, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
           max_pool_connections: int = 10, session: boto3.session.Session | None = None) -> Any:
    """A client with botocore's retries: `max_attempts` counts every attempt, the first included.
    boto3's own AWS_RETRY_MODE and AWS_MAX_ATTEMPTS, when an operator sets them, win (a Config given
    to botocore would otherwise silently override them)."""
    config = Config(retries={"mode": os.environ.get("AWS_RETRY_MODE") or retry_mode,  # type: ignore[typeddict-item]
                             "total_max_attempts": _env_attempts() or max_attempts},
                    max_pool_connections=max_pool_connections, connect_timeout=10, read_timeout=60)
    return (session or make_session()).client(service, config=config)



def _env_attempts() -> int | None:
    text = os.environ.get("AWS_MAX_ATTEMPTS")
    if not text:
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"AWS_MAX_ATTEMPTS={text!r}: expected a whole number of attempts, 1 or more")
    return int(text)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def describe_access_problem(exc: BaseException) -> str | None:
    """Plain words for failures that are about credentials, region or endpoint, not the request."""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return f"no AWS credentials found: {CREDENTIALS_FIX}"
    if isinstance(exc, NoRegionError):
        return f"no AWS region configured: {REGION_FIX}"
    if isinstance(exc, InvalidRegionError):
        return f"{exc} (AWS_REGION / AWS_DEFAULT_REGION): {REGION_FIX}"
    if isinstance(exc, ProfileNotFound):
        return (f"AWS profile {exc.kwargs.get('profile')!r} is not in the AWS config files (AWS_PROFILE): "
                "set AWS_PROFILE to one that `aws configure list-profiles` shows, or unset it")
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach AWS at {exc.kwargs.get('endpoint_url')}: check AWS_REGION and AWS_ENDPOINT_URL"
    code = error_code(exc)
    if code in ("InvalidAccessKeyId", "UnrecognizedClientException", "InvalidClientTokenId",
                "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException"):
        return f"the AWS credentials in use are invalid or expired ({code}): {CREDENTIALS_FIX}"
    return None
