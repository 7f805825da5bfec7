#!/usr/bin/env python3
"""Checks template.yaml against the code it deploys.

Run with the project's virtual environment (it needs cfn-lint's YAML loader):

    .venv/bin/python scripts/check_template.py [template.yaml]

Checks that:
  - every AWS::Serverless::Function is built with rust-cargolambda from a
    binary that is a workspace member under functions/, and every crate under
    functions/ is deployed exactly once;
  - every provider function has exactly one HttpApi route, POST
    /webhooks/<binary>, and the processor has an SQS event with partial batch
    responses;
  - the table's keys, indexes and TTL attribute are the ones
    shared/aws/src/dynamo.rs reads and writes;
  - every TERIMA_* variable the template sets is one the code reads, each
    provider function names its own secret, and no secret value or test-only
    setting is in the template;
  - provider functions get only PutItem, SendMessage and their own
    GetSecretValue;
  - the queue's visibility timeout is at least six times the processor's
    timeout.

Prints one line per check and closes with `N passed, M failed`; exits 1 when
anything failed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
DYNAMO_RS = ROOT / "shared" / "aws" / "src" / "dynamo.rs"
PROVIDERS_RS = ROOT / "shared" / "core" / "src" / "providers" / "mod.rs"
PROCESSOR_BINARY = "processor"

passed = 0
failed = 0


def check(ok: bool, what: str, detail: str = "") -> bool:
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   - {what}")
    else:
        failed += 1
        print(f"FAIL - {what}" + (f": {detail}" if detail else ""))
    return ok


# --------------------------------------------------------------------------
# What the code says
# --------------------------------------------------------------------------


def function_crates() -> dict[str, str]:
    """Package name of each workspace member under functions/, by directory."""
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())
    members = workspace["workspace"]["members"]
    crates = {}
    for member in members:
        if not member.startswith("functions/"):
            continue
        manifest = tomllib.loads((ROOT / member / "Cargo.toml").read_text())
        bins = [b["name"] for b in manifest.get("bin", [])] or [manifest["package"]["name"]]
        for name in bins:
            crates[name] = member
    return crates


def function_dirs() -> set[str]:
    return {
        f"functions/{p.parent.name}"
        for p in (ROOT / "functions").glob("*/Cargo.toml")
    }


def match_arms(source: str, fn_name: str) -> dict[str, str]:
    """`Self::Variant => "text"` arms of `fn <fn_name>` in providers/mod.rs."""
    body = re.search(rf"fn {fn_name}\(self\)[^{{]*\{{(.*?)\n    \}}", source, re.S)
    if not body:
        return {}
    return dict(re.findall(r'Self::(\w+)\s*=>\s*"([^"]+)"', body.group(1)))


def provider_names() -> dict[str, str]:
    """Route name -> env infix, for every provider."""
    source = PROVIDERS_RS.read_text()
    names = match_arms(source, "name")
    infixes = match_arms(source, "env_infix")
    return {names[v]: infixes[v] for v in names if v in infixes}


def rust_sources() -> list[Path]:
    return sorted(
        p
        for top in ("shared", "functions")
        for p in (ROOT / top).rglob("*.rs")
        if "/tests/" not in p.as_posix() and "/benches/" not in p.as_posix()
    )


def env_vars_read(infixes: list[str]) -> set[str]:
    """Every TERIMA_* name the code mentions, with `TERIMA_{...}_X` formats
    expanded over the providers' infixes."""
    names: set[str] = set()
    for path in rust_sources():
        text = path.read_text()
        names.update(re.findall(r'"(TERIMA_[A-Z0-9_]*[A-Z0-9])"', text))
        for suffix in re.findall(r'"TERIMA_\{[^}]*\}(_[A-Z0-9_]+)"', text):
            names.update(f"TERIMA_{infix}{suffix}" for infix in infixes)
    return names


def dynamo_layout() -> dict:
    """Key, index and TTL attribute names from shared/aws/src/dynamo.rs."""
    text = DYNAMO_RS.read_text()
    keys = sorted(set(re.findall(r'\.key\("(\w+)"', text)))
    # query_index(&self, index, pk_name, ...): the sort key is named by
    # replacing "pk" with "sk", as the function itself does.
    indexes = {
        index: (pk, pk.replace("pk", "sk"))
        for index, pk in re.findall(r'query_index\(\s*"(\w+)",\s*"(\w+)"', text)
    }
    written = set(re.findall(r"(\w+) = if_not_exists\(", text))
    ttl = re.findall(r"TTL on `(\w+)`", text)
    return {
        "keys": keys,
        "indexes": indexes,
        "index_attrs_written": written,
        "ttl": sorted(set(ttl)),
        "ttl_in_condition": re.findall(r"(\w+) < :now", text),
    }


