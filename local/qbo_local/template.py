"""Read template.yaml so that the local stack and the tests follow exactly what it deploys.

CloudFormation's short-form tags (`!Ref`, `!Sub`, `!GetAtt`, `!If`, ...) are not YAML that a plain
loader accepts. Here each becomes a `Tag` marker holding the tag's name and its value as written;
nothing is resolved. Long-form intrinsics (`{"Fn::If": [...]}`) stay ordinary dictionaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import yaml

__all__ = [
    "HttpRoute",
    "Tag",
    "function_properties",
    "functions",
    "http_api_authorizers",
    "http_routes",
    "load_template",
]

FUNCTION_TYPE = "AWS::Serverless::Function"


@dataclass(frozen=True)
class Tag:
    """A CloudFormation short-form intrinsic, unresolved: `!Ref Table` is Tag("Ref", "Table")."""

    name: str
    value: Any


class _TemplateLoader(yaml.SafeLoader):
    """SafeLoader plus every `!Name` tag as a Tag (so no arbitrary Python objects, ever)."""


def _construct_tag(loader: _TemplateLoader, suffix: str, node: yaml.Node) -> Tag:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return Tag(suffix, value)


_TemplateLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: str | Path) -> dict[str, Any]:
    """The template as a dict, short-form tags kept as Tag markers."""
    text = Path(path).read_text(encoding="utf-8")
    template = yaml.load(text, Loader=_TemplateLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(template, dict) or "Resources" not in template:
        raise ValueError(f"{path} is not a CloudFormation template (no Resources section)")
    return template


def parameter_default(template: dict[str, Any], value: Any, fallback: int) -> int:
    """A positive whole number from the template: written out, or a `!Ref` to a parameter's default."""
    if isinstance(value, Tag) and value.name == "Ref":
        value = ((template.get("Parameters") or {}).get(value.value) or {}).get("Default")
    elif isinstance(value, dict) and set(value) == {"Ref"}:
        value = ((template.get("Parameters") or {}).get(value["Ref"]) or {}).get("Default")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else fallback


def queue_attributes(template: dict[str, Any], logical_id: str) -> dict[str, str]:
    """The SQS attributes template.yaml gives a queue that a local queue must share (how long a received
    message stays invisible, how long one is kept, after how many receives one is parked), as
    CreateQueue takes them; the dead-letter target is the caller's to add."""
    properties = ((template.get("Resources") or {}).get(logical_id) or {}).get("Properties") or {}
    attributes = {
        name: str(properties[name])
        for name in ("VisibilityTimeout", "MessageRetentionPeriod")
        if isinstance(properties.get(name), int)
    }
    receives = (properties.get("RedrivePolicy") or {}).get("maxReceiveCount")
    if isinstance(receives, int):
        attributes["maxReceiveCount"] = str(receives)
    return attributes


def _is_intrinsic(value: Any) -> bool:
    if isinstance(value, Tag):
        return True
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        return key == "Ref" or key.startswith("Fn::")
    return False


def _merge_globals(global_value: Any, local_value: Any) -> Any:
    """SAM's Globals rules: maps merge (the function wins per key), lists add up, anything else the
    function's own value replaces; an intrinsic function on either side is replaced, not merged."""
    if _is_intrinsic(global_value) or _is_intrinsic(local_value):
        return local_value
    if isinstance(global_value, dict) and isinstance(local_value, dict):
        merged = dict(global_value)
        for key, value in local_value.items():
            merged[key] = _merge_globals(global_value[key], value) if key in global_value else value
        return merged
    if isinstance(global_value, list) and isinstance(local_value, list):
        return [*global_value, *local_value]
    return local_value


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Logical ID -> resource, for every AWS::Serverless::Function."""
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if isinstance(resource, dict) and resource.get("Type") == FUNCTION_TYPE
    }


def function_properties(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    """A function's properties with Globals.Function applied, as SAM does on deploy."""
    resource = functions(template).get(logical_id)
    if resource is None:
        raise KeyError(f"{logical_id} is not an {FUNCTION_TYPE} in the template")
    global_properties = (template.get("Globals") or {}).get("Function") or {}
    return _merge_globals(global_properties, resource.get("Properties") or {})


class HttpRoute(NamedTuple):
    method: str  # upper case, e.g. "GET"; "ANY" when the template says any
    path: str  # as in the template, e.g. "/connections/{connection_id}/authorize"
    function: str  # logical ID of the function
    code_uri: str  # e.g. "functions/authorize/", relative to the template's folder
    handler: str  # e.g. "app.handler"
    authorizer: str | None = None  # the route's Auth.Authorizer: a name under HttpApi Auth.Authorizers, or AWS_IAM


def http_routes(template: dict[str, Any]) -> list[HttpRoute]:
    """Every route of an HttpApi event in the template, sorted by path then method."""
    routes = []
    for logical_id in functions(template):
        properties = function_properties(template, logical_id)
        for event in (properties.get("Events") or {}).values():
            if event.get("Type") != "HttpApi":
                continue
            event_properties = event.get("Properties") or {}
            method = str(event_properties.get("Method", "ANY")).upper()
            if method == "X-AMAZON-APIGATEWAY-ANY-METHOD":
                method = "ANY"
            routes.append(
                HttpRoute(
                    method=method,
                    path=event_properties.get("Path", "$default"),
                    function=logical_id,
                    code_uri=properties["CodeUri"],
                    handler=properties["Handler"],
                    authorizer=(event_properties.get("Auth") or {}).get("Authorizer"),
                )
            )
    return sorted(routes, key=lambda route: (route.path, route.method))


def http_api_authorizers(template: dict[str, Any], api: str = "HttpApi") -> dict[str, dict[str, Any]]:
    """The HTTP API's named authorizers (Auth.Authorizers), plus AWS_IAM when EnableIamAuthorizer is on."""
    auth = (((template["Resources"].get(api) or {}).get("Properties") or {}).get("Auth")) or {}
    authorizers = dict(auth.get("Authorizers") or {})
    if auth.get("EnableIamAuthorizer") is True:
        authorizers["AWS_IAM"] = {}
    return authorizers
