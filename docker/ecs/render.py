#!/usr/bin/env python3
"""Render docker/ecs/task-definition.json: fill its ${NAME} placeholders, refuse leftovers.

Values come from, later winning:
  1. the outputs of the CloudFormation stack (--stack): output TaskRoleArn fills ${TASK_ROLE_ARN};
  2. environment variables named like the placeholders (AWS_REGION, IMAGE, ...);
  3. --set NAME=VALUE.

    python docker/ecs/render.py --stack ekyc --set IMAGE=123456789012.dkr.ecr.eu-west-1.amazonaws.com/ekyc-server:3f2c1a9 \
        --out task-definition.rendered.json
    aws ecs register-task-definition --cli-input-json file://task-definition.rendered.json

Only ${UPPER_CASE} is a placeholder: shell expansions such as ${EKYC_SERVER_PORT:-50051} in the
health check command are left as they are. The result is checked against botocore's model of
RegisterTaskDefinition before it is written. Needs only the standard library, plus boto3 for
--stack. Exit status: 0 written, 2 a missing value or an invalid result (nothing written).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

TEMPLATE = Path(__file__).with_name("task-definition.json")
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


class RenderError(Exception):
    """A placeholder has no value, or the rendered task definition is invalid."""


def placeholders(value) -> set[str]:
    """Every placeholder name in a parsed JSON value."""
    if isinstance(value, str):
        return set(PLACEHOLDER.findall(value))
    if isinstance(value, dict):
        return set().union(*(placeholders(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(placeholders(v) for v in value)) if value else set()
    return set()


def substitute(value, values: dict[str, str]):
    """A copy of ``value`` with every known placeholder in its strings replaced."""
    if isinstance(value, str):
        return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), value)
    if isinstance(value, dict):
        return {key: substitute(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, values) for item in value]
    return value


def output_name(key: str) -> str:
    """CloudFormation output key -> placeholder name: TaskRoleArn -> TASK_ROLE_ARN."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).upper()


def stack_values(stack: str, region: str | None = None, client=None) -> dict[str, str]:
    """The stack's outputs as placeholder values (needs boto3 and credentials)."""
    if client is None:
        import boto3

        client = boto3.client("cloudformation", region_name=region)
    (description,) = client.describe_stacks(StackName=stack)["Stacks"]
    return {output_name(o["OutputKey"]): o["OutputValue"] for o in description.get("Outputs", [])}


def render(template: dict, values: dict[str, str]) -> dict:
    """The rendered task definition; RenderError names every placeholder left without a value."""
    missing = sorted(name for name in placeholders(template) if not values.get(name))
    if missing:
        raise RenderError("no value for " + ", ".join("${%s}" % name for name in missing))
    rendered = substitute(template, values)
    leftover = placeholders(rendered)
    if leftover:  # a value that itself looks like a placeholder
        raise RenderError("values left placeholders: " + ", ".join(sorted(leftover)))
    return rendered


def validate(task_definition: dict) -> None:
    """Check against botocore's model of ecs:RegisterTaskDefinition (skipped without botocore)."""
    try:
        import botocore.session
        from botocore.exceptions import ParamValidationError
        from botocore.validate import validate_parameters
    except ImportError:
        return
    model = botocore.session.get_session().get_service_model("ecs").operation_model("RegisterTaskDefinition")
    try:
        validate_parameters(task_definition, model.input_shape)
    except ParamValidationError as exc:
        raise RenderError(f"invalid task definition: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="render.py", description=__doc__.split("\n")[0])
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="task definition with placeholders")
    parser.add_argument("--stack", help="CloudFormation stack whose outputs give values")
    parser.add_argument("--region", help="region of --stack (default: the AWS configuration's)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a value (repeatable)")
    parser.add_argument("--out", default="-", help="file to write (default: standard output)")
    args = parser.parse_args(argv)
    try:
        template = json.loads(args.template.read_text(encoding="utf-8"))
        names = placeholders(template)
        values: dict[str, str] = {}
        if args.stack:
            values.update(stack_values(args.stack, args.region))
        values.update({name: os.environ[name] for name in names if os.environ.get(name)})
        for item in args.set:
            name, sep, value = item.partition("=")
            if not sep or not PLACEHOLDER.fullmatch("${%s}" % name):
                raise RenderError(f"--set wants NAME=VALUE with an upper-case NAME, got {item!r}")
            values[name] = value
        rendered = render(template, values)
        validate(rendered)
    except (OSError, json.JSONDecodeError, RenderError) as exc:
        print(f"render.py: error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(rendered, indent=2) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