# --------------------------------------------------------------------------
# The template
# --------------------------------------------------------------------------


def resources_of(template: dict, kind: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v.get("Type") == kind}


def is_ref(value, name: str) -> bool:
    return isinstance(value, dict) and value.get("Ref") == name


def is_arn_of(value, name: str) -> bool:
    return isinstance(value, dict) and value.get("Fn::GetAtt") in ([name, "Arn"], f"{name}.Arn")


def statements(function: dict) -> list[dict]:
    out = []
    for policy in function["Properties"].get("Policies", []) or []:
        if isinstance(policy, dict):
            out.extend(policy.get("Statement", []))
    return out


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else TEMPLATE
    template = cfn_yaml.load(str(path))
    functions = resources_of(template, "AWS::Serverless::Function")
    crates = function_crates()
    providers = provider_names()
    check(len(providers) >= 4, "providers read from shared/core/src/providers/mod.rs", str(providers))

    # ---- build: every function from a workspace binary, each binary once
    binaries: dict[str, str] = {}
    for name, fn in sorted(functions.items()):
        meta = fn.get("Metadata", {})
        binary = meta.get("BuildProperties", {}).get("Binary")
        check(
            meta.get("BuildMethod") == "rust-cargolambda",
            f"{name} is built with rust-cargolambda",
            str(meta.get("BuildMethod")),
        )
        check(fn["Properties"].get("CodeUri") == ".", f"{name} builds from the workspace root (CodeUri .)")
        check(
            binary in crates,
            f"{name} binary {binary!r} is a workspace member under functions/",
            f"members: {sorted(crates)}",
        )
        binaries[name] = binary
    deployed = sorted(binaries.values())
    check(
        sorted(crates) == deployed,
        "every crate under functions/ is deployed exactly once",
        f"crates {sorted(crates)}, deployed {deployed}",
    )
    missing_members = function_dirs() - set(crates.values())
    check(not missing_members, "every crate directory under functions/ is a workspace member", str(missing_members))

    glob = template.get("Globals", {}).get("Function", {})
    check(glob.get("Runtime") == "provided.al2023", "Globals: Runtime provided.al2023")
    check(glob.get("Architectures") == ["arm64"], "Globals: Architectures [arm64]")
    check(glob.get("Handler") == "bootstrap", "Globals: Handler bootstrap")

    # ---- events: one route per provider, an SQS event for the processor
    apis = resources_of(template, "AWS::Serverless::HttpApi")
    for name, binary in sorted(binaries.items()):
        events = functions[name]["Properties"].get("Events", {}) or {}
        http_events = [e["Properties"] for e in events.values() if e.get("Type") == "HttpApi"]
        sqs_events = [e["Properties"] for e in events.values() if e.get("Type") == "SQS"]
        if binary in providers:
            routes = [(e.get("Method", "").upper(), e.get("Path")) for e in http_events]
            check(
                routes == [("POST", f"/webhooks/{binary}")],
                f"{name} has exactly one route, POST /webhooks/{binary}",
                str(routes),
            )
            check(
                all(str(e.get("PayloadFormatVersion")) == "2.0" for e in http_events),
                f"{name} uses payload format 2.0",
            )
            check(
                all(any(is_ref(e.get("ApiId"), api) for api in apis) for e in http_events),
                f"{name} is routed through the template's HttpApi",
            )
            check(not sqs_events, f"{name} has no SQS event")
        elif binary == PROCESSOR_BINARY:
            check(len(sqs_events) == 1 and not http_events, f"{name} has one SQS event and no route")
            for e in sqs_events:
                check(is_arn_of(e.get("Queue"), "Queue"), f"{name} consumes the template's Queue")
                check(
                    "ReportBatchItemFailures" in (e.get("FunctionResponseTypes") or []),
                    f"{name} reports batch item failures",
                )
        else:
            check(False, f"{name} binary {binary!r} is a provider or the processor")

    # ---- table layout matches dynamo.rs
    layout = dynamo_layout()
    table = template["Resources"].get("Table", {}).get("Properties", {})
    key_schema = {k["KeyType"]: k["AttributeName"] for k in table.get("KeySchema", [])}
    check(
        layout["keys"] == ["pk", "sk"] and key_schema == {"HASH": "pk", "RANGE": "sk"},
        "table keys are pk (HASH) and sk (RANGE), as dynamo.rs uses",
        f"code {layout['keys']}, template {key_schema}",
    )
    gsis = {
        g["IndexName"]: (
            {k["KeyType"]: k["AttributeName"] for k in g["KeySchema"]},
            g.get("Projection", {}).get("ProjectionType"),
        )
        for g in table.get("GlobalSecondaryIndexes", [])
    }
    check(
        sorted(gsis) == sorted(layout["indexes"]),
        "table indexes are the ones dynamo.rs queries",
        f"code {sorted(layout['indexes'])}, template {sorted(gsis)}",
    )
    for index, (pk, sk) in sorted(layout["indexes"].items()):
        keys, projection = gsis.get(index, ({}, None))
        check(
            keys == {"HASH": pk, "RANGE": sk},
            f"index {index} is keyed {pk}/{sk}",
            str(keys),
        )
        check(
            {pk, sk} <= layout["index_attrs_written"],
            f"dynamo.rs writes {pk} and {sk}",
        )
        check(projection == "ALL", f"index {index} projects ALL (events are read whole from it)")
    defined = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
    key_attrs = {"pk", "sk"} | {a for pair in layout["indexes"].values() for a in pair}
    check(
        defined == {a: "S" for a in key_attrs},
        "attribute definitions are exactly the key attributes, all strings",
        str(defined),
    )
    ttl = table.get("TimeToLiveSpecification", {})
    check(
        layout["ttl"] == [ttl.get("AttributeName")] and ttl.get("Enabled") is True,
        "TTL is enabled on the attribute dynamo.rs documents",
        f"code {layout['ttl']}, template {ttl}",
    )
    check(
        ttl.get("AttributeName") in layout["ttl_in_condition"],
        "the dedup claim compares the TTL attribute to now (TTL deletion is lazy)",
    )

    # ---- environment: only variables the code reads
    infixes = sorted(providers.values())
    read = env_vars_read(infixes)
    for name, fn in sorted(functions.items()):
        variables = fn["Properties"].get("Environment", {}).get("Variables", {}) or {}
        unknown = sorted(v for v in variables if v not in read)
        check(not unknown, f"{name} sets only variables the code reads", f"unknown: {unknown}")
        secret_values = sorted(v for v in variables if re.fullmatch(r"TERIMA_\w+_SECRETS", v))
        check(not secret_values, f"{name} carries no secret values", str(secret_values))
        check(
            "TERIMA_BITBYBIT_TOLERANCE_SECS" not in variables,
            f"{name} keeps the default BitByBit tolerance",
        )
        check(
            not any(v.endswith("_VERIFY") for v in variables),
            f"{name} does not switch verification off",
        )
        binary = binaries[name]
        check(is_ref(variables.get("TERIMA_TABLE"), "Table"), f"{name} gets TERIMA_TABLE")
        if binary in providers:
            own = f"TERIMA_{providers[binary]}_SECRETS_ID"
            ids = sorted(v for v in variables if v.endswith("_SECRETS_ID"))
            check(ids == [own], f"{name} names its own secret ({own}) and no other", str(ids))
            check(is_ref(variables.get("TERIMA_QUEUE_URL"), "Queue"), f"{name} gets TERIMA_QUEUE_URL")

    # ---- least privilege for provider functions
    for name, fn in sorted(functions.items()):
        binary = binaries[name]
        if binary not in providers:
            continue
        actions = sorted(a for s in statements(fn) for a in as_list(s.get("Action")))
        check(
            actions == ["dynamodb:PutItem", "secretsmanager:GetSecretValue", "sqs:SendMessage"],
            f"{name} may only PutItem, SendMessage and GetSecretValue",
            str(actions),
        )
        for s in statements(fn):
            for action in as_list(s.get("Action")):
                resource = s.get("Resource")
                if action == "dynamodb:PutItem":
                    check(is_arn_of(resource, "Table"), f"{name} PutItem only on the table")
                elif action == "sqs:SendMessage":
                    check(is_arn_of(resource, "Queue"), f"{name} SendMessage only on the queue")
                elif action == "secretsmanager:GetSecretValue":
                    param = {
                        "bebaskirim": "BebasKirimSecretId",
                        "bitbybit": "BitByBitSecretId",
                        "oms": "OmsSecretId",
                        "biteship": "BiteshipSecretId",
                    }.get(binary, "?")
                    text = str(resource)
                    check(
                        "${" + param + "}" in text and "Fn::Sub" in text,
                        f"{name} GetSecretValue only on its own secret ({param})",
                        text,
                    )

    # ---- queue timing
    queue = template["Resources"].get("Queue", {}).get("Properties", {})
    processor = next((fn for n, fn in functions.items() if binaries[n] == PROCESSOR_BINARY), {})
    timeout = processor.get("Properties", {}).get("Timeout", glob.get("Timeout", 3))
    check(
        int(queue.get("VisibilityTimeout", 30)) >= 6 * int(timeout),
        "queue visibility timeout is at least 6x the processor timeout",
        f"{queue.get('VisibilityTimeout')} vs {timeout}",
    )
    redrive = queue.get("RedrivePolicy", {})
    check(
        is_arn_of(redrive.get("deadLetterTargetArn"), "DeadLetterQueue"),
        "queue redrives to the dead-letter queue",
    )

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
