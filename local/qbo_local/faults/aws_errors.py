"""The ClientError botocore raises for an AWS error answer, built by the client's own parser.

A fault wrapper that refuses a call in front of moto raises what boto3 would raise for AWS's answer, so
`client.exceptions.X` and `error.response["Error"]["Code"]` match as they do against AWS.
"""

from __future__ import annotations

import json
import uuid
from email.utils import formatdate
from typing import Any

from botocore.exceptions import ClientError
from botocore.parsers import create_parser


def client_error(client: Any, operation_name: str, code: str, message: str, status: int) -> ClientError:
    """What `client` raises when AWS answers `operation_name` with this JSON-protocol error."""
    service = client.meta.service_model
    body = json.dumps({"__type": code, "Message": message}).encode()
    answer = {
        "status_code": status,
        "headers": {
            "x-amzn-requestid": str(uuid.uuid4()),
            "content-type": f"application/x-amz-json-{service.metadata.get('jsonVersion', '1.1')}",
            "content-length": str(len(body)),
            "date": formatdate(usegmt=True),
        },
        "body": body,
    }
    operation = service.operation_model(operation_name)
    parser = create_parser(service.protocol)
    parsed = parser.parse(answer, operation.output_shape)
    modeled = service.shape_for_error_code(code)
    if modeled is not None:  # as botocore's endpoint does: the error's own fields, e.g. Message
        parsed.update(parser.parse(answer, modeled))
    parsed["ResponseMetadata"]["RetryAttempts"] = 0
    return client.exceptions.from_code(code)(parsed, operation.name)
