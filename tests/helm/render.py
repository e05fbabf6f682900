#!/usr/bin/env python3
"""Lints and renders a Helm chart offline with Helm's own Go SDK (PyPI's helm-python-sdk), for
tests/deploy_helm.rs: no helm binary, no cluster.

    render.py CHART [VALUES.yaml] [--json VALUES_JSON] [--kube-version v1.27.0]

Prints one JSON object: {"lint": {"messages": [...], "errors": [...]}, "manifests": {path: text}}
(manifests is null and "render_error" says why when rendering fails, e.g. a schema violation).
Exit 2 when helm-python-sdk is not installed.
"""
import argparse
import json
import sys

try:
    from helm_python import chart as helm_chart
    from helm_python import errors as helm_errors
except ImportError:
    print("helm-python-sdk is not installed: pip install helm-python-sdk", file=sys.stderr)
    sys.exit(2)

import yaml


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("chart")
    p.add_argument("values", nargs="?")
    p.add_argument("--json", dest="json_values")
    p.add_argument("--kube-version")
    a = p.parse_args()
    values = {}
    if a.values:
        with open(a.values, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
    if a.json_values:
        values = merge(values, json.loads(a.json_values))
    lint = helm_chart.lint(a.chart, values, strict=True, kube_version=a.kube_version)
    out = {"lint": lint, "manifests": None, "render_error": None}
    try:
        out["manifests"] = helm_chart.Chart.load(a.chart).render(
            values, name="rel", namespace="ns", is_install=True
        )
    except helm_errors.HelmError as e:
        out["render_error"] = str(e)
    json.dump(out, sys.stdout)


def merge(base, over):
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base.get(k), v)
        return out
    return over


if __name__ == "__main__":
    main()
