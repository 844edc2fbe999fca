"""Reads Kubernetes manifests offline, for tests/tests/kubernetes.rs. No cluster, no network.

usage: k8s_manifests.py json FILE
  The YAML documents of FILE (- for standard input) as one JSON array, empty documents
  left out.
usage: k8s_manifests.py validate VERSION [--crd CRD]... FILE
  Validates every object against the API schemas of Kubernetes VERSION (e.g. 1.33) that
  kubernetes-validate ships, strictly: an unknown field is an error, as the API server's
  strict field validation (kubectl's default) makes it. An object of a custom resource is
  validated against the openAPIV3Schema of the CustomResourceDefinition (a YAML file
  given with --crd) that serves its group, version and kind, with unknown fields refused
  likewise. Prints one line per object, "ok ..." or "invalid ...", and exits 1 when any
  object is invalid.
"""

import argparse
import json
import sys

import jsonschema
import kubernetes_validate
import yaml


def documents(path):
    stream = sys.stdin if path == "-" else open(path)
    with stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def describe(obj):
    name = (obj.get("metadata") or {}).get("name", "?")
    return f"{obj.get('apiVersion', '?')} {obj.get('kind', '?')} {name}"


def closed(schema):
    """The schema with unknown fields refused wherever it lists the known ones and does
    not keep unknown ones (x-kubernetes-preserve-unknown-fields)."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: closed(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def custom_schemas(paths):
    """(apiVersion, kind) -> (validator, what it is), from each CRD file's served versions."""
    schemas = {}
    for path in paths:
        for crd in documents(path):
            if crd.get("kind") != "CustomResourceDefinition":
                sys.exit(f"{path}: not a CustomResourceDefinition")
            spec = crd["spec"]
            version_note = (crd["metadata"].get("annotations") or {}).get(
                "operator.prometheus.io/version"
            )
            for version in spec["versions"]:
                if not version.get("served", True):
                    continue
                schema = closed(version["schema"]["openAPIV3Schema"])
                what = f"CRD {crd['metadata']['name']}" + (
                    f" {version_note}" if version_note else ""
                )
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                schemas[key] = (jsonschema.Draft4Validator(schema), what)
    return schemas


def where(error):
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path.lstrip(".") or "(the object)"


def validate(objects, version, crds):
    failures = 0
    for obj in objects:
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key in crds:
            validator, what = crds[key]
            errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
            if errors:
                failures += 1
                for error in errors:
                    print(f"invalid {describe(obj)} ({what}): {where(error)}: {error.message}")
            else:
                print(f"ok {describe(obj)} ({what})")
            continue
        try:
            used = kubernetes_validate.validate(obj, version, strict=True)
            print(f"ok {describe(obj)} (Kubernetes {used})")
        except kubernetes_validate.ValidationError as error:
            failures += 1
            print(f"invalid {describe(obj)} (Kubernetes {error.version}): {where(error)}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            failures += 1
            print(f"invalid {describe(obj)}: {error.message}")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    as_json = verbs.add_parser("json")
    as_json.add_argument("file")
    check = verbs.add_parser("validate")
    check.add_argument("version")
    check.add_argument("--crd", action="append", default=[])
    check.add_argument("file")
    args = parser.parse_args()

    objects = documents(args.file)
    if args.verb == "json":
        json.dump(objects, sys.stdout)
        return 0
    if not objects:
        print("invalid: no objects to validate")
        return 1
    return 1 if validate(objects, args.version, custom_schemas(args.crd)) else 0


if __name__ == "__main__":
    sys.exit(main())
