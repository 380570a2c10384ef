"""Test helpers: the deploy template, CloudFormation's parameter rules, and the template in moto.

Two things moto 5.2.5 does not do, said plainly so no test pretends otherwise:
- it does not check parameter values against the template's constraints (AllowedValues, MinValue,
  MaxValue, AllowedPattern...), and neither does cfn-lint 1.51 (it only checks the *defaults*, rule
  E2015). `resolve_parameters` applies CloudFormation's rules the way CloudFormation does before it
  creates anything, and every stack these tests create goes through it.
- it cannot create every resource type. `without_resources_moto_cannot_create` removes the ones its
  CloudFormation engine has no model for (AWS::S3::BucketPolicy; with a PostgreSQL ledger also
  AWS::RDS::DBCluster, Aurora's DBInstance and the Secrets Manager resources) and returns their names.
  A reference to one of them becomes a stand-in value shaped like the real one (STAND_INS: an ARN in
  the stack's account, a host name ending in .stand-in.invalid); any other reference is refused.
  Those resources are checked statically by the template tests instead.

`for_parameters` gives the template as CloudFormation sees it for one set of parameter values (false
conditions' resources and outputs left out, each Fn::If replaced by its branch), which is what the
static tests of each choice (SQLite or a PostgreSQL ledger) read, and what moto is given.
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


# -- rules and conditions -----------------------------------------------------------------------------------
def check_rules(template: Mapping[str, Any], values: Mapping[str, str]) -> None:
    """The template's Rules, as CloudFormation applies them before it creates anything."""

    def value(node: Any) -> Any:
        if isinstance(node, dict) and set(node) == {"Ref"}:
            return values[node["Ref"]]
        return node

    def holds(node: Any) -> bool:
        (function, args), = node.items()
        if function == "Fn::Equals":
            return str(value(args[0])) == str(value(args[1]))
        if function == "Fn::Contains":
            return str(value(args[1])) in [str(v) for v in value(args[0])]
        if function == "Fn::Not":
            return not holds(args[0])
        if function == "Fn::And":
            return all(holds(a) for a in args)
        if function == "Fn::Or":
            return any(holds(a) for a in args)
        raise ValueError(f"unsupported rule function {function}")

    for rule in template.get("Rules", {}).values():
        if "RuleCondition" in rule and not holds(rule["RuleCondition"]):
            continue
        for assertion in rule["Assertions"]:
            if not holds(assertion["Assert"]):
                raise ParameterError(assertion.get("AssertDescription", "a template rule failed"))


# -- conditions -----------------------------------------------------------------------------------------
NO_VALUE = {"Ref": "AWS::NoValue"}


