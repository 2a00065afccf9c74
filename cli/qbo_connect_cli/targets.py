"""Which deployment the CLI administers: a deployed stack, or the local stack started by `make dev`.

Either way the CLI runs the shared package against the target's own table and secrets, with the
configuration its functions have: for a deployed stack, the test function's environment variables;
for the local stack, the environment the local stack gives its functions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOTokenLoadError,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
)
from qbo_connect.domain.authorization import CALLBACK_PATH, callback_url
from qbo_connect.settings import Settings

STACK_VARIABLE = "QBO_CONNECT_STACK"
LOCAL_STATE_VARIABLE = "QBO_CONNECT_LOCAL_STATE"
DEFAULT_LOCAL_STATE = "~/.cache/qbo-connect/local-stack.json"
# The local stack's embedded AWS accepts any credentials; these keep real ones out of its requests.
LOCAL_CREDENTIALS = "testing"
LOCAL_DEFAULT_REGION = "us-east-1"

NO_STACK = "No stack: pass --stack NAME for a deployed stack, or start the local stack with `make dev`"

_ACCESS_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError"}
_CREDENTIALS_REFUSED = {
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
}


class TargetError(Exception):
    """The CLI cannot reach or read its target; the message says what to do."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Target:
    description: str
    settings: Settings
    session: boto3.Session
    api_base_url: str  # where authorize links point: the public base URL when the stack has one
    callback_url: str
    event_log_group: str = ""  # the CloudWatch Logs group every event goes to (`events tail`)


def resolve(*, stack: str | None, profile: str | None, region: str | None, local: bool) -> Target:
    if stack and not local:
        return deployed_stack(stack, profile=profile, region=region)
    running = local_stack()
    if running is None:
        raise TargetError(NO_STACK, exit_code=2)
    return local_target(running)


# --- a deployed stack ----------------------------------------------------------------------------


def deployed_stack(name: str, *, profile: str | None, region: str | None) -> Target:
    session = boto3.Session(profile_name=profile, region_name=region)
    if not session.region_name:
        raise NoRegionError()
    outputs = stack_outputs(session.client("cloudformation"), name)
    function_name = outputs.get("TestFunctionName")
    if not function_name:
        raise TargetError(
            f"Stack {name!r} has no TestFunctionName output: check that it is a qbo-connect stack "
            "and that its deployment finished (`sam deploy`)"
        )
    environment = function_environment(session.client("lambda"), function_name)
    base_url = api_base_url(outputs, stack_name=name)
    return Target(
        description=f"stack {name} in {session.region_name}",
        settings=Settings.from_environment(environment),
        session=session,
        api_base_url=base_url,
        callback_url=outputs.get("CallbackUrl") or callback_url(base_url),
        event_log_group=outputs.get("EventLogGroupName", ""),
    )


def stack_outputs(cloudformation, name: str) -> dict[str, str]:
    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except ClientError as error:
        code, message = _code(error), error.response.get("Error", {}).get("Message", "")
        region = cloudformation.meta.region_name
        if code == "ValidationError" and "does not exist" in message:
            raise TargetError(
                f"Stack {name!r} not found in {region}: check --stack, --region and --profile "
                "(`aws cloudformation list-stacks` shows the stacks there)"
            ) from None
        if code in _ACCESS_DENIED:
            raise TargetError(
                f"Your AWS identity may not read stack {name!r} (cloudformation:DescribeStacks): "
                "use a profile that has the permission"
            ) from None
        raise
    if not stacks:
        raise TargetError(f"Stack {name!r} not found: check --stack, --region and --profile")
    return {o["OutputKey"]: o.get("OutputValue", "") for o in stacks[0].get("Outputs", [])}


def function_environment(lambda_client, function_name: str) -> dict[str, str]:
    try:
        configuration = lambda_client.get_function_configuration(FunctionName=function_name)
    except ClientError as error:
        if _code(error) in _ACCESS_DENIED:
            raise TargetError(
                f"Your AWS identity may not read the configuration of {function_name} "
                "(lambda:GetFunctionConfiguration), which the CLI uses so that it runs with the stack's own "
                "settings: use a profile that has the permission"
            ) from None
        raise
    return dict(configuration.get("Environment", {}).get("Variables", {}))


def api_base_url(outputs: Mapping[str, str], *, stack_name: str = "") -> str:
    """The base of authorize links: CallbackUrl follows the stack's PublicBaseUrl, ApiUrl does not."""
    callback = (outputs.get("CallbackUrl") or "").rstrip("/")
    if callback.endswith(CALLBACK_PATH):
        return callback[: -len(CALLBACK_PATH)]
    api_url = (outputs.get("ApiUrl") or "").rstrip("/")
    if not api_url:
        raise TargetError(f"Stack {stack_name!r} has no ApiUrl or CallbackUrl output: redeploy it with `sam deploy`")
    return api_url


