#!/usr/bin/env python3
"""Every Terima metric that template.yaml uses is one the code emits.

    .venv/bin/python scripts/check_metrics.py [template.yaml]

The catalogue comes from the code itself: `cargo run --example catalogue -p
terima-service` prints `Metric::ALL` with each metric's dimension sets, and
`Provider::ALL` with each provider's name. The template's loops are expanded
as scripts/check_template.py does. Then every metric in the namespace Terima,
in an alarm (single metric or metric math) or a dashboard widget, must:
  - be named in the catalogue;
  - use a dimension set the metric is published under ({provider}, or
    {provider, <its detail>});
  - name a provider the code knows in its `provider` dimension.
Dashboard lines must be written in full (no "." / "..." shorthand) and may not
hide Terima metrics in SEARCH expressions: what cannot be checked fails.

Before that, the checker checks itself: the catalogue must look like the
code's (unique names, the known dimension sets of a few metrics), and a
template with a wrong name, a wrong dimension set, an unknown provider and a
shorthand line must fail each of those four ways.

Prints one line per check and closes with `N passed, M failed`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_template import (  # noqa: E402 - the sibling script, imported from its folder
    ROOT,
    TEMPLATE,
    catalogue,
    dashboard_body,
    is_intrinsic,
    load_template,
    resources_of,
)

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
# Every use of a metric in the template
# --------------------------------------------------------------------------


def uses(template: dict) -> list[dict]:
    """Each metric the template reads: where, namespace, name, dimensions
    ({name: value}), or a `problem` when it cannot be read."""
    found = []
    for name, alarm in sorted(resources_of(template, "AWS::CloudWatch::Alarm").items()):
        props = alarm["Properties"]
        if "MetricName" in props:
            dims = {d["Name"]: d["Value"] for d in props.get("Dimensions", [])}
            found.append({"where": name, "namespace": props.get("Namespace"), "name": props["MetricName"], "dims": dims})
        for m in props.get("Metrics", []) or []:
            metric = m.get("MetricStat", {}).get("Metric")
            if metric:
                dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
                found.append({"where": f"{name}/{m.get('Id')}", "namespace": metric.get("Namespace"), "name": metric.get("MetricName"), "dims": dims})
            elif "SEARCH" in str(m.get("Expression", "")):
                found.append({"where": f"{name}/{m.get('Id')}", "problem": "SEARCH expression"})
    for name, dashboard in sorted(resources_of(template, "AWS::CloudWatch::Dashboard").items()):
        body = dashboard_body(dashboard)
        if body is None:
            found.append({"where": name, "problem": "the body is neither Fn::ToJsonString nor JSON"})
            continue
        for i, widget in enumerate(body.get("widgets", [])):
            where = f"{name}/widget {i} ({widget.get('properties', {}).get('title', widget.get('type'))})"
            for line in widget.get("properties", {}).get("metrics", []) or []:
                fields = line[:-1] if line and isinstance(line[-1], dict) and not is_intrinsic(line[-1]) else line
                if any(f in (".", "...") for f in fields if isinstance(f, str)):
                    found.append({"where": where, "problem": f"shorthand line {fields}"})
                elif not fields:
                    options = line[-1] if line else {}
                    if "Terima" in str(options.get("expression", "")) or "SEARCH" in str(options.get("expression", "")):
                        found.append({"where": where, "problem": f"expression {options.get('expression')}"})
                elif len(fields) % 2 != 0 or len(fields) < 2:
                    found.append({"where": where, "problem": f"malformed line {fields}"})
                else:
                    dims = dict(zip(fields[2::2], fields[3::2]))
                    found.append({"where": where, "namespace": fields[0], "name": fields[1], "dims": dims})
    return found


def problems(found: list[dict], cat: dict) -> list[str]:
    """What is wrong with the template's Terima metrics, one line each."""
    metrics = {m["name"]: m for m in cat["metrics"]}
    providers = {p["name"] for p in cat["providers"]}
    out = []
    for use in found:
        if "problem" in use:
            out.append(f"{use['where']}: {use['problem']} (write Terima metrics in full)")
            continue
        if str(use["namespace"]).lower() == cat["namespace"].lower() and use["namespace"] != cat["namespace"]:
            out.append(f"{use['where']}: namespace {use['namespace']!r} is not {cat['namespace']!r}")
            continue
        if use["namespace"] != cat["namespace"]:
            continue
        metric = metrics.get(use["name"])
        if metric is None:
            out.append(f"{use['where']}: {use['name']!r} is not a metric the code emits")
            continue
        dims = sorted(use["dims"])
        if dims not in [sorted(s) for s in metric["dimension_sets"]]:
            out.append(f"{use['where']}: {use['name']} is not published under {dims} (only {metric['dimension_sets']})")
        provider = use["dims"].get("provider")
        if provider is not None and provider not in providers:
            out.append(f"{use['where']}: provider {provider!r} is not one of {sorted(providers)}")
    return out


