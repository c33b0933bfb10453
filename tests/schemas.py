"""Offline schema validation of rendered objects.

Kubernetes kinds: `kubernetes-validate` (the OpenAPI schemas of each Kubernetes release, strict:
unknown fields are errors). KServe kinds: a JSON schema built from KServe's Python SDK, whose
model classes are generated from the same OpenAPI spec as KServe's CRDs (`openapi_types` and
`attribute_map` of each class), with the Kubernetes types it embeds taken from the Kubernetes
schemas above. Unknown fields are errors there too. Katib kinds: the JSON schema of the
pydantic models of `kubeflow-katib-api` (generated from Katib's OpenAPI spec), made strict the
same way. Kubeflow Trainer kinds: the pydantic models of `kubeflow-trainer-api` (generated from
the Trainer's OpenAPI spec, one release per Trainer release): an object must load into them
(types are strict there) and come back out unchanged (their `from_dict` drops what they do not
know, so a field they lack is an error here). Google Managed Prometheus's PodMonitoring,
Gateway API's Gateway and HTTPRoute, and GKE's HealthCheckPolicy and GCPBackendPolicy: the
fields of their CRDs the kit sets, written out below with the CRDs' validation rules (no
package carries them).
"""

from __future__ import annotations

import ast
import json
import re
from functools import cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate

KSERVE_GROUP = "serving.kserve.io"
KATIB_GROUP = "kubeflow.org"
TRAINER_GROUP = "trainer.kubeflow.org"
MONITORING_GROUP = "monitoring.googleapis.com"
_STRICT = {"type": "object", "additionalProperties": False}


