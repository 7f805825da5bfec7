#!/usr/bin/env python3
"""Checks template.yaml against the code it deploys and the operations it owes.

Run with the project's virtual environment (it needs cfn-lint's YAML loader,
SAM CLI's language-extensions expansion and the SAM translator):

    .venv/bin/python scripts/check_template.py [template.yaml]

The template's Fn::ForEach loops are expanded first, the way CloudFormation's
AWS::LanguageExtensions transform does (expand_foreach below); the expansion
must produce the same resources and outputs as SAM CLI's own, and the SAM
translation of the result must succeed. Then it checks that:
  - every AWS::Serverless::Function is built with rust-cargolambda from a
    binary that is a workspace member under functions/, and every crate under
    functions/ is deployed exactly once;
  - every provider function has exactly one HttpApi route, POST
    /webhooks/<binary>; the processor has an SQS event with partial batch
    responses; the maintenance function runs every minute;
  - the table has keys pk/sk and no index, TTL on expires_at, deletion
    protection, the AWS-owned key and point-in-time recovery as a parameter;
    the body bucket is private, encrypted, TLS-only, retained, with its
    lifecycle rules;
  - every TERIMA_* variable the template sets is one the code reads (the
    code's own catalogue of providers and their variables, and the names in
    its source), each provider function names its own secrets, and no secret
    value or test-only setting is in the template;
  - each function gets exactly the permissions it needs, and secret ARNs end
    in -?????? (not -*, which matches other secrets sharing the prefix);
  - the queue's visibility timeout is at least six times the processor's
    timeout;
  - operations: the alarm topic (created, or an existing one) is the action of
    every alarm; the alarm set covers every way a delivery is lost; the
    dashboard exists with its URL as an output; stage throttling and reserved
    concurrency are parameters whose defaults follow the documented arithmetic;
    every function logs to a group the stack owns, with retention; the API
    writes JSON access logs; the custom domain is optional; the outputs are
    there; samconfig.toml expands the loops and cannot sync to production;
  - docs/deploy.md lists every parameter with its default and has a runbook
    line for every alarm, and the links into it (from README.md, the template
    and itself) reach a heading.

The metric names in alarms and dashboard are checked against the code by
scripts/check_metrics.py.

Prints one line per check and closes with `N passed, M failed`; exits 1 when
anything failed.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
SAMCONFIG = ROOT / "samconfig.toml"
DEPLOY_MD = ROOT / "docs" / "deploy.md"
README = ROOT / "README.md"
PROCESSOR_BINARY = "processor"
MAINTENANCE_BINARY = "maintenance"
FOREACH = "Fn::ForEach::"

# The flash-sale arithmetic of docs/deploy.md: a route at its steady limit
# needs (requests per second x seconds per ack) concurrent executions; the
# reservation allows 0.2 s per ack (twice the warm p99 budget). AWS keeps 100
# of an account's concurrency unreserved; 1000 is the default account quota.
ACK_BUDGET_SECS = 0.2
DEFAULT_ACCOUNT_CONCURRENCY = 1000
UNRESERVED_MINIMUM = 100

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
# Loading: Fn::ForEach expanded as AWS::LanguageExtensions does
# --------------------------------------------------------------------------


def _plain(node):
    """cfn-lint's node types as plain dicts, lists and strings."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


def _substitute(node, identifier: str, value: str):
    """What Fn::ForEach does to its fragment for one item: `${Id}` and
    `&{Id}` (the value without non-alphanumerics) replaced in every key and
    string, `{"Ref": Id}` replaced by the value itself."""
    if isinstance(node, str):
        stripped = re.sub(r"[^A-Za-z0-9]", "", value)
        return node.replace("${%s}" % identifier, value).replace("&{%s}" % identifier, stripped)
    if isinstance(node, list):
        return [_substitute(v, identifier, value) for v in node]
    if isinstance(node, dict):
        if list(node) == ["Ref"] and node["Ref"] == identifier:
            return value
        return {_substitute(k, identifier, value): _substitute(v, identifier, value) for k, v in node.items()}
    return node