def self_test(cat: dict) -> None:
    names = [m["name"] for m in cat["metrics"]]
    check(len(names) == len(set(names)) and len(names) >= 10, f"the catalogue lists {len(names)} metrics, each once")
    sets = {m["name"]: m["dimension_sets"] for m in cat["metrics"]}
    check(sets.get("accepted") == [["provider"]], "catalogue: accepted under {provider}", str(sets.get("accepted")))
    check(sets.get("rejected") == [["provider"], ["provider", "reason"]], "catalogue: rejected under {provider} and {provider, reason}", str(sets.get("rejected")))
    units = {m["name"]: m["unit"] for m in cat["metrics"]}
    check(units.get("ack_ms") == "Milliseconds", "catalogue: ack_ms is in milliseconds")
    check(cat["namespace"] == "Terima" and len(cat["providers"]) >= 4, "catalogue: namespace Terima and the providers", str(cat["providers"]))

    provider = cat["providers"][0]["name"]
    broken = {
        "Resources": {
            "WrongName": {
                "Type": "AWS::CloudWatch::Alarm",
                "Properties": {"Namespace": "Terima", "MetricName": "rejections", "Dimensions": [{"Name": "provider", "Value": provider}]},
            },
            "WrongSet": {
                "Type": "AWS::CloudWatch::Alarm",
                "Properties": {
                    "Metrics": [
                        {
                            "Id": "m",
                            "MetricStat": {
                                "Metric": {
                                    "Namespace": "Terima",
                                    "MetricName": "accepted",
                                    "Dimensions": [{"Name": "provider", "Value": provider}, {"Name": "reason", "Value": "x"}],
                                }
                            },
                        }
                    ]
                },
            },
            "Board": {
                "Type": "AWS::CloudWatch::Dashboard",
                "Properties": {
                    "DashboardBody": {
                        "Fn::ToJsonString": {
                            "widgets": [
                                {"type": "metric", "properties": {"metrics": [["Terima", "accepted", "provider", "akinon"], [".", "duplicate", ".", "."]]}}
                            ]
                        }
                    }
                },
            },
        }
    }
    found = problems(uses(broken), cat)
    for what, needle in (
        ("an unknown metric name", "'rejections' is not a metric"),
        ("a dimension set the metric is not published under", "accepted is not published under ['provider', 'reason']"),
        ("an unknown provider", "provider 'akinon'"),
        ("a shorthand dashboard line", "shorthand"),
    ):
        check(any(needle in p for p in found), f"self-test: the check fails on {what}", str(found))


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else TEMPLATE
    cat = catalogue()
    self_test(cat)
    _, template = load_template(path)
    found = uses(template)
    terima = [u for u in found if u.get("namespace") == cat["namespace"] or "problem" in u]
    in_dashboard = [u for u in terima if "/widget" in u["where"]]
    in_alarms = [u for u in terima if "/widget" not in u["where"]]
    check(len(in_alarms) >= 4 and len(in_dashboard) >= 4, f"the template uses Terima metrics: {len(in_alarms)} in alarms, {len(in_dashboard)} in the dashboard")
    wrong = problems(found, cat)
    for line in wrong:
        check(False, "a Terima metric of the template", line)
    check(not wrong, f"all {len(terima)} Terima metrics in alarms and dashboard are emitted by the code, under those dimensions")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
