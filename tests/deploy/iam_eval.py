"""A small, strict evaluator of IAM policy documents, for testing what the deploy template's roles
may and may not do (moto stores IAM policies but never enforces them).

It follows IAM's rules for identity policies in one account: an explicit Deny wins, otherwise an
Allow whose Action, Resource and Condition all match is needed, otherwise the request is implicitly
denied. Wildcards `*` and `?` match in actions (case-insensitively) and resources. Conditions support
the operators the template uses; an operator it does not know raises instead of guessing, so a test
can never pass because of an unsupported feature.

    evaluate([doc], "s3:PutObject", "arn:aws:s3:::lab/Input/x").decision  # Decision.IMPLICIT_DENY
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

PolicyDocument = Mapping[str, Any]


class Decision(StrEnum):
    ALLOW = "allow"
    EXPLICIT_DENY = "explicit deny"
    IMPLICIT_DENY = "implicit deny"


class UnsupportedPolicy(ValueError):
    """The document uses something this evaluator does not implement."""


@dataclass(frozen=True)
class Result:
    decision: Decision
    statement: str | None = None  # Sid (or index) of the deciding statement

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOW


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _glob(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL) is not None


_OPERATORS = {
    "StringEquals": lambda want, have: have == want,
    "StringNotEquals": lambda want, have: have != want,
    "StringEqualsIgnoreCase": lambda want, have: have.lower() == want.lower(),
    "StringLike": lambda want, have: _glob(want, have),
    "StringNotLike": lambda want, have: not _glob(want, have),
    "ArnEquals": lambda want, have: have == want,
    "ArnLike": lambda want, have: _glob(want, have),
    "Bool": lambda want, have: str(have).lower() == str(want).lower(),
}
_NEGATED = {"StringNotEquals", "StringNotLike"}


def _condition_holds(condition: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
    for operator, tests in condition.items():
        if_exists = operator.endswith("IfExists")
        base = operator.removesuffix("IfExists")
        if base.startswith(("ForAnyValue:", "ForAllValues:")) or base not in _OPERATORS:
            raise UnsupportedPolicy(f"condition operator {operator!r} is not supported by tests.deploy.iam_eval")
        compare = _OPERATORS[base]
        for key, wanted in tests.items():
            present = {k.lower(): v for k, v in context.items()}
            if key.lower() not in present:
                if if_exists or base in _NEGATED:
                    continue
                return False
            have = str(present[key.lower()])
            values = [str(w) for w in _as_list(wanted)]
            if base in _NEGATED:
                if not all(compare(w, have) for w in values):
                    return False
            elif not any(compare(w, have) for w in values):
                return False
    return True


def _matches_any(patterns: Iterable[str], value: str, *, ignore_case: bool) -> bool:
    return any(_glob(p, value, ignore_case=ignore_case) for p in patterns)


def _statement_applies(statement: Mapping[str, Any], action: str, resource: str,
                       context: Mapping[str, Any]) -> bool:
    if "NotPrincipal" in statement or "NotResource" in statement:
        raise UnsupportedPolicy("NotPrincipal/NotResource are not supported by tests.deploy.iam_eval")
    if "Action" in statement:
        if not _matches_any(_as_list(statement["Action"]), action, ignore_case=True):
            return False
    elif "NotAction" in statement:
        if _matches_any(_as_list(statement["NotAction"]), action, ignore_case=True):
            return False
    else:
        raise UnsupportedPolicy("a statement without Action or NotAction")
    if not _matches_any(_as_list(statement.get("Resource", "*")), resource, ignore_case=False):
        return False
    return _condition_holds(statement.get("Condition", {}), context)


def evaluate(documents: Sequence[PolicyDocument | str], action: str, resource: str,
             context: Mapping[str, Any] | None = None) -> Result:
    """The decision for one request (`action` on `resource`) under all the principal's policies."""
    context = context or {}
    allow: str | None = None
    for doc in documents:
        parsed: Mapping[str, Any] = json.loads(doc) if isinstance(doc, str) else doc
        for index, statement in enumerate(_as_list(parsed.get("Statement"))):
            if not _statement_applies(statement, action, resource, context):
                continue
            label = str(statement.get("Sid") or index)
            effect = statement.get("Effect")
            if effect == "Deny":
                return Result(Decision.EXPLICIT_DENY, label)
            if effect == "Allow":
                allow = allow or label
            else:
                raise UnsupportedPolicy(f"statement {label}: Effect must be Allow or Deny, not {effect!r}")
    return Result(Decision.ALLOW, allow) if allow else Result(Decision.IMPLICIT_DENY)


def allowed_actions(documents: Sequence[PolicyDocument | str]) -> set[str]:
    """Every action pattern an Allow statement names (for 'nothing more than' checks)."""
    actions: set[str] = set()
    for doc in documents:
        parsed: Mapping[str, Any] = json.loads(doc) if isinstance(doc, str) else doc
        for statement in _as_list(parsed.get("Statement")):
            if statement.get("Effect") == "Allow":
                if "NotAction" in statement:
                    raise UnsupportedPolicy("an Allow with NotAction grants too much to list")
                actions.update(a.lower() for a in _as_list(statement.get("Action")))
    return actions
