"""The minimal AWS Batch set-up a job needs, made through boto3 like the deploy stack would:
an IAM service role, a compute environment (for a managed one also an instance profile, a VPC
subnet and a security group), a job queue and job definitions running the container entrypoint."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

ENTRYPOINT = ["python", "-m", "container.entrypoint"]
ASSUME_BATCH = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "batch.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


@dataclass(frozen=True)
class BatchSetup:
    queue: str
    definition: str
    compute_environment: str
    bucket: str
    fargate_definition: str


def make_batch(prefix: str = "cyto", *, bucket: str = "lab-bucket", managed: bool = False, max_vcpus: int = 16,
               instance_types: tuple[str, ...] = ("m5.large",)) -> BatchSetup:
    """An UNMANAGED compute environment unless `managed` (which needs a VPC, and costs moto a second)."""
    iam = boto3.client("iam")
    batch = boto3.client("batch")
    role = iam.create_role(RoleName=f"{prefix}-batch-service", AssumeRolePolicyDocument=ASSUME_BATCH)["Role"]
    if managed:
        ec2 = boto3.client("ec2")
        profile = iam.create_instance_profile(InstanceProfileName=f"{prefix}-ecs-instance")["InstanceProfile"]
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName=f"{prefix}-sg", Description="batch", VpcId=vpc)["GroupId"]
        ce = batch.create_compute_environment(
            computeEnvironmentName=f"{prefix}-ce", type="MANAGED", state="ENABLED", serviceRole=role["Arn"],
            computeResources={"type": "EC2", "minvCpus": 0, "maxvCpus": max_vcpus, "desiredvCpus": 0,
                              "instanceTypes": list(instance_types), "subnets": [subnet],
                              "securityGroupIds": [group], "instanceRole": profile["Arn"]})
    else:
        ce = batch.create_compute_environment(computeEnvironmentName=f"{prefix}-ce", type="UNMANAGED",
                                              state="ENABLED", serviceRole=role["Arn"])
    order = [{"order": 1, "computeEnvironment": ce["computeEnvironmentArn"]}]
    queue = batch.create_job_queue(jobQueueName=f"{prefix}-queue", state="ENABLED", priority=1,
                                   computeEnvironmentOrder=order)
    definition = register_definition(batch, f"{prefix}-job")
    fargate = register_definition(batch, f"{prefix}-fargate-job", fargate=True)
    boto3.client("s3").create_bucket(Bucket=bucket)
    return BatchSetup(queue["jobQueueName"], definition, ce["computeEnvironmentName"], bucket, fargate)


def register_definition(batch: Any, name: str, *, fargate: bool = False) -> str:
    properties: dict[str, Any] = {
        "image": "ghcr.io/lab/cyto-job:1", "command": ENTRYPOINT,
        "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "2048"}],
    }
    if fargate:
        properties["executionRoleArn"] = "arn:aws:iam::123456789012:role/exec"
    batch.register_job_definition(jobDefinitionName=name, type="container", containerProperties=properties,
                                  platformCapabilities=["FARGATE" if fargate else "EC2"])
    return name


def put_text(bucket: str, files: dict[str, str]) -> None:
    s3 = boto3.client("s3", config=Config(max_pool_connections=16))
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda item: s3.put_object(Bucket=bucket, Key=item[0], Body=item[1].encode()), files.items()))


def seed_objects(bucket: str, keys: list[str], account: str = "123456789012") -> None:
    """Put many empty objects straight into the in-process moto server's S3 backend: test data set-up
    only (10,000 PutObject calls over HTTP would take longer than everything else)."""
    from moto.s3.models import s3_backends

    backend = s3_backends[account]["aws"]
    for key in keys:
        backend.put_object(bucket, key, b"")


def wordcount_batch(bucket: str, date: str, batch: str, analyses: int, *, broken: tuple[str, ...] = ()) -> list[str]:
    """`analyses` folders with a text file each; those in `broken` name a missing file in params.json."""
    names = [f"A{i:02d}" for i in range(1, analyses + 1)]
    files = {f"Input/{date}/{batch}/{name}/sample.txt": f"{name} has some words\nand lines\n" for name in names}
    for name in broken:
        files[f"Input/{date}/{batch}/{name}/params.json"] = json.dumps({"files": ["missing.txt"]})
    put_text(bucket, files)
    return names