# --- the local stack -----------------------------------------------------------------------------


def local_stack() -> dict[str, Any] | None:
    """The running local stack's discovery record, or None."""
    try:
        from qbo_local.discovery import find_running_stack
    except ImportError:
        return read_local_state()
    return find_running_stack()


def read_local_state(path: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """Fallback for checkouts without qbo_local.discovery: the same file, and a live process behind it."""
    location = Path(path or os.environ.get(LOCAL_STATE_VARIABLE) or DEFAULT_LOCAL_STATE).expanduser()
    try:
        state = json.loads(location.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not _process_is_running(state.get("pid")):
        return None
    return state


def _process_is_running(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def local_target(state: Mapping[str, Any]) -> Target:
    environment = {str(k): str(v) for k, v in (state.get("environment") or {}).items()}
    api_url = str(state.get("api_url") or "").rstrip("/")
    if not api_url:
        raise TargetError("The local stack's discovery file has no api_url: restart it with `make dev`")
    region = state.get("region") or environment.get("AWS_REGION") or LOCAL_DEFAULT_REGION
    use_local_aws(
        endpoint_url=state.get("aws_endpoint_url") or environment.get("AWS_ENDPOINT_URL"),
        region=region,
        lambda_endpoint_url=environment.get("AWS_ENDPOINT_URL_LAMBDA"),
    )
    session = boto3.Session(
        aws_access_key_id=LOCAL_CREDENTIALS, aws_secret_access_key=LOCAL_CREDENTIALS, region_name=region
    )
    return Target(
        description=f"local stack at {api_url}",
        settings=Settings.from_environment(environment),
        session=session,
        api_base_url=api_url,
        callback_url=state.get("callback_url") or callback_url(api_url),
        event_log_group=str(state.get("event_log_group") or ""),
    )


def use_local_aws(*, endpoint_url: str | None, region: str, lambda_endpoint_url: str | None = None) -> None:
    """Point every boto3 client in this process at the local stack's AWS, never at a real account.

    In the process environment rather than only on our session, because boto3 reads AWS_ENDPOINT_URL
    for any client, including ones created by libraries; a profile from the shell must not apply.
    Lambda's Invoke is the stack's own server (AWS_ENDPOINT_URL_LAMBDA), not moto; an endpoint the
    shell set for Lambda must not apply either.
    """
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_LAMBDA"):
        os.environ.pop(name, None)
    if lambda_endpoint_url:
        os.environ["AWS_ENDPOINT_URL_LAMBDA"] = lambda_endpoint_url
    os.environ["AWS_ACCESS_KEY_ID"] = LOCAL_CREDENTIALS
    os.environ["AWS_SECRET_ACCESS_KEY"] = LOCAL_CREDENTIALS
    os.environ["AWS_REGION"] = region
    os.environ["AWS_DEFAULT_REGION"] = region
    if endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url


# --- AWS errors, said so that people know what to do ----------------------------------------------


def describe_aws_error(error: BotoCoreError | ClientError) -> str:
    if isinstance(error, ProfileNotFound):
        return f"AWS profile {error.kwargs.get('profile')!r} not found: check ~/.aws/config, or pass another --profile"
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return "No AWS credentials: pass --profile, set AWS_PROFILE, or run `aws configure` or `aws sso login`"
    if isinstance(error, SSOTokenLoadError | UnauthorizedSSOTokenError | TokenRetrievalError):
        return "Your AWS SSO session has expired or is missing: run `aws sso login` (with the same --profile)"
    if isinstance(error, CredentialRetrievalError):
        return f"Could not get AWS credentials ({error}): check the profile's credential settings"
    if isinstance(error, NoRegionError):
        return "No AWS region: pass --region, set AWS_REGION, or set a region in the profile"
    if isinstance(error, EndpointConnectionError):
        return (
            f"Could not reach {error.kwargs.get('endpoint_url')}: if that is the local stack, start it with "
            "`make dev`; otherwise check your network"
        )
    if isinstance(error, ClientError):
        code = _code(error)
        operation = error.operation_name
        if code in _CREDENTIALS_REFUSED:
            return (
                f"AWS refused your credentials ({code}): refresh them (e.g. `aws sso login`) or pass another --profile"
            )
        if code in _ACCESS_DENIED:
            return f"Your AWS identity may not call {operation} ({code}): use a profile that has the permission"
        message = error.response.get("Error", {}).get("Message", "")
        return f"AWS answered {code} to {operation}: {message}"
    return f"AWS error: {error}"


def _code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")
