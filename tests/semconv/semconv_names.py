#!/usr/bin/env python3
"""Prints every attribute and metric name the opentelemetry-semantic-conventions
package defines, one per line:

    attribute http.request.method stable
    attribute rpc.system deprecated
    attribute rpc.request.metadata incubating template
    metric rpc.server.call.duration incubating

`stable` names come from opentelemetry.semconv.{attributes,metrics},
`incubating` from opentelemetry.semconv._incubating.*; a name whose
definition's docstring starts with "Deprecated" is `deprecated` (except the
incubating copies of stable names, which are deprecated only as Python
constants: "Deprecated in favor of stable ..."). `template` names are
prefixes (`<name>.<key>`). The first line is `version <package version>`.

Run with the interpreter tests/semconv/ensure-venv.sh prints.
"""

import ast
import os
import sys
from importlib import metadata

import opentelemetry.semconv as semconv

ROOT = os.path.dirname(semconv.__file__)
# (folder, kind, stable)
FOLDERS = [
    ("attributes", "attribute", True),
    ("metrics", "metric", True),
    (os.path.join("_incubating", "attributes"), "attribute", False),
    (os.path.join("_incubating", "metrics"), "metric", False),
]


def definitions(path):
    """(name, docstring) of every `CONST: Final = "name"` in a module."""
    with open(path, encoding="utf-8") as source:
        body = ast.parse(source.read()).body
    for statement, following in zip(body, body[1:] + [None]):
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        value = statement.value
        if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
            continue
        doc = ""
        if (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            doc = following.value.value.strip()
        yield statement.target.id, value.value, doc


def main():
    names = {}  # (kind, name) -> (status, template)
    for folder, kind, stable in FOLDERS:
        directory = os.path.join(ROOT, folder)
        for file in sorted(os.listdir(directory)):
            if not file.endswith(".py") or file.startswith("__"):
                continue
            for constant, name, doc in definitions(os.path.join(directory, file)):
                template = constant.endswith("_TEMPLATE")
                if doc.startswith("Deprecated in favor of stable"):
                    continue  # the stable module defines it
                if doc.startswith("Deprecated"):
                    status = "deprecated"
                else:
                    status = "stable" if stable else "incubating"
                key = (kind, name)
                # A stable definition wins over anything incubating.
                if key in names and names[key][0] == "stable":
                    continue
                names[key] = (status, template)
    print("version", metadata.version("opentelemetry-semantic-conventions"))
    for (kind, name), (status, template) in sorted(names.items()):
        print(kind, name, status, "template" if template else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
