#!/usr/bin/env python3
"""Creates Terima's table, queues and body bucket on a local AWS emulator, from
template.yaml's own definitions, so that a local schema cannot drift from the
deployed one.

    .venv/bin/python scripts/local_resources.py PREFIX [--secrets-manager ENV_FILE]

Creates the table PREFIX (the template's keys, indexes if any, and TTL), the
queue PREFIX-queue with its dead-letter queue PREFIX-dlq (the template's
visibility timeout, retention and redrive policy) and the bucket
PREFIX-bodies. With --secrets-manager, also one secret PREFIX/<provider> per
provider whose value is that provider's list from ENV_FILE (for example
events/test-secrets.env), as in a deployment.

Prints, one KEY=value a line, what the functions and `terima --backend aws`
read: TERIMA_TABLE, TERIMA_QUEUE_URL, TERIMA_BUCKET, TERIMA_RETENTION_DAYS
(the template's default), LOCAL_DLQ_URL and, with --secrets-manager,
TERIMA_<P>_SECRETS_ID.

The endpoint, region and credentials come from the standard environment
(AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, ...). The script
refuses to run without AWS_ENDPOINT_URL: it is for emulators, never for an
account.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from check_template import load_template  # noqa: E402

# Each provider's secrets variable infix and its name in a secret's id.
PROVIDERS = [
    ("BEBASKIRIM", "bebaskirim"),
    ("BITBYBIT", "bitbybit"),
    ("OMS", "oms"),
    ("BITESHIP", "biteship"),
]


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def create_table(name: str, table: dict) -> None:
    ddb = boto3.client("dynamodb")
    # The template's keys and, if it declares any, its indexes.
    indexes = [
        {
            "IndexName": g["IndexName"],
            "KeySchema": [dict(k) for k in g["KeySchema"]],
            "Projection": dict(g["Projection"]),
        }
        for g in table.get("GlobalSecondaryIndexes", [])
    ]
    ddb.create_table(
        TableName=name,
        BillingMode=table["BillingMode"],
        AttributeDefinitions=[dict(a) for a in table["AttributeDefinitions"]],
        KeySchema=[dict(k) for k in table["KeySchema"]],
        **({"GlobalSecondaryIndexes": indexes} if indexes else {}),
    )
    ddb.get_waiter("table_exists").wait(TableName=name)
    ttl = table["TimeToLiveSpecification"]
    ddb.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": bool(ttl["Enabled"])},
    )


def create_queues(prefix: str, queue_props: dict, dlq_props: dict) -> tuple[str, str]:
    sqs = boto3.client("sqs")
    dlq_url = sqs.create_queue(
        QueueName=f"{prefix}-dlq",
        Attributes={"MessageRetentionPeriod": str(dlq_props["MessageRetentionPeriod"])},
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = queue_props["RedrivePolicy"]
    queue_url = sqs.create_queue(
        QueueName=f"{prefix}-queue",
        Attributes={
            "VisibilityTimeout": str(queue_props["VisibilityTimeout"]),
            "MessageRetentionPeriod": str(queue_props["MessageRetentionPeriod"]),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(redrive["maxReceiveCount"])}
            ),
        },
    )["QueueUrl"]
    return queue_url, dlq_url


def create_bucket(name: str) -> None:
    region = boto3.session.Session().region_name
    # us-east-1 is the one region that takes no location constraint.
    location = {} if region in (None, "us-east-1") else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    boto3.client("s3").create_bucket(Bucket=name, **location)


def create_secrets(prefix: str, env_file: Path) -> list[tuple[str, str]]:
    values = read_env_file(env_file)
    sm = boto3.client("secretsmanager")
    ids = []
    for infix, provider in PROVIDERS:
        var = f"TERIMA_{infix}_SECRETS"
        if var not in values:
            sys.exit(f"{env_file} does not set {var}")
        secret_id = f"{prefix}/{provider}"
        sm.create_secret(Name=secret_id, SecretString=values[var])
        ids.append((f"{var}_ID", secret_id))
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefix", help="name of the table, and prefix of the queues, bucket and secrets")
    parser.add_argument(
        "--secrets-manager",
        metavar="ENV_FILE",
        type=Path,
        help="also store each provider's secrets from ENV_FILE in Secrets Manager",
    )
    args = parser.parse_args()
    if not os.environ.get("AWS_ENDPOINT_URL"):
        parser.error("AWS_ENDPOINT_URL is not set: this script creates resources on a local emulator only")
    # The strictest of the names: an S3 bucket (3 to 63 characters, lower
    # case) after the longest suffix, "-bodies".
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,55}", args.prefix):
        parser.error(f"prefix {args.prefix!r}: use 2 to 56 lower-case letters, digits and hyphens")

    # The template as CloudFormation sees it: Fn::ForEach loops expanded.
    template = load_template(ROOT / "template.yaml")[1]
    resources = template["Resources"]

    create_table(args.prefix, resources["Table"]["Properties"])
    queue_url, dlq_url = create_queues(
        args.prefix, resources["Queue"]["Properties"], resources["DeadLetterQueue"]["Properties"]
    )
    bucket = f"{args.prefix}-bodies"
    create_bucket(bucket)
    secrets = create_secrets(args.prefix, args.secrets_manager) if args.secrets_manager else []

    print(f"TERIMA_TABLE={args.prefix}")
    print(f"TERIMA_QUEUE_URL={queue_url}")
    print(f"TERIMA_BUCKET={bucket}")
    print(f"TERIMA_RETENTION_DAYS={template['Parameters']['EventRetentionDays']['Default']}")
    print(f"LOCAL_DLQ_URL={dlq_url}")
    for var, secret_id in secrets:
        print(f"{var}={secret_id}")


if __name__ == "__main__":
    main()
