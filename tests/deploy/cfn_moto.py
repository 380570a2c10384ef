"""Test helpers: the deploy template, CloudFormation's parameter rules, and the template in moto.

Two things moto 5.2.5 does not do, said plainly so no test pretends otherwise:
- it does not check parameter values against the template's constraints (AllowedValues, MinValue,
  MaxValue, AllowedPattern...), and neither does cfn-lint 1.51 (it only checks the *defaults*, rule
  E2015). `resolve_parameters` applies CloudFormation's rules the way CloudFormation does before it
  creates anything, and every stack these tests create goes through it.
- it cannot create every resource type. `without_resources_moto_cannot_create` removes the ones its
  CloudFormation engine has no model for (today only AWS::S3::BucketPolicy) and returns their names,
  after checking that nothing else in the template refers to them. Those resources are checked
  statically by the template tests instead.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import cfnlint.decode

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "cyto-bot.yaml"
REGION = "eu-west-1"
SLACK_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:cyto-bot/slack-AbCdEf"


class ParameterError(ValueError):
    """A parameter value CloudFormation would refuse; the message is CloudFormation's wording."""


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as plain JSON data, short-form tags (!Ref, !Sub...) in their long form."""
    decoded, problems = cfnlint.decode.decode(str(path))
    if problems or decoded is None:
        raise ValueError(f"{path}: {problems}")
    return json.loads(json.dumps(decoded))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_one(name: str, spec: Mapping[str, Any], value: str) -> None:
    kind = spec.get("Type", "String")
    described = spec.get("ConstraintDescription")

    def refuse(default_message: str) -> None:
        # CloudFormation shows the ConstraintDescription when the template gives one.
        text = f"failed to satisfy constraint: {described}" if described else default_message
        raise ParameterError(f"Parameter '{name}' {text}")

    if kind == "Number" and not _is_number(value):
        raise ParameterError(f"Parameter '{name}' must be a number")
    if "AllowedValues" in spec:
        allowed = [str(v) for v in spec["AllowedValues"]]
        same = (lambda a: float(a) == float(value)) if kind == "Number" else (lambda a: a == value)
        if not any(same(a) for a in allowed):
            refuse("must be one of AllowedValues")
    if "AllowedPattern" in spec and kind in ("String", "CommaDelimitedList"):
        items = value.split(",") if kind == "CommaDelimitedList" else [value]
        if not all(re.fullmatch(spec["AllowedPattern"], item) for item in items):
            refuse(f"must match pattern {spec['AllowedPattern']}")
    if kind == "String":
        if "MinLength" in spec and len(value) < int(spec["MinLength"]):
            refuse(f"must contain at least {spec['MinLength']} characters")
        if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
            refuse(f"must contain at most {spec['MaxLength']} characters")
    if kind == "Number":
        if "MinValue" in spec and float(value) < float(spec["MinValue"]):
            refuse(f"must be a number greater than or equal to {spec['MinValue']}")
        if "MaxValue" in spec and float(value) > float(spec["MaxValue"]):
            refuse(f"must be a number less than or equal to {spec['MaxValue']}")


def resolve_parameters(template: Mapping[str, Any], given: Mapping[str, str]) -> dict[str, str]:
    """Every parameter's value (given, else the default), checked like CloudFormation checks them."""
    declared = template.get("Parameters", {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ParameterError(f"Parameters: [{', '.join(unknown)}] do not exist in the template")
    missing = sorted(n for n, spec in declared.items() if n not in given and "Default" not in spec)
    if missing:
        raise ParameterError(f"Parameters: [{', '.join(missing)}] must have values")
    values: dict[str, str] = {}
    for name, spec in declared.items():
        raw = given.get(name, spec.get("Default"))
        value = ",".join(map(str, raw)) if isinstance(raw, list) else str(raw)
        _check_one(name, spec, value)
        values[name] = value
    return values


def moto_resource_types() -> set[str]:
    from moto.cloudformation.parsing import NULL_MODELS, get_model_map

    return set(get_model_map()) | set(NULL_MODELS)


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                yield value
            elif key == "Fn::GetAtt":
                yield value[0] if isinstance(value, list) else str(value).split(".")[0]
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                yield from (m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text))
                if isinstance(value, list):
                    yield from _references(value[1])
            elif key == "DependsOn":
                yield from ([value] if isinstance(value, str) else value)
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def without_resources_moto_cannot_create(template: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of the template without the resources moto has no model for, and their logical ids."""
    supported = moto_resource_types()
    resources = template["Resources"]
    dropped = sorted(n for n, r in resources.items() if r["Type"] not in supported)
    kept = {n: r for n, r in resources.items() if n not in dropped}
    still_used = set(_references(kept)) | set(_references(template.get("Outputs", {})))
    if still_used & set(dropped):
        raise AssertionError(f"cannot strip {sorted(still_used & set(dropped))}: other parts refer to them")
    return {**template, "Resources": kept}, dropped


def moto_network(region: str = REGION) -> dict[str, str]:
    """What the stack expects to exist already: a VPC, two subnets, the jobs' security group, and
    (moto requires one, real AWS does not) a Batch service role."""
    ec2 = boto3.client("ec2", region_name=region)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{region}{az}")
               ["Subnet"]["SubnetId"] for i, az in ((1, "a"), (2, "b"))]
    group = ec2.create_security_group(GroupName="cyto-jobs", Description="jobs", VpcId=vpc)["GroupId"]
    role = boto3.client("iam", region_name=region).create_role(
        RoleName="moto-batch-service-role",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "batch.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
    )["Role"]["Arn"]
    return {"VpcId": vpc, "Subnets": ",".join(subnets), "JobSecurityGroup": group, "BatchServiceRoleArn": role}


def create_stack(name: str = "cyto-bot", region: str = REGION, **parameters: str) -> dict[str, str]:
    """Create the stack in moto (inside mock_aws) and return its outputs."""
    template, _ = without_resources_moto_cannot_create(load_template())
    given = {"BucketName": "cyto-lab-test", "SlackSecretArn": SLACK_SECRET_ARN, **moto_network(region), **parameters}
    values = resolve_parameters(template, given)
    cf = boto3.client("cloudformation", region_name=region)
    cf.create_stack(StackName=name, TemplateBody=json.dumps(template), Capabilities=["CAPABILITY_IAM"],
                    Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()])
    stack = cf.describe_stacks(StackName=name)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def role_policies(stack: str, logical_id: str, region: str = REGION) -> list[dict[str, Any]]:
    """The inline policy documents moto stored for one of the stack's roles (intrinsics resolved)."""
    cf = boto3.client("cloudformation", region_name=region)
    iam = boto3.client("iam", region_name=region)
    # (list_stack_resources: moto's describe_stack_resource trips over resources whose Condition is false)
    role = next(r["PhysicalResourceId"] for r in cf.list_stack_resources(StackName=stack)["StackResourceSummaries"]
                if r["LogicalResourceId"] == logical_id)
    documents = []
    for policy in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]
        if isinstance(document, str):
            # moto keeps a policy given inline in a CloudFormation template as the repr of a dict.
            document = json.loads(document) if document.lstrip().startswith('{"') else ast.literal_eval(document)
        documents.append(document)
    return documents