def for_parameters(template: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """The template with its conditions decided for these (resolved) parameter values."""
    conditions: dict[str, bool] = {}

    def condition(name: str) -> bool:
        if name not in conditions:
            conditions[name] = decide(template["Conditions"][name])
        return conditions[name]

    def value(node: Any) -> Any:
        if isinstance(node, dict) and set(node) == {"Ref"} and node["Ref"] in values:
            return values[node["Ref"]]
        return node

    def decide(node: Any) -> bool:
        (function, args), = node.items()
        if function == "Condition":
            return condition(args)
        if function == "Fn::Equals":
            return str(value(args[0])) == str(value(args[1]))
        if function == "Fn::Not":
            return not decide(args[0])
        if function == "Fn::And":
            return all(decide(a) for a in args)
        if function == "Fn::Or":
            return any(decide(a) for a in args)
        raise ValueError(f"unsupported condition function {function}")

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Fn::If"}:
                name, yes, no = node["Fn::If"]
                return resolve(yes if condition(name) else no)
            out = {k: resolve(v) for k, v in node.items()}
            return {k: v for k, v in out.items() if v != NO_VALUE}
        if isinstance(node, list):
            return [item for item in (resolve(i) for i in node) if item != NO_VALUE]
        return node

    decided = dict(template)
    for section in ("Resources", "Outputs"):
        decided[section] = {name: resolve({k: v for k, v in body.items() if k != "Condition"})
                            for name, body in template.get(section, {}).items()
                            if "Condition" not in body or condition(body["Condition"])}
    return decided


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


# What a reference to a resource moto cannot create stands for: Ref (attribute None) or GetAtt, as the
# text of an Fn::Sub so that moto fills in the stack's partition, region, account and name.
STAND_INS: dict[tuple[str, str | None], str] = {
    ("AWS::SecretsManager::Secret", None):
        "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${AWS::StackName}/ledger-StAnD1",
    ("AWS::RDS::DBCluster", None): "${AWS::StackName}-ledgercluster-stand-in",
    ("AWS::RDS::DBCluster", "Endpoint.Address"): "ledgercluster.cluster-stand-in.${AWS::Region}.stand-in.invalid",
    ("AWS::RDS::DBCluster", "Endpoint.Port"): "5432",
}


def moto_can_create(resource: Mapping[str, Any], supported: set[str]) -> bool:
    # moto's AWS::RDS::DBInstance knows no Aurora engine (an Aurora instance belongs to a DBCluster).
    aurora = resource["Type"] == "AWS::RDS::DBInstance" and \
        str(resource.get("Properties", {}).get("Engine", "")).startswith("aurora")
    return resource["Type"] in supported and not aurora


def without_resources_moto_cannot_create(template: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of the template without the resources moto has no model for, and their logical ids;
    references to them become their STAND_INS (any reference without one is refused)."""
    supported = moto_resource_types()
    resources = template["Resources"]
    dropped = sorted(n for n, r in resources.items() if not moto_can_create(r, supported))
    kept = {n: r for n, r in resources.items() if n not in dropped}
    types = {n: resources[n]["Type"] for n in dropped}

    def stand_in(name: str, attribute: str | None) -> str:
        try:
            return STAND_INS[(types[name], attribute)]
        except KeyError:
            raise AssertionError(f"cannot strip {name}: {'Ref' if attribute is None else attribute} of it is "
                                 "used, and STAND_INS has nothing for it") from None

    def replace(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Ref"} and node["Ref"] in types:
                return {"Fn::Sub": stand_in(node["Ref"], None)}
            if set(node) == {"Fn::GetAtt"}:
                name, attribute = (node["Fn::GetAtt"] if isinstance(node["Fn::GetAtt"], list)
                                   else node["Fn::GetAtt"].split(".", 1))
                if name in types:
                    return {"Fn::Sub": stand_in(name, attribute)}
            if set(node) == {"Fn::Sub"}:
                text, variables = (node["Fn::Sub"], {}) if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"]

                def inline(match: re.Match[str]) -> str:
                    name, _, attribute = match[1].partition(".")
                    return stand_in(name, attribute or None) if name in types else match[0]

                text = re.sub(r"\$\{([^}!]+)\}", inline, text)
                return {"Fn::Sub": [text, replace(variables)] if variables else text}
            if "DependsOn" in node:
                after = [d for d in ([node["DependsOn"]] if isinstance(node["DependsOn"], str) else node["DependsOn"])
                         if d not in types]
                node = {k: v for k, v in node.items() if k != "DependsOn"} | ({"DependsOn": after} if after else {})
            return {k: replace(v) for k, v in node.items()}
        if isinstance(node, list):
            return [replace(item) for item in node]
        return node

    replaced = {**template, "Resources": replace(kept), "Outputs": replace(template.get("Outputs", {}))}
    still_used = set(_references(replaced["Resources"])) | set(_references(replaced["Outputs"]))
    assert not still_used & set(dropped), sorted(still_used & set(dropped))
    return replaced, dropped


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
    full = load_template()
    given = {"BucketName": "cyto-lab-test", "SlackSecretArn": SLACK_SECRET_ARN, **moto_network(region), **parameters}
    values = resolve_parameters(full, given)
    check_rules(full, values)
    template, _ = without_resources_moto_cannot_create(for_parameters(full, values))
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