def _expand(node):
    if isinstance(node, list):
        return [_expand(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict = {}
    for key, value in node.items():
        if key.startswith(FOREACH):
            identifier, collection, fragment = value
            if not isinstance(collection, list):
                raise ValueError(f"{key}: only literal collections are expanded here")
            generated = {}
            for item in collection:
                for k, v in _expand(_substitute(fragment, identifier, str(item))).items():
                    if k in generated:
                        raise ValueError(f"{key} generates {k} twice")
                    generated[k] = v
        else:
            generated = {key: _expand(value)}
        for k, v in generated.items():
            if k in out:
                raise ValueError(f"{k} is defined twice")
            out[k] = v
    return out


def _resolve_static(node, mappings: dict):
    """Fn::FindInMap with literal arguments replaced by its value, and
    Fn::Sub of a string with no variable left replaced by the string (both
    exactly what CloudFormation would compute)."""
    if isinstance(node, list):
        return [_resolve_static(v, mappings) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: _resolve_static(v, mappings) for k, v in node.items()}
    if list(node) == ["Fn::FindInMap"]:
        args = node["Fn::FindInMap"]
        if all(isinstance(a, str) for a in args[:3]):
            try:
                return mappings[args[0]][args[1]][args[2]]
            except KeyError:
                return node
    if list(node) == ["Fn::Sub"] and isinstance(node["Fn::Sub"], str) and "${" not in node["Fn::Sub"]:
        return node["Fn::Sub"]
    return node


def expand_foreach(template: dict) -> dict:
    """The template with every Fn::ForEach expanded and static FindInMap/Sub
    resolved; every other intrinsic function is left as written."""
    expanded = _expand(template)
    return _resolve_static(expanded, expanded.get("Mappings", {}))


def load_template(path: Path = TEMPLATE) -> tuple[dict, dict]:
    """(as written, expanded)."""
    raw = _plain(cfn_yaml.load(str(path)))
    return raw, expand_foreach(copy.deepcopy(raw))


def sam_cli_expansion(raw: dict) -> dict:
    """SAM CLI's own expansion (what `sam build --language-extensions` sees)."""
    from samcli.lib.cfn_language_extensions.sam_integration import expand_language_extensions

    result = expand_language_extensions(copy.deepcopy(raw), parameter_values={}, enabled=True)
    return result.expanded_template


def sam_translation(expanded: dict) -> dict:
    """The SAM transform of the expanded template, offline."""
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    os.environ.setdefault("AWS_DEFAULT_REGION", "ap-southeast-3")
    template = copy.deepcopy(expanded)
    template["Transform"] = "AWS::Serverless-2016-10-31"
    for resource in template["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://bucket/key"
    translator = Translator(managed_policy_map=None, sam_parser=Parser(), plugins=[])
    return translator.translate(sam_template=template, parameter_values={}, get_managed_policy_map=lambda: {})


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
    return {f"functions/{p.parent.name}" for p in (ROOT / "functions").glob("*/Cargo.toml")}


def catalogue() -> dict:
    """What the code emits and reads, printed by the code itself
    (`cargo run --example catalogue -p terima-service`)."""
    out = subprocess.run(
        ["cargo", "run", "--quiet", "--locked", "-p", "terima-service", "--example", "catalogue"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def provider_names(cat: dict) -> dict[str, str]:
    """Route name -> env infix, for every provider."""
    return {p["name"]: p["env_infix"] for p in cat["providers"]}


def rust_sources() -> list[Path]:
    return sorted(
        p
        for top in ("shared", "functions")
        for p in (ROOT / top).rglob("*.rs")
        if "/tests/" not in p.as_posix() and "/benches/" not in p.as_posix() and "/examples/" not in p.as_posix()
    )


def env_vars_read(infixes: list[str], cat: dict) -> set[str]:
    """Every TERIMA_* name the code mentions, with `TERIMA_{...}_X` formats
    expanded over the providers' infixes, and every variable the providers'
    schemes read (the catalogue)."""
    names: set[str] = {v for p in cat["providers"] for v in p["variables"]}
    for path in rust_sources():
        text = path.read_text()
        names.update(re.findall(r'"(TERIMA_[A-Z0-9_]*[A-Z0-9])"', text))
        for suffix in re.findall(r'"TERIMA_\{[^}]*\}(_[A-Z0-9_]+)"', text):
            names.update(f"TERIMA_{infix}{suffix}" for infix in infixes)
    return names


def string_literals_in(directory: Path) -> set[str]:
    return {m for p in directory.rglob("*.rs") for m in re.findall(r'"([a-z_]+)"', p.read_text())}


# --------------------------------------------------------------------------
# Template helpers
# --------------------------------------------------------------------------


def resources_of(template: dict, kind: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v.get("Type") == kind}


def is_ref(value, name: str) -> bool:
    return isinstance(value, dict) and value.get("Ref") == name


def is_arn_of(value, name: str) -> bool:
    return isinstance(value, dict) and value.get("Fn::GetAtt") in ([name, "Arn"], f"{name}.Arn")


def is_if(value, condition: str, then, otherwise) -> bool:
    return isinstance(value, dict) and value.get("Fn::If") == [condition, then, otherwise]


def sub_literal(value) -> str:
    """A Fn::Sub's string with its literal-valued variables filled in."""
    if isinstance(value, dict) and isinstance(value.get("Fn::Sub"), list):
        text, variables = value["Fn::Sub"]
        for name, v in variables.items():
            if isinstance(v, str):
                text = text.replace("${%s}" % name, v)
        return text
    return sub_text(value)


def sub_text(value) -> str:
    """The string of a Fn::Sub (either form), or the string itself."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    return ""


def statements(function: dict) -> list[dict]:
    out = []
    for policy in function["Properties"].get("Policies", []) or []:
        if isinstance(policy, dict):
            out.extend(policy.get("Statement", []))
    return out


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def permissions(stmts: list[dict]) -> set[tuple[str, str]]:
    """(action, resource) pairs, each resource as JSON text."""
    return {
        (action, json.dumps(resource, sort_keys=True))
        for s in stmts
        if s.get("Effect") == "Allow"
        for action in as_list(s.get("Action"))
        for resource in as_list(s.get("Resource"))
    }


def table_arn() -> str:
    return json.dumps({"Fn::GetAtt": ["Table", "Arn"]}, sort_keys=True)


def queue_arn() -> str:
    return json.dumps({"Fn::GetAtt": ["Queue", "Arn"]}, sort_keys=True)


def bucket_prefix(prefix: str) -> str:
    return json.dumps({"Fn::Sub": "${BodyBucket.Arn}/" + prefix + "/*"}, sort_keys=True)


def default_of(template: dict, parameter: str):
    return template["Parameters"].get(parameter, {}).get("Default")


def alarm_actions_ok(alarm: dict) -> bool:
    action = {"Fn::If": ["CreateAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]}
    props = alarm["Properties"]
    return props.get("AlarmActions") == [action] and props.get("OKActions") == [action]


def alarm_metric(alarm: dict) -> tuple[str, str, dict]:
    """(namespace, metric, dimensions) of a single-metric alarm."""
    props = alarm["Properties"]
    dims = {d["Name"]: d["Value"] for d in props.get("Dimensions", [])}
    return props.get("Namespace", ""), props.get("MetricName", ""), dims


def math_metrics(alarm: dict) -> dict[str, tuple[str, str, dict]]:
    """Id -> (namespace, metric, dimensions) of a metric-math alarm."""
    out = {}
    for m in alarm["Properties"].get("Metrics", []):
        metric = m.get("MetricStat", {}).get("Metric")
        if metric:
            dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            out[m["Id"]] = (metric.get("Namespace"), metric.get("MetricName"), dims)
    return out


def dashboard_body(dashboard: dict):
    body = dashboard["Properties"].get("DashboardBody")
    if isinstance(body, dict) and "Fn::ToJsonString" in body:
        return body["Fn::ToJsonString"]
    if isinstance(body, str):
        return json.loads(body)
    return None


def is_intrinsic(value) -> bool:
    """{"Ref": ...} or {"Fn::...": ...}, as opposed to a widget's options."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    key = next(iter(value))
    return key == "Ref" or key.startswith("Fn::")


def dashboard_metrics(body) -> list[tuple[str, str, dict, dict]]:
    """(namespace, metric, dimensions, options) of every metric line: a line
    is [namespace, name, dimension, value, ..., {options}]."""
    out = []
    for widget in (body or {}).get("widgets", []):
        props = widget.get("properties", {})
        for line in props.get("metrics", []) or []:
            options = line[-1] if line and isinstance(line[-1], dict) and not is_intrinsic(line[-1]) else {}
            fields = line[:-1] if options else line
            if len(fields) < 2:
                continue
            dims = dict(zip(fields[2::2], fields[3::2]))
            stat = options.get("stat", props.get("stat"))
            out.append((fields[0], fields[1], dims, {"stat": stat, "title": props.get("title", "")}))
    return out


# --------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------


def check_expansion(raw: dict, template: dict) -> dict | None:
    check(
        raw.get("Transform") == ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"],
        "Transform: AWS::LanguageExtensions, then AWS::Serverless-2016-10-31",
        str(raw.get("Transform")),
    )
    leftover = [k for section in ("Resources", "Outputs", "Conditions") for k in template.get(section, {}) if k.startswith(FOREACH)]
    check(not leftover, "every Fn::ForEach is expanded", str(leftover))
    try:
        sam = sam_cli_expansion(raw)
    except Exception as e:  # noqa: BLE001 - reported as a failed check
        check(False, "SAM CLI expands the template's language extensions", repr(e))
        sam = None
    if sam is not None:
        for section in ("Resources", "Outputs"):
            ours, theirs = sorted(template.get(section, {})), sorted(sam.get(section, {}))
            check(ours == theirs, f"{section}: this expansion and SAM CLI's agree", f"{set(ours) ^ set(theirs)}")
    try:
        translated = sam_translation(template)
        check(True, "the SAM transform of the expanded template succeeds")
        return translated
    except Exception as e:  # noqa: BLE001 - reported as a failed check
        check(False, "the SAM transform of the expanded template succeeds", repr(e))
        return None


def check_functions(template: dict, providers: dict[str, str]) -> dict[str, str]:
    functions = resources_of(template, "AWS::Serverless::Function")
    crates = function_crates()

    # ---- build: every function from a workspace binary, each binary once
    binaries: dict[str, str] = {}
    for name, fn in sorted(functions.items()):
        meta = fn.get("Metadata", {})
        binary = meta.get("BuildProperties", {}).get("Binary")
        check(meta.get("BuildMethod") == "rust-cargolambda", f"{name} is built with rust-cargolambda", str(meta.get("BuildMethod")))
        check(fn["Properties"].get("CodeUri") == ".", f"{name} builds from the workspace root (CodeUri .)")
        check(binary in crates, f"{name} binary {binary!r} is a workspace member under functions/", f"members: {sorted(crates)}")
        binaries[name] = binary
    deployed = sorted(binaries.values())
    check(sorted(crates) == deployed, "every crate under functions/ is deployed exactly once", f"crates {sorted(crates)}, deployed {deployed}")
    missing_members = function_dirs() - set(crates.values())
    check(not missing_members, "every crate directory under functions/ is a workspace member", str(missing_members))

    glob = template.get("Globals", {}).get("Function", {})
    check(glob.get("Runtime") == "provided.al2023", "Globals: Runtime provided.al2023")
    check(glob.get("Architectures") == ["arm64"], "Globals: Architectures [arm64]")
    check(glob.get("Handler") == "bootstrap", "Globals: Handler bootstrap")
    check(is_ref(glob.get("Tracing"), "TracingMode"), "Globals: Tracing follows the TracingMode parameter")
    check(default_of(template, "TracingMode") == "PassThrough", "tracing is off by default (PassThrough)")

    # ---- events: one route per provider, an SQS event for the processor,
    # a schedule for the maintenance
    apis = resources_of(template, "AWS::Serverless::HttpApi")
    for name, binary in sorted(binaries.items()):
        props = functions[name]["Properties"]
        events = props.get("Events", {}) or {}
        http_events = [e["Properties"] for e in events.values() if e.get("Type") == "HttpApi"]
        sqs_events = [e["Properties"] for e in events.values() if e.get("Type") == "SQS"]
        schedules = [e["Properties"] for e in events.values() if e.get("Type") in ("Schedule", "ScheduleV2")]
        if binary in providers:
            routes = [(e.get("Method", "").upper(), e.get("Path")) for e in http_events]
            check(routes == [("POST", f"/webhooks/{binary}")], f"{name} has exactly one route, POST /webhooks/{binary}", str(routes))
            check(all(str(e.get("PayloadFormatVersion")) == "2.0" for e in http_events), f"{name} uses payload format 2.0")
            check(
                all(any(is_ref(e.get("ApiId"), api) for api in apis) for e in http_events),
                f"{name} is routed through the template's HttpApi",
            )
            check(not sqs_events and not schedules, f"{name} has no other event")
            check(is_ref(props.get("MemorySize"), "ProviderMemorySize"), f"{name} memory follows ProviderMemorySize")
            check(
                is_if(props.get("ReservedConcurrentExecutions"), "ReserveConcurrency", {"Ref": "ProviderReservedConcurrency"}, {"Ref": "AWS::NoValue"}),
                f"{name} reserves ProviderReservedConcurrency (unless 0)",
            )
        elif binary == PROCESSOR_BINARY:
            check(len(sqs_events) == 1 and not http_events and not schedules, f"{name} has one SQS event and nothing else")
            for e in sqs_events:
                check(is_arn_of(e.get("Queue"), "Queue"), f"{name} consumes the template's Queue")
                check("ReportBatchItemFailures" in (e.get("FunctionResponseTypes") or []), f"{name} reports batch item failures")
                check(
                    is_ref(e.get("ScalingConfig", {}).get("MaximumConcurrency"), "ProcessorMaximumConcurrency"),
                    f"{name}'s event source is capped by ProcessorMaximumConcurrency",
                )
            check(
                is_if(props.get("ReservedConcurrentExecutions"), "ReserveConcurrency", {"Ref": "ProcessorMaximumConcurrency"}, {"Ref": "AWS::NoValue"}),
                f"{name} is reserved its maximum concurrency with the provider functions",
            )
        elif binary == MAINTENANCE_BINARY:
            check(
                [s.get("Schedule") for s in schedules] == ["rate(1 minute)"] and not http_events and not sqs_events,
                f"{name} runs on a schedule, rate(1 minute), and has no other event",
                str(schedules),
            )
            check(props.get("Timeout") == 60, f"{name} has a 60 s timeout")
        else:
            check(False, f"{name} binary {binary!r} is a provider, the processor or the maintenance")
    return binaries


def check_environment(template: dict, binaries: dict[str, str], providers: dict[str, str], cat: dict) -> None:
    functions = resources_of(template, "AWS::Serverless::Function")
    read = env_vars_read(sorted(providers.values()), cat)
    expected_refs = {
        "TERIMA_TABLE": "Table",
        "TERIMA_QUEUE_URL": "Queue",
        "TERIMA_BUCKET": "BodyBucket",
        "TERIMA_RETENTION_DAYS": "EventRetentionDays",
        "TERIMA_ARCHIVE_DAYS": "ArchiveRetentionDays",
        "TERIMA_MAX_BODY_BYTES": "MaxBodyBytes",
    }
    wanted = {
        "provider": {"TERIMA_TABLE", "TERIMA_QUEUE_URL", "TERIMA_BUCKET", "TERIMA_MAX_BODY_BYTES", "TERIMA_RETENTION_DAYS"},
        PROCESSOR_BINARY: {"TERIMA_TABLE", "TERIMA_BUCKET", "TERIMA_LEASE_SECS", "TERIMA_CONCURRENCY", "TERIMA_RETENTION_DAYS"},
        MAINTENANCE_BINARY: {"TERIMA_TABLE", "TERIMA_QUEUE_URL", "TERIMA_BUCKET", "TERIMA_RETENTION_DAYS", "TERIMA_ARCHIVE_DAYS"},
    }
    for name, fn in sorted(functions.items()):
        variables = fn["Properties"].get("Environment", {}).get("Variables", {}) or {}
        unknown = sorted(v for v in variables if v not in read)
        check(not unknown, f"{name} sets only variables the code reads", f"unknown: {unknown}")
        secret_values = sorted(v for v in variables if re.fullmatch(r"TERIMA_\w+_SECRETS", v))
        check(not secret_values, f"{name} carries no secret values", str(secret_values))
        check("TERIMA_BITBYBIT_TOLERANCE_SECS" not in variables, f"{name} keeps the default BitByBit tolerance")
        check(not any(v.endswith("_VERIFY") for v in variables), f"{name} does not switch verification off")
        binary = binaries[name]
        kind = "provider" if binary in providers else binary
        missing = sorted(wanted.get(kind, set()) - set(variables))
        check(not missing, f"{name} gets every variable it needs", f"missing {missing}")
        for var, target in expected_refs.items():
            if var in variables:
                check(is_ref(variables[var], target), f"{name}: {var} is the template's {target}", str(variables[var]))
        if binary in providers:
            own = f"TERIMA_{providers[binary]}_SECRETS_ID"
            theirs = {v for v in read if v.startswith(f"TERIMA_{providers[binary]}_") and v.endswith("_ID")}
            ids = sorted(v for v in variables if v.endswith("_ID"))
            check(own in ids and set(ids) <= theirs, f"{name} names its own secrets ({own}) and no other provider's", str(ids))


SECRET_PARAMS = {"bebaskirim": "BebasKirimSecretId", "bitbybit": "BitByBitSecretId", "oms": "OmsSecretId", "biteship": "BiteshipSecretId"}
# Secrets a provider reads only when a parameter names one: (parameter, condition).
OPTIONAL_SECRET_PARAMS = {"oms": ("OmsTokensSecretId", "HasOmsTokens")}


def secret_arn(param: str) -> dict:
    return {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${" + param + "}-??????"}


def check_permissions(template: dict, binaries: dict[str, str], providers: dict[str, str]) -> None:
    functions = resources_of(template, "AWS::Serverless::Function")
    for name, fn in sorted(functions.items()):
        binary = binaries[name]
        if binary in providers:
            param = SECRET_PARAMS.get(binary, "?")
            expected = {
                ("dynamodb:PutItem", table_arn()),
                ("dynamodb:Query", table_arn()),
                ("sqs:SendMessage", queue_arn()),
                ("s3:PutObject", bucket_prefix("claim")),
                ("secretsmanager:GetSecretValue", json.dumps(secret_arn(param), sort_keys=True)),
            }
            if binary in OPTIONAL_SECRET_PARAMS:
                optional, condition = OPTIONAL_SECRET_PARAMS[binary]
                resource = {"Fn::If": [condition, secret_arn(optional), {"Ref": "AWS::NoValue"}]}
                expected.add(("secretsmanager:GetSecretValue", json.dumps(resource, sort_keys=True)))
            got = permissions(statements(fn))
            check(got == expected, f"{name} may only PutItem/Query the table, send to the queue, put claim/ bodies and read its own secret", f"extra {got - expected}, missing {expected - got}")
        elif binary == MAINTENANCE_BINARY:
            expected = {(f"dynamodb:{a}", table_arn()) for a in ("Query", "GetItem", "PutItem", "DeleteItem", "BatchGetItem")} | {
                ("sqs:SendMessage", queue_arn()),
                ("s3:GetObject", bucket_prefix("claim")),
                ("s3:GetObject", bucket_prefix("archive")),
                ("s3:PutObject", bucket_prefix("archive")),
            }
            got = permissions(statements(fn))
            check(got == expected, f"{name} has exactly the maintenance permissions", f"extra {got - expected}, missing {expected - got}")
    role = template["Resources"].get("ProcessorRole", {}).get("Properties", {})
    stmts = [s for p in role.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
    expected = {(f"dynamodb:{a}", table_arn()) for a in ("GetItem", "PutItem", "UpdateItem", "Query", "BatchGetItem")} | {
        ("s3:GetObject", bucket_prefix("claim")),
    } | {(f"sqs:{a}", queue_arn()) for a in ("ReceiveMessage", "DeleteMessage", "ChangeMessageVisibility", "GetQueueAttributes")}
    got = permissions(stmts)
    check(got == expected, "the processor role has exactly the processor permissions (table ARN only, no index)", f"extra {got - expected}, missing {expected - got}")

    # Secret ARNs: Secrets Manager appends "-" and six characters; "-*" would
    # also match another secret whose name starts with this one's.
    def arn_texts(resource) -> list[str]:
        if isinstance(resource, dict) and "Fn::If" in resource:
            return [t for branch in resource["Fn::If"][1:] if branch != {"Ref": "AWS::NoValue"} for t in arn_texts(branch)]
        return [sub_text(resource)]

    grants = [
        s for fn in functions.values() for s in statements(fn) if "secretsmanager:GetSecretValue" in as_list(s.get("Action"))
    ]
    texts = [t for s in grants for r in as_list(s.get("Resource")) for t in arn_texts(r)]
    check(len(grants) == len(providers), "one GetSecretValue statement per provider function", str(len(grants)))
    check(all(t.endswith("-??????") for t in texts), "every secret ARN ends in -?????? (not -*)", str(texts))


def check_table_and_bucket(template: dict) -> None:
    resources = template["Resources"]
    table_res = resources.get("Table", {})
    table = table_res.get("Properties", {})
    code_literals = string_literals_in(ROOT / "shared")
    key_schema = {k["KeyType"]: k["AttributeName"] for k in table.get("KeySchema", [])}
    check(key_schema == {"HASH": "pk", "RANGE": "sk"}, "table keys are pk (HASH) and sk (RANGE)", str(key_schema))
    check({"pk", "sk", "expires_at"} <= code_literals, "the code under shared/ names pk, sk and expires_at")
    check(not table.get("GlobalSecondaryIndexes") and not table.get("LocalSecondaryIndexes"), "table has no secondary index")
    defined = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
    check(defined == {"pk": "S", "sk": "S"}, "attribute definitions are exactly pk and sk, strings", str(defined))
    ttl = table.get("TimeToLiveSpecification", {})
    check(ttl == {"AttributeName": "expires_at", "Enabled": True}, "TTL is enabled on expires_at", str(ttl))
    check(table.get("DeletionProtectionEnabled") is True, "table has deletion protection")
    check(
        table_res.get("DeletionPolicy") == "Retain" and table_res.get("UpdateReplacePolicy") == "Retain",
        "table is retained on stack deletion and replacement",
    )
    check(table.get("SSESpecification") == {"SSEEnabled": False}, "table is encrypted with the AWS-owned key (free), not a billed KMS key")
    check(
        table.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled")
        == {"Fn::If": ["PointInTimeRecoveryOn", True, False]}
        and default_of(template, "PointInTimeRecovery") == "true",
        "point-in-time recovery is a parameter, on by default",
    )
    check(table.get("BillingMode") == "PAY_PER_REQUEST", "table is on-demand (a flash sale needs no capacity planning)")

    bucket_res = resources.get("BodyBucket", {})
    bucket = bucket_res.get("Properties", {})
    sse = bucket.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [{}])
    check(sse[0].get("ServerSideEncryptionByDefault", {}).get("SSEAlgorithm") == "AES256", "body bucket: SSE-S3 (AES256)")
    block = bucket.get("PublicAccessBlockConfiguration", {})
    check(
        all(block.get(k) is True for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")),
        "body bucket: all public access blocked",
    )
    check(
        bucket_res.get("DeletionPolicy") == "Retain" and bucket_res.get("UpdateReplacePolicy") == "Retain",
        "body bucket is retained on stack deletion and replacement",
    )
    rules = {r.get("Prefix"): r for r in bucket.get("LifecycleConfiguration", {}).get("Rules", [])}
    claim, archive = rules.get("claim/", {}), rules.get("archive/", {})
    check(is_ref(claim.get("ExpirationInDays"), "ClaimRetentionDays"), "claim/ bodies expire after ClaimRetentionDays")
    check(
        archive.get("Transitions") == [{"StorageClass": "STANDARD_IA", "TransitionInDays": 30}]
        and is_ref(archive.get("ExpirationInDays"), "ArchiveRetentionDays"),
        "archive/ moves to STANDARD_IA after 30 days and expires after ArchiveRetentionDays",
    )
    check(
        int(default_of(template, "ClaimRetentionDays")) >= int(default_of(template, "EventRetentionDays")) + 15,
        "ClaimRetentionDays' default is at least EventRetentionDays' + 15",
    )
    check(int(template["Parameters"]["ArchiveRetentionDays"].get("MinValue", 0)) > 30, "ArchiveRetentionDays cannot expire before the 30-day transition")
    check(int(template["Parameters"]["MaxBodyBytes"].get("MaxValue", 0)) == 4194304, "MaxBodyBytes is capped at 4 MiB (shared/service MAX_BODY_LIMIT: Lambda's 6 MB request with the event around the body)")
    policies = [p for p in resources_of(template, "AWS::S3::BucketPolicy").values() if is_ref(p["Properties"].get("Bucket"), "BodyBucket")]
    denies_plain = any(
        s.get("Effect") == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        for p in policies
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    )
    check(denies_plain, "body bucket policy denies requests without TLS")


def check_queue(template: dict, binaries: dict[str, str]) -> None:
    functions = resources_of(template, "AWS::Serverless::Function")
    glob = template.get("Globals", {}).get("Function", {})
    queue = template["Resources"].get("Queue", {}).get("Properties", {})
    processor = next((fn for n, fn in functions.items() if binaries[n] == PROCESSOR_BINARY), {})
    timeout = processor.get("Properties", {}).get("Timeout", glob.get("Timeout", 3))
    check(
        int(queue.get("VisibilityTimeout", 30)) >= 6 * int(timeout),
        "queue visibility timeout is at least 6x the processor timeout",
        f"{queue.get('VisibilityTimeout')} vs {timeout}",
    )
    check(is_arn_of(queue.get("RedrivePolicy", {}).get("deadLetterTargetArn"), "DeadLetterQueue"), "queue redrives to the dead-letter queue")


def check_alarms(template: dict, binaries: dict[str, str], providers: dict[str, str]) -> None:
    resources = template["Resources"]
    conditions = template.get("Conditions", {})
    alarms = resources_of(template, "AWS::CloudWatch::Alarm")

    # ---- the topic: created (with an optional e-mail), or an existing one
    check(conditions.get("CreateAlarmTopic") == {"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}, "the stack creates the alarm topic unless AlarmTopicArn is given")
    topic = resources.get("AlarmTopic", {})
    check(topic.get("Type") == "AWS::SNS::Topic" and topic.get("Condition") == "CreateAlarmTopic", "AlarmTopic is an SNS topic, created under CreateAlarmTopic")
    subscriptions = [
        s for s in resources_of(template, "AWS::SNS::Subscription").values()
        if is_ref(s["Properties"].get("TopicArn"), "AlarmTopic") and s["Properties"].get("Protocol") == "email"
    ]
    check(
        len(subscriptions) == 1 and is_ref(subscriptions[0]["Properties"].get("Endpoint"), "AlarmEmail"),
        "the AlarmEmail parameter subscribes an address to the topic",
    )
    check(default_of(template, "AlarmTopicArn") == "" and default_of(template, "AlarmEmail") == "", "AlarmTopicArn and AlarmEmail are optional")
    without = sorted(n for n, a in alarms.items() if not alarm_actions_ok(a))
    check(alarms and not without, f"all {len(alarms)} alarms notify the alarm topic (alarm and OK)", str(without))

    # ---- per provider: the ways a delivery is lost before the queue
    route_name = {name: binary for name, binary in binaries.items()}
    for name, binary in sorted(route_name.items()):
        if binary not in providers:
            continue
        prefix = name.removesuffix("Function")
        rejected = alarms.get(f"{prefix}RejectedAlarm")
        ok = False
        if rejected:
            used = math_metrics(rejected)
            ok = (
                {m for _, m, _ in used.values()} >= {"rejected", "accepted", "duplicate"}
                and all(ns == "Terima" and dims == {"provider": binary} for ns, _, dims in used.values())
                and any(m.get("Expression") for m in rejected["Properties"]["Metrics"])
            )
        check(ok, f"{prefix}RejectedAlarm: the share of rejected {binary} deliveries (metric math)")
        for suffix, metric in (("Unavailable", "unavailable"), ("BackendError", "backend_error"), ("Quarantined", "quarantined")):
            alarm = alarms.get(f"{prefix}{suffix}Alarm")
            check(
                alarm is not None and alarm_metric(alarm) == ("Terima", metric, {"provider": binary}),
                f"{prefix}{suffix}Alarm watches Terima/{metric} for provider {binary}",
            )

    # ---- every function: errors and throttles
    for name in sorted(binaries):
        for metric in ("Errors", "Throttles"):
            alarm = alarms.get(f"{name}{metric}Alarm")
            check(
                alarm is not None and alarm_metric(alarm) == ("AWS/Lambda", metric, {"FunctionName": {"Ref": name}}),
                f"{name}{metric}Alarm watches AWS/Lambda {metric} of {name}",
            )

    # ---- the queue and the API
    dlq = alarms.get("DeadLetterQueueAlarm")
    check(
        dlq is not None
        and alarm_metric(dlq) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}})
        and dlq["Properties"].get("Threshold") == 0
        and dlq["Properties"].get("ComparisonOperator") == "GreaterThanThreshold",
        "DeadLetterQueueAlarm fires on any message in the DLQ",
    )
    age = alarms.get("QueueAgeAlarm")
    check(
        age is not None and alarm_metric(age) == ("AWS/SQS", "ApproximateAgeOfOldestMessage", {"QueueName": {"Fn::GetAtt": ["Queue", "QueueName"]}}),
        "QueueAgeAlarm watches the age of the oldest queued message",
    )
    if age is not None:
        visibility = int(resources["Queue"]["Properties"]["VisibilityTimeout"])
        receives = int(resources["Queue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"])
        check(
            int(age["Properties"]["Threshold"]) >= visibility * receives,
            "QueueAgeAlarm's threshold outlasts one message's retries (they belong to the DLQ alarm)",
            f"{age['Properties']['Threshold']} < {visibility} x {receives}",
        )
    api = alarms.get("Api5xxAlarm")
    check(api is not None and alarm_metric(api) == ("AWS/ApiGateway", "5xx", {"ApiId": {"Ref": "HttpApi"}}), "Api5xxAlarm watches the API's 5xx answers")


def check_dashboard(template: dict, providers: dict[str, str]) -> None:
    dashboards = resources_of(template, "AWS::CloudWatch::Dashboard")
    check(len(dashboards) == 1, "one CloudWatch dashboard", str(sorted(dashboards)))
    if not dashboards:
        return
    name, dashboard = next(iter(dashboards.items()))
    body = dashboard_body(dashboard)
    check(body is not None, "the dashboard body is Fn::ToJsonString of a widget list (or JSON)")
    lines = dashboard_metrics(body)
    have = {(ns, m, tuple(sorted(json.dumps(v, sort_keys=True) for v in d.items())), o["stat"]) for ns, m, d, o in lines}

    def shows(ns: str, metric: str, dims: dict, stat: str | None = None) -> bool:
        key = tuple(sorted(json.dumps(v, sort_keys=True) for v in dims.items()))
        return any(h[:3] == (ns, metric, key) and (stat is None or h[3] == stat) for h in have)

    for provider in sorted(providers):
        for metric in ("accepted", "duplicate", "rejected", "quarantined", "processed", "failed", "unavailable"):
            check(shows("Terima", metric, {"provider": provider}), f"dashboard shows {metric} for {provider}")
        for stat in ("p50", "p99"):
            check(shows("Terima", "ack_ms", {"provider": provider}, stat), f"dashboard shows ack latency {stat} for {provider}")
    queue = {"QueueName": {"Fn::GetAtt": ["Queue", "QueueName"]}}
    dlq = {"QueueName": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}
    check(shows("AWS/SQS", "ApproximateNumberOfMessagesVisible", queue), "dashboard shows the queue depth")
    check(shows("AWS/SQS", "ApproximateAgeOfOldestMessage", queue), "dashboard shows the age of the oldest queued message")
    check(shows("AWS/SQS", "ApproximateNumberOfMessagesVisible", dlq), "dashboard shows the dead-letter queue depth")
    alarm_widgets = [w for w in body.get("widgets", []) if w.get("type") == "alarm"] if body else []
    shown = {a.get("Fn::GetAtt", [None])[0] for w in alarm_widgets for a in w["properties"].get("alarms", []) if isinstance(a, dict)}
    alarms = set(resources_of(template, "AWS::CloudWatch::Alarm"))
    check(alarms and shown == alarms, "the dashboard's alarm widget shows every alarm", f"{alarms ^ shown}")
    url = template.get("Outputs", {}).get("DashboardUrl", {}).get("Value")
    check("${" + name + "}" in sub_text(url), "the DashboardUrl output opens the dashboard", str(url))


def check_capacity_and_logs(template: dict, translated: dict | None, binaries: dict[str, str], providers: dict[str, str]) -> None:
    resources = template["Resources"]
    params = template["Parameters"]
    api = resources.get("HttpApi", {}).get("Properties", {})
    route = api.get("DefaultRouteSettings", {})
    check(
        is_ref(route.get("ThrottlingRateLimit"), "ApiThrottlingRateLimit") and is_ref(route.get("ThrottlingBurstLimit"), "ApiThrottlingBurstLimit"),
        "HTTP API routes are throttled by ApiThrottlingRateLimit/ApiThrottlingBurstLimit",
    )
    rate = int(default_of(template, "ApiThrottlingRateLimit"))
    burst = int(default_of(template, "ApiThrottlingBurstLimit"))
    reserved = int(default_of(template, "ProviderReservedConcurrency"))
    processor = int(default_of(template, "ProcessorMaximumConcurrency"))
    check(burst >= rate, "the default burst is at least the default rate", f"{burst} < {rate}")
    check(
        reserved >= rate * ACK_BUDGET_SECS,
        f"default reservation covers a route at its limit ({rate}/s x {ACK_BUDGET_SECS} s = {rate * ACK_BUDGET_SECS:g})",
        str(reserved),
    )
    total = reserved * len(providers) + processor
    check(
        total <= DEFAULT_ACCOUNT_CONCURRENCY - UNRESERVED_MINIMUM,
        f"default reservations ({total}) leave the account its unreserved minimum (of {DEFAULT_ACCOUNT_CONCURRENCY})",
    )
    check(int(params["ProviderReservedConcurrency"].get("MinValue", -1)) == 0, "ProviderReservedConcurrency can be 0 (no reservation)")

    # ---- logs: every function and the API log to groups the stack owns
    groups = resources_of(template, "AWS::Logs::LogGroup")
    check(default_of(template, "LogRetentionDays") == 30, "log retention is a parameter, 30 days by default")
    for name, group in sorted(groups.items()):
        check(is_ref(group["Properties"].get("RetentionInDays"), "LogRetentionDays"), f"{name} keeps logs LogRetentionDays")
    for name in sorted(binaries):
        log_group = resources[name]["Properties"].get("LoggingConfig", {}).get("LogGroup")
        check(
            isinstance(log_group, dict) and log_group.get("Ref") in groups,
            f"{name} logs to a log group of the stack",
            str(log_group),
        )
    access = api.get("AccessLogSettings", {})
    check(is_arn_of(access.get("DestinationArn"), "ApiAccessLogGroup") and "ApiAccessLogGroup" in groups, "the HTTP API writes access logs to a log group of the stack")
    try:
        fields = json.loads(access.get("Format", ""))
    except json.JSONDecodeError:
        fields = {}
    check({"requestId", "status", "routeKey", "integrationStatus"} <= set(fields), "the access log format is JSON with requestId, routeKey, status, integrationStatus", str(sorted(fields)))

    if translated is not None:
        tres = translated["Resources"]
        stages = {n: r for n, r in tres.items() if r["Type"] == "AWS::ApiGatewayV2::Stage"}
        check(list(stages) == ["HttpApiApiGatewayDefaultStage"], "SAM creates one stage, HttpApiApiGatewayDefaultStage (the custom domain maps it)", str(list(stages)))
        for stage in stages.values():
            props = stage["Properties"]
            check(
                is_ref(props.get("DefaultRouteSettings", {}).get("ThrottlingRateLimit"), "ApiThrottlingRateLimit")
                and "AccessLogSettings" in props,
                "the translated stage carries the throttling and the access log",
            )
        lambdas = {n: r for n, r in tres.items() if r["Type"] == "AWS::Lambda::Function"}
        owned = sorted(n for n, r in lambdas.items() if r["Properties"].get("LoggingConfig", {}).get("LogGroup", {}).get("Ref") in groups)
        check(owned == sorted(lambdas) and len(lambdas) == len(binaries), "every translated Lambda function logs to a stack log group (none created implicitly)", str(sorted(set(lambdas) - set(owned))))
        formats = {r["Properties"].get("LoggingConfig", {}).get("LogFormat") for r in lambdas.values()}
        check(formats == {"JSON"}, "every translated Lambda function keeps the JSON log format (metric lines)", str(formats))


def check_domain_and_outputs(template: dict, binaries: dict[str, str], providers: dict[str, str]) -> None:
    resources = template["Resources"]
    conditions = template.get("Conditions", {})
    outputs = template.get("Outputs", {})
    check(conditions.get("HasCustomDomain") == {"Fn::Not": [{"Fn::Equals": [{"Ref": "DomainName"}, ""]}]}, "the custom domain is optional (HasCustomDomain)")
    domain = resources.get("ApiDomain", {})
    mapping = resources.get("ApiDomainMapping", {})
    check(
        domain.get("Condition") == "HasCustomDomain"
        and is_ref(domain["Properties"]["DomainName"], "DomainName")
        and is_ref(domain["Properties"]["DomainNameConfigurations"][0].get("CertificateArn"), "CertificateArn"),
        "ApiDomain uses DomainName and CertificateArn, only with a domain",
    )
    check(
        mapping.get("Condition") == "HasCustomDomain"
        and is_ref(mapping["Properties"].get("ApiId"), "HttpApi")
        and is_ref(mapping["Properties"].get("Stage"), "HttpApiApiGatewayDefaultStage"),
        "ApiDomainMapping maps the domain to the HTTP API's stage",
    )
    check("CustomDomainNeedsCertificate" in template.get("Rules", {}), "a rule refuses a domain without a certificate")
    for name, binary in sorted(binaries.items()):
        if binary in providers:
            url = outputs.get(f"{name.removesuffix('Function')}WebhookUrl", {}).get("Value", {})
            text = json.dumps(url)
            check(
                sub_literal(url).endswith(f"/webhooks/{binary}") and "HasCustomDomain" in text and "DomainName" in text,
                f"{name.removesuffix('Function')}WebhookUrl gives /webhooks/{binary}, on the custom domain when there is one",
                text,
            )
        check(is_ref(outputs.get(f"{name}Name", {}).get("Value"), name), f"output {name}Name gives the function's name")
    for output in ("DashboardUrl", "AlarmTopic", "DeadLetterQueueArn", "DeadLetterQueueUrl", "QueueUrl", "TableName", "BodyBucketName", "ApiEndpoint", "CustomDomainTarget"):
        check(output in outputs, f"output {output}")
    check(is_arn_of(outputs.get("DeadLetterQueueArn", {}).get("Value"), "DeadLetterQueue"), "DeadLetterQueueArn is the DLQ's ARN")


def check_samconfig() -> None:
    config = tomllib.loads(SAMCONFIG.read_text())
    default = config.get("default", {})
    for command in ("build", "validate", "package", "deploy", "sync"):
        check(
            default.get(command, {}).get("parameters", {}).get("language_extensions") is True,
            f"samconfig.toml: {command} expands the language extensions",
        )
    production = default.get("global", {}).get("parameters", {}).get("stack_name")
    sync_stack = default.get("sync", {}).get("parameters", {}).get("stack_name")
    check(sync_stack is not None and sync_stack != production, "samconfig.toml: sam sync targets a development stack, never the production one", f"{sync_stack} vs {production}")
    check(default.get("build", {}).get("parameters", {}).get("parallel") is True, "samconfig.toml: parallel builds")
    check("project=" in default.get("deploy", {}).get("parameters", {}).get("tags", ""), "samconfig.toml: the stack (and so its resources) is tagged")


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def check_docs(raw: dict, template: dict) -> None:
    text = DEPLOY_MD.read_text()
    # ---- the guided deploy's parameter table: every parameter, its default
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", text, re.M))
    for name, param in sorted(template["Parameters"].items()):
        default = str(param.get("Default", ""))
        shown = rows.get(name, "").strip()
        documented = "" if shown == "*(empty)*" else shown.strip("`")
        check(name in rows and documented == default, f"docs/deploy.md lists {name} with its default ({default or 'empty'})", shown)
    listed = [n for n in rows if n in template["Parameters"]]
    check(listed == list(template["Parameters"]), "docs/deploy.md lists the parameters in the order `sam deploy --guided` asks")
    # ---- the runbook: a line for every alarm, by its name pattern
    runbook = text[text.find("## Runbook") :]
    patterns = set()
    for resources in (raw["Resources"], *(v[2] for k, v in raw["Resources"].items() if k.startswith(FOREACH))):
        for resource in resources.values():
            if isinstance(resource, dict) and resource.get("Type") == "AWS::CloudWatch::Alarm":
                name = sub_text(resource["Properties"].get("AlarmName"))
                for var, placeholder in (("AWS::StackName", "<stack>"), ("Provider", "<Provider>"), ("Function", "<Function>")):
                    name = name.replace("${%s}" % var, placeholder)
                patterns.add(name)
    for pattern in sorted(patterns):
        check(f"| `{pattern}` |" in runbook, f"the runbook has a line for {pattern}")
    # ---- links into docs/deploy.md reach a heading
    anchors = {github_anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}
    links = set(re.findall(r"\]\(#([\w-]+)\)", text))
    links |= set(re.findall(r"docs/deploy\.md#([\w-]+)", README.read_text()))
    links |= set(re.findall(r"docs/deploy\.md#([\w-]+)", TEMPLATE.read_text()))
    broken = sorted(links - anchors)
    check(not broken, f"all {len(links)} links into docs/deploy.md (README, template, itself) reach a heading", str(broken))


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else TEMPLATE
    raw, template = load_template(path)
    cat = catalogue()
    providers = provider_names(cat)
    check(len(providers) >= 4, "providers from the code's catalogue", str(providers))
    translated = check_expansion(raw, template)
    binaries = check_functions(template, providers)
    check_environment(template, binaries, providers, cat)
    check_permissions(template, binaries, providers)
    check_table_and_bucket(template)
    check_queue(template, binaries)
    check_alarms(template, binaries, providers)
    check_dashboard(template, providers)
    check_capacity_and_logs(template, translated, binaries, providers)
    check_domain_and_outputs(template, binaries, providers)
    check_samconfig()
    check_docs(raw, template)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