def _namespaced(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The schema of a namespaced object of `kind` whose spec is `spec`: nothing else at its top
    level, a name and a namespace."""
    return {
        **_STRICT,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": {"type": "object", "required": ["name", "namespace"]},
            "spec": spec,
        },
    }


# PodMonitoring v1, the parts the kit sets, from GoogleCloudPlatform/prometheus-engine
# charts/operator/crds/monitoring.googleapis.com_podmonitorings.yaml (2ffde4e, 2026-07-02):
# spec requires selector and endpoints; an endpoint requires port (name or number) and
# interval (a Prometheus duration); these are an endpoint's fields
_ENDPOINT_FIELDS = ("authorization", "basicAuth", "interval", "metricRelabeling", "oauth2",
                    "params", "path", "port", "proxyUrl", "scheme", "timeout", "tls")  # fmt: skip
POD_MONITORING = _namespaced(
    f"{MONITORING_GROUP}/v1",
    "PodMonitoring",
    {
        **_STRICT,
        "required": ["selector", "endpoints"],
        "properties": {
            "selector": {
                **_STRICT,
                "properties": {
                    "matchLabels": {"type": "object"},
                    "matchExpressions": {"type": "array"},
                },
            },
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "items": {
                    **_STRICT,
                    "required": ["port", "interval"],
                    "properties": {
                        **{field: {} for field in _ENDPOINT_FIELDS},
                        "port": {"type": ["integer", "string"], "minLength": 1},
                        "interval": {"type": "string", "pattern": r"^[0-9]+(ms|s|m|h)$"},
                        "path": {"type": "string", "pattern": "^/"},
                    },
                },
            },
        },
    },
)
# Gateway API v1, the parts the kit sets, from kubernetes-sigs/gateway-api v1.6.1 (8bb74df)
# config/crd/standard/gateway.networking.k8s.io_{gateways,httproutes}.yaml (the same fields in
# v1.1.0 to v1.5.0, the releases GKE installs): a Gateway requires gatewayClassName and 1-64
# listeners, each with name, port (1-65535) and protocol; allowedRoutes.namespaces.from is All,
# Selector or Same. An HTTPRoute's parentRefs need a name; a path match's type is Exact,
# PathPrefix or RegularExpression, its value starts with "/"; a backendRef needs a name, a port
# when it names a Service ("Must have port for Service reference"), a weight of 0-1,000,000
GATEWAY_GROUP = "gateway.networking.k8s.io"
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_NAME = {"type": "string", "minLength": 1, "maxLength": 253}
GATEWAY = _namespaced(
    f"{GATEWAY_GROUP}/v1",
    "Gateway",
    {
        **_STRICT,
        "required": ["gatewayClassName", "listeners"],
        "properties": {
            "gatewayClassName": _NAME,
            "listeners": {
                "type": "array",
                "minItems": 1,
                "maxItems": 64,
                "items": {
                    **_STRICT,
                    "required": ["name", "port", "protocol"],
                    "properties": {
                        "name": {
                            "type": "string",
                            "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                        },
                        "port": _PORT,
                        "protocol": {"type": "string"},
                        "hostname": {"type": "string"},
                        "allowedRoutes": {
                            **_STRICT,
                            "properties": {
                                "namespaces": {
                                    **_STRICT,
                                    "properties": {
                                        "from": {"enum": ["All", "Selector", "Same"]},
                                        "selector": {"type": "object"},
                                    },
                                },
                                "kinds": {"type": "array"},
                            },
                        },
                    },
                },
            },
        },
    },
)
_BACKEND_REF = {
    **_STRICT,
    "required": ["name"],
    "properties": {
        "group": {"type": "string"},
        "kind": {"type": "string"},
        "name": _NAME,
        "namespace": {"type": "string"},
        "port": _PORT,
        "weight": {"type": "integer", "minimum": 0, "maximum": 1_000_000},
    },
    # the CEL rule: a Service (group "" and kind Service, which are the defaults) needs a port
    "if": {
        "properties": {"group": {"const": ""}, "kind": {"const": "Service"}},
    },
    "then": {"required": ["port"]},
}
HTTP_ROUTE = _namespaced(
    f"{GATEWAY_GROUP}/v1",
    "HTTPRoute",
    {
        **_STRICT,
        "properties": {
            "hostnames": {"type": "array"},
            "parentRefs": {
                "type": "array",
                "maxItems": 32,
                "items": {
                    **_STRICT,
                    "required": ["name"],
                    "properties": {
                        field: {"type": "string"}
                        for field in ("group", "kind", "name", "namespace", "sectionName")
                    }
                    | {"port": _PORT},
                },
            },
            "rules": {
                "type": "array",
                "minItems": 1,
                "maxItems": 16,
                "items": {
                    **_STRICT,
                    "properties": {
                        "matches": {
                            "type": "array",
                            "items": {
                                **_STRICT,
                                "properties": {
                                    "path": {
                                        **_STRICT,
                                        "properties": {
                                            "type": {
                                                "enum": [
                                                    "Exact",
                                                    "PathPrefix",
                                                    "RegularExpression",
                                                ]
                                            },
                                            "value": {"type": "string", "maxLength": 1024},
                                        },
                                        "if": {
                                            "properties": {
                                                "type": {"enum": ["Exact", "PathPrefix"]}
                                            }
                                        },
                                        "then": {
                                            "properties": {
                                                "value": {"type": "string", "pattern": "^/"}
                                            }
                                        },
                                    },
                                    "headers": {"type": "array"},
                                    "queryParams": {"type": "array"},
                                    "method": {"type": "string"},
                                },
                            },
                        },
                        "backendRefs": {
                            "type": "array",
                            "maxItems": 16,
                            "items": _BACKEND_REF,
                        },
                        "filters": {"type": "array"},
                        "name": {"type": "string"},
                        "timeouts": {"type": "object"},
                    },
                },
            },
        },
    },
)
# GKE's HealthCheckPolicy, from GoogleCloudPlatform/gke-gateway-api (fc40d60) apis/networking/
# v1/healthcheck_types.go and config/crd/networking.gke.io_healthcheckpolicies.yaml: targetRef
# requires group, kind and name; config holds its type (TCP, HTTP, HTTPS, HTTP2, GRPC) and that
# type's block; requestPath starts with "/"; since 983ac3d a port (or portName) only with
# portSpecification USE_FIXED_PORT (USE_NAMED_PORT: portName)
GKE_NETWORKING_GROUP = "networking.gke.io"
_HTTP_CHECK = {
    **_STRICT,
    "properties": {
        "requestPath": {"type": "string", "pattern": "^/", "maxLength": 2048},
        "port": _PORT,
        "portName": {"type": "string"},
        "portSpecification": {"enum": ["USE_FIXED_PORT", "USE_NAMED_PORT", "USE_SERVING_PORT"]},
        "host": {"type": "string"},
        "proxyHeader": {"enum": ["NONE", "PROXY_V1"]},
        "response": {"type": "string"},
    },
    "allOf": [
        {
            "if": {"required": ["port"]},
            "then": {
                "required": ["portSpecification"],
                "properties": {"portSpecification": {"const": "USE_FIXED_PORT"}},
            },
        },
        {
            "if": {"required": ["portName"]},
            "then": {
                "required": ["portSpecification"],
                "properties": {"portSpecification": {"const": "USE_NAMED_PORT"}},
            },
        },
    ],
}
# a GKE policy's target (both kinds): group, kind and name required
_TARGET_REF = {
    **_STRICT,
    "required": ["group", "kind", "name"],
    "properties": {
        "group": {"type": "string"},
        "kind": {"type": "string"},
        "name": _NAME,
        "namespace": {"type": "string"},
    },
}
HEALTH_CHECK_POLICY = _namespaced(
    f"{GKE_NETWORKING_GROUP}/v1",
    "HealthCheckPolicy",
    {
        **_STRICT,
        "required": ["targetRef"],
        "properties": {
            "targetRef": _TARGET_REF,
            "default": {
                **_STRICT,
                "properties": {
                    "checkIntervalSec": {"type": "integer", "minimum": 1, "maximum": 300},
                    "timeoutSec": {"type": "integer", "minimum": 1, "maximum": 300},
                    "healthyThreshold": {"type": "integer", "minimum": 1, "maximum": 10},
                    "unhealthyThreshold": {"type": "integer", "minimum": 1, "maximum": 10},
                    "logConfig": {"type": "object"},
                    "config": {
                        **_STRICT,
                        "required": ["type"],
                        "minProperties": 2,
                        "maxProperties": 2,
                        "properties": {
                            "type": {"enum": ["TCP", "HTTP", "HTTPS", "HTTP2", "GRPC"]},
                            "httpHealthCheck": _HTTP_CHECK,
                            "httpsHealthCheck": _HTTP_CHECK,
                            "http2HealthCheck": _HTTP_CHECK,
                            "tcpHealthCheck": {"type": "object"},
                            "grpcHealthCheck": {"type": "object"},
                        },
                        "if": {"properties": {"type": {"const": "HTTP"}}},
                        "then": {"required": ["httpHealthCheck"]},
                    },
                },
            },
        },
    },
)
# GKE's GCPBackendPolicy, from gke-gateway-api (fc40d60) apis/networking/v1/
# gcpbackendpolicy_types.go and config/crd/networking.gke.io_gcpbackendpolicies.yaml: targetRef
# requires group, kind and name; timeoutSec is at least 1; drainingTimeoutSec 0-3600
GCP_BACKEND_POLICY = _namespaced(
    f"{GKE_NETWORKING_GROUP}/v1",
    "GCPBackendPolicy",
    {
        **_STRICT,
        "required": ["targetRef"],
        "properties": {
            "targetRef": _TARGET_REF,
            "default": {
                **_STRICT,
                "properties": {
                    "timeoutSec": {"type": "integer", "minimum": 1, "maximum": 2147483647},
                    "connectionDraining": {
                        **_STRICT,
                        "properties": {
                            "drainingTimeoutSec": {
                                "type": "integer",
                                "minimum": 0,
                                "maximum": 3600,
                            }
                        },
                    },
                    "logging": {"type": "object"},
                    "sessionAffinity": {"type": "object"},
                    "securityPolicy": {"type": "string"},
                    "iap": {"type": "object"},
                    "maxRatePerEndpoint": {"type": "integer"},
                },
            },
        },
    },
)
_HANDWRITTEN = {
    (MONITORING_GROUP, "PodMonitoring"): POD_MONITORING,
    (GATEWAY_GROUP, "Gateway"): GATEWAY,
    (GATEWAY_GROUP, "HTTPRoute"): HTTP_ROUTE,
    (GKE_NETWORKING_GROUP, "HealthCheckPolicy"): HEALTH_CHECK_POLICY,
    (GKE_NETWORKING_GROUP, "GCPBackendPolicy"): GCP_BACKEND_POLICY,
}
_PRIMITIVES = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "bool": {"type": "boolean"},
    "float": {"type": "number"},
    "datetime": {"type": "string"},
    "object": {},
}


def validate(obj: dict[str, Any], k8s_version: str) -> None:
    """Raise a ValueError naming the object and the field when `obj` does not validate."""
    name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    group, _, version = obj.get("apiVersion", "").rpartition("/")
    if group == TRAINER_GROUP:
        return _validate_trainer(obj, name, version)
    handwritten = {g for g, _ in _HANDWRITTEN}
    if group in (KSERVE_GROUP, KATIB_GROUP, *handwritten):
        if group in handwritten:
            if (group, obj.get("kind")) not in _HANDWRITTEN:
                raise ValueError(f"{name}: no schema for kind {obj.get('kind')} of {group}")
            schema = _HANDWRITTEN[group, obj["kind"]]
        elif group == KSERVE_GROUP:
            schema = kserve_schema(obj["kind"], version, k8s_version)
        else:
            schema = katib_schema(obj["kind"], version)
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(obj), key=str)
        if errors:
            e = errors[0]
            raise ValueError(f"{name}: {'.'.join(map(str, e.absolute_path))}: {e.message}")
        return
    try:
        kubernetes_validate.validate(obj, k8s_version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(map(str, e.path))
        raise ValueError(f"{name}: {path}: {e.message}") from None


@cache
def _k8s_definitions(k8s_version: str) -> dict[str, Any]:
    folder = resources.files("kubernetes_validate") / "kubernetes-json-schema"

    def version(name: str) -> tuple[int, ...]:  # "v1.34.0-local-strict" -> (1, 34, 0)
        return tuple(int(x) for x in name[1:].split("-")[0].split("."))

    wanted = tuple(int(x) for x in k8s_version.split("."))
    strict = (p.name for p in folder.iterdir() if p.name.endswith("-local-strict"))
    chosen = sorted((v for v in strict if version(v)[:2] <= wanted), key=version)
    return json.loads((folder / chosen[-1] / "_definitions.json").read_text())["$defs"]


@cache
def _kserve_types() -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """{class name: (openapi_types, attribute_map)} of KServe's SDK models, read without
    importing the SDK (its server dependencies are not needed to check manifests)."""
    models = Path(str(metadata.distribution("kserve").locate_file("kserve/models")))
    found = {}
    for path in models.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                attrs = {
                    t.id: ast.literal_eval(a.value)
                    for a in node.body
                    if isinstance(a, ast.Assign)
                    for t in a.targets
                    if isinstance(t, ast.Name) and t.id in ("openapi_types", "attribute_map")
                }
                if len(attrs) == 2:
                    found[node.name] = (attrs["openapi_types"], attrs["attribute_map"])
    return found


def kserve_schema(kind: str, version: str, k8s_version: str) -> dict[str, Any]:
    """A JSON schema for a KServe kind (e.g. InferenceService, v1beta1)."""
    definitions: dict[str, Any] = {}
    k8s = _k8s_definitions(k8s_version)

    def ref(type_name: str) -> dict[str, Any]:
        if type_name in _PRIMITIVES:
            return _PRIMITIVES[type_name]
        if m := re.fullmatch(r"list\[(.+)\]", type_name):
            return {"type": "array", "items": ref(m[1])}
        if m := re.fullmatch(r"dict\(str, (.+)\)", type_name):
            return {"type": "object", "additionalProperties": ref(m[1])}
        if type_name in _kserve_types():
            if type_name not in definitions:
                definitions[type_name] = {}  # placeholder against recursion
                types, names = _kserve_types()[type_name]
                definitions[type_name] = {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {names[a]: ref(t) for a, t in types.items()},
                }
            return {"$ref": f"#/$defs/{type_name}"}
        m = re.search(r"(V\d+(?:alpha\d+|beta\d+)?)([A-Z]\w*)$", type_name)
        suffix = f".{m[1].lower()}.{m[2]}" if m else None
        k8s_name = next((k for k in k8s if suffix and k.endswith(suffix)), None)
        if k8s_name is None:  # a KServe type its SDK names but does not define (WorkerSpec)
            return {"type": "object"}
        return {"$ref": f"#/$defs/{k8s_name}"}

    root = ref(f"{version.capitalize()}{kind}")
    # Kubernetes definitions refer to each other: include them all under their own names.
    for name, schema in k8s.items():
        definitions.setdefault(name, schema)
    return {**root, "$defs": definitions}


@cache
def katib_schema(kind: str, version: str) -> dict[str, Any]:
    """A JSON schema for a Katib kind (e.g. Experiment, v1beta1): its pydantic model's, with
    unknown fields made errors (the models ignore them)."""
    from kubeflow_katib_api import models

    schema = getattr(models, f"{version.capitalize()}{kind}").model_json_schema(by_alias=True)

    def strict(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node:
                node.setdefault("additionalProperties", False)
            for value in node.values():
                strict(value)
        elif isinstance(node, list):
            for value in node:
                strict(value)

    strict(schema)
    return schema


def _validate_trainer(obj: dict[str, Any], name: str, version: str) -> None:
    """`obj` loads into the Trainer's model of its kind and comes back out as it went in."""
    from kubeflow_trainer_api import models
    from pydantic import ValidationError

    model = getattr(models, f"Trainer{version.capitalize()}{obj['kind']}")
    try:
        again = model.from_dict(obj).to_dict()
    except ValidationError as e:
        first = e.errors()[0]
        raise ValueError(f"{name}: {e.title}.{'.'.join(map(str, first['loc']))}: "
                         f"{first['msg']}") from None  # fmt: skip
    if (path := _difference(obj, again)) is not None:
        raise ValueError(f"{name}: {path}: not in the Trainer's API (dropped or changed)")


def _difference(given: Any, kept: Any, path: str = "") -> str | None:
    """The first path where `kept` differs from `given`, or None."""
    if isinstance(given, dict) and isinstance(kept, dict):
        for key in given:
            if key not in kept:
                return f"{path}.{key}".lstrip(".")
            if (found := _difference(given[key], kept[key], f"{path}.{key}")) is not None:
                return found
        return None
    if isinstance(given, list) and isinstance(kept, list) and len(given) == len(kept):
        for i, (a, b) in enumerate(zip(given, kept, strict=True)):
            if (found := _difference(a, b, f"{path}.{i}")) is not None:
                return found
        return None
    return None if given == kept else path.lstrip(".")
