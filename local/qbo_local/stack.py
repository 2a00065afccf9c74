"""The whole service on this machine: embedded AWS (moto), the Intuit emulator or Intuit's sandbox,
the functions behind the API router, the refresh schedule, and the demo connection.

The handlers run in this process, so their environment is this process's environment: everything is
set in os.environ before the first import of qbo_connect's services, then the services are reset.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import socket
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from qbo_local import config, discovery
from qbo_local.authorizers import IamAuthorizer, JwtAuthorizer
from qbo_local.cognito_sign_in import set_up_authenticator
from qbo_local.config import IntuitKeys, UpOptions
from qbo_local.functions import (
    LocalFunction,
    as_function_output,
    function_specs,
    put_layer_first,
    send_function_output_to,
)
from qbo_local.lambda_service import LambdaServer, LambdaService
from qbo_local.router import Route, Router, RouterServer
from qbo_local.scheduler import QueueEventSource, RefreshSchedule, describe_refresh
from qbo_local.template import (
    function_properties,
    http_api_authorizers,
    http_routes,
    load_template,
    parameter_default,
    queue_attributes,
)

log = logging.getLogger("qbo_local.stack")

# Variables from the developer's shell that would send boto3 to a real account or profile.
_AWS_VARIABLES_TO_DROP = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


class StackError(RuntimeError):
    """A part of the local stack could not start; the message says what to do."""


def port_taken_message(port: int, what: str, option: str, env: str) -> str:
    """Names the flag in the form `make dev` takes it, since that is how most people start the stack."""
    return (
        f"Port {port} for {what} is taken (another `make dev` running?): stop it, or choose another port: "
        f'make dev ARGS="{option} N" (qbo-connect-local up {option} N, or {env}=N; 0 picks a free one)'
    )


def ensure_port_free(port: int, what: str, option: str, env: str, host: str = "127.0.0.1") -> None:
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # The servers set SO_REUSEADDR too, so a port left in TIME_WAIT counts as free, as for them.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise StackError(port_taken_message(port, what, option, env)) from None


def cli_command() -> str:
    """How to run the admin CLI from the shell that ran `make dev`."""
    return script_command("qbo-connect", "qbo_connect_cli.main")


def script_command(script: str, module: str) -> str:
    """How to run one of this package's commands from the shell that ran `make dev`: bare if PATH finds this
    one, else its path (or the module, when it is not installed as a script)."""
    installed = Path(sys.executable).parent / script
    if not installed.exists():
        return f"{sys.executable} -m {module}"
    on_path = shutil.which(script)
    if on_path and Path(on_path).resolve() == installed.resolve():
        return script
    try:
        return str(installed.relative_to(Path.cwd()))
    except ValueError:
        return str(installed)


def handler_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The QBO_* settings the handlers get (the local stack's own options and Intuit keys left out), and where
    their AWS clients go: AWS_ENDPOINT_URL (moto), AWS_ENDPOINT_URL_LAMBDA (the stack's Invoke API)."""
    env = os.environ if environ is None else environ
    chosen = {
        name: value
        for name, value in env.items()
        if (name.startswith("QBO_") and name not in config.LOCAL_ONLY_VARIABLES)
        or name == "AWS_ENDPOINT_URL"
        or name.startswith("AWS_ENDPOINT_URL_")
    }
    return dict(sorted(chosen.items()))


def use_local_aws(endpoint_url: str) -> None:
    """Point every boto3 client of this process at moto, with fake credentials."""
    for name in [*_AWS_VARIABLES_TO_DROP, *(n for n in os.environ if n.startswith("AWS_ENDPOINT_URL_"))]:
        os.environ.pop(name, None)
    os.environ.update(config.BASE_ENVIRONMENT)
    os.environ["AWS_ENDPOINT_URL"] = endpoint_url


def local_aws_server(port: int, clock: Callable[[], float] = time.time):
    """The embedded AWS: moto in server mode with DynamoDB's and Secrets Manager's requests applied atomically, as
    AWS applies them (serialized_moto.py), and Cognito's sign-in as strict as AWS's (faults/strict_cognito.py: the
    console's SRP proof is checked, the app client's auth flows enforced). `clock` is the strict Cognito's (tests
    move it). Raises OSError when the port is taken."""
    from qbo_local.faults.strict_cognito import StrictCognito, moto_cognito_backend
    from qbo_local.serialized_moto import SerializedMotoServer

    backend = moto_cognito_backend(config.ACCOUNT_ID, config.REGION)
    return SerializedMotoServer(
        host="127.0.0.1", port=port, middleware=lambda app: StrictCognito(app, backend, clock=clock)
    )


def create_event_log(events, logs, *, bus_name: str, group: str = config.EVENT_LOG_GROUP) -> None:
    """template.yaml's event log: a rule on the bus sending every qbo-connect event to a log group."""
    from qbo_connect.domain.events import EVENT_SOURCE

    logs.create_log_group(logGroupName=group)
    events.put_rule(
        Name=config.EVENT_LOG_RULE, EventBusName=bus_name, EventPattern=json.dumps({"source": [EVENT_SOURCE]})
    )
    arn = f"arn:aws:logs:{config.REGION}:{config.ACCOUNT_ID}:log-group:{group}"
    events.put_targets(Rule=config.EVENT_LOG_RULE, EventBusName=bus_name, Targets=[{"Id": "event-log", "Arn": arn}])


@dataclass(frozen=True)
class AdminSignIn:
    user_pool_id: str
    client_id: str
    username: str
    password: str = field(repr=False)
    aws_endpoint: str = ""
    # The key of the administrator's authenticator (the pool requires one): `qbo-connect-local totp` prints its code.
    authenticator_secret: str = field(default="", repr=False)


@dataclass
class _Part:
    name: str
    stop: Callable[[], None]


class LocalStack:
    def __init__(self, options: UpOptions) -> None:
        self.options = options
        self.state_file = options.state_file or discovery.state_path()
        self.document: dict[str, Any] | None = None
        self.authorize_link: str | None = None
        self.companies: list[str] = []
        self.intuit_keys: IntuitKeys | None = None
        self.schedule: RefreshSchedule | None = None
        self.queue_source: QueueEventSource | None = None
        self._template: dict[str, Any] = {}
        self.functions: dict[str, LocalFunction] = {}
        self.admin: AdminSignIn | None = None
        self._parts: list[_Part] = []  # in start order; stopped in reverse
        self._stopped = False

    # --- start ------------------------------------------------------------------------------------
    def start(self) -> dict[str, Any]:
        running = discovery.find_running_stack(self.state_file)
        if running is not None:
            raise StackError(
                f"A local stack already runs (pid {running.get('pid')}, {running.get('api_url')}): stop it first, "
                f"or give this one its own {config.STATE_ENV} and ports"
            )
        self._route_function_logs()
        self.intuit_keys = config.intuit_keys()
        # The handlers must not see the keys (Lambda would not): the demo connection's secret holds them.
        os.environ.pop(config.INTUIT_CLIENT_ID_ENV, None)
        os.environ.pop(config.INTUIT_CLIENT_SECRET_ENV, None)
        put_layer_first(self.options.root)
        self._template = load_template(self.options.root / "template.yaml")

        aws_endpoint = self._start_aws()
        queue_url, queue_arn, dlq_url = self._create_aws_resources()
        self.admin = self._create_admin_pool(aws_endpoint)
        webhook_queue_url, webhook_queue_arn, _ = self._create_queue(
            config.WEBHOOK_QUEUE_NAME, config.WEBHOOK_DLQ_NAME, "WebhookQueue"
        )
        emulator_url = self._start_intuit()
        router = self._bind_router()
        api_url = router.url
        lambda_url = self._start_lambda_api()
        os.environ.update(
            {
                "QBO_TABLE_NAME": config.TABLE_NAME,
                "QBO_EVENTS_TABLE_NAME": config.EVENTS_TABLE_NAME,
                "QBO_SECRET_PREFIX": f"qbo-connect/{config.STACK_NAME}/",
                "QBO_SIGNING_KEY_SECRET_ID": f"qbo-connect/{config.STACK_NAME}/signing-key",
                "QBO_REFRESH_QUEUE_URL": queue_url,
                "QBO_WEBHOOK_QUEUE_URL": webhook_queue_url,
                "QBO_PUBLIC_BASE_URL": api_url,
                "QBO_ADMIN_USER_POOL_ID": self.admin.user_pool_id,
                "QBO_ADMIN_CONSOLE_CLIENT_ID": self.admin.client_id,
                "QBO_COGNITO_ENDPOINT_URL": aws_endpoint,
            }
        )
        # The code judges token validity against the sweep period: keep it in step with the schedule.
        os.environ.setdefault("QBO_REFRESH_PERIOD_SECONDS", str(max(1, round(self.options.refresh_interval))))
        # As template.yaml's Globals: the service's own functions write each API call's count at once.
        os.environ.setdefault("QBO_METERING_FLUSH_SECONDS", "0")

        from qbo_connect.runtime import reset_services  # only now: the environment is complete

        reset_services()
        with as_function_output():
            self._ensure_demo_connection()
        router.start()  # its stop, registered when it was bound, shuts the serving thread down too
        self._start_queue_source("refresh", queue_url, queue_arn)
        self._start_queue_source("webhook_events", webhook_queue_url, webhook_queue_arn)
        self._subscribe_demo_webhooks(emulator_url, api_url)
        self.schedule = RefreshSchedule(self.functions["refresh"], self.options.refresh_interval).start()
        self._parts.append(_Part("refresh schedule", self.schedule.stop))

        from qbo_connect.domain.authorization import callback_url
        from qbo_connect.runtime import services

        self.authorize_link = services().authorize_links.create(api_url, config.DEMO_CONNECTION_ID)
        self.document = {
            "pid": os.getpid(),
            "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "api_url": api_url,
            "callback_url": callback_url(api_url),
            "aws_endpoint_url": aws_endpoint,
            "lambda_endpoint_url": lambda_url,
            "region": config.REGION,
            "emulator_url": emulator_url,
            "intuit": "emulator" if emulator_url else "sandbox",
            "refresh_interval_seconds": self.options.refresh_interval,
            "refresh_dead_letter_queue_url": dlq_url,
            "function_log": str(self.options.function_log) if self.options.function_log else None,
            "event_log_group": config.EVENT_LOG_GROUP,
            "environment": handler_environment(),
            "console_url": f"{api_url}/",
            # The local pool's one administrator (a fake pool in moto, gone when the stack stops).
            "admin_username": self.admin.username,
            "admin_password": self.admin.password,
            "admin_authenticator_secret": self.admin.authenticator_secret,
        }
        discovery.write_json_private(self.state_file, self.document)
        return self.document

    def _route_function_logs(self) -> None:
        """Handlers' JSON lines to a file (as Lambda's go to CloudWatch Logs), so the terminal keeps one
        readable line per request, sweep and refresh batch."""
        # Lambda shows this per invocation without application metrics; here it would only be noise.
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        if self.options.function_log is None:
            return
        path = self.options.function_log
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        stream = open(path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115 - open while the stack runs
        os.chmod(path, 0o600)
        send_function_output_to(stream)
        self._parts.append(_Part("function log", lambda: (send_function_output_to(None), stream.close())))

    def announce_ready(self) -> None:
        """The ready file, last: whoever waits for it can use everything, the printed banner included."""
        if self.options.ready_file and self.document is not None:
            discovery.write_json_private(self.options.ready_file, self.document)

    def _start_aws(self) -> str:
        port = self.options.aws_port
        ensure_port_free(port, "the embedded AWS (moto)", "--aws-port", config.AWS_PORT_ENV)
        try:
            server = local_aws_server(port)
        except OSError:
            raise StackError(
                port_taken_message(port, "the embedded AWS (moto)", "--aws-port", config.AWS_PORT_ENV)
            ) from None
        self._parts.append(_Part("embedded AWS", server.stop))
        endpoint = server.url
        use_local_aws(endpoint)
        log.info("Embedded AWS (moto) listening on %s", endpoint)
        return endpoint

    def _create_aws_resources(self) -> tuple[str, str, str]:
        import boto3
        from qbo_connect.adapters.dynamodb_event_history import create_events_table
        from qbo_connect.adapters.dynamodb_store import create_table

        create_table(boto3.client("dynamodb"), config.TABLE_NAME)
        create_events_table(boto3.client("dynamodb"), config.EVENTS_TABLE_NAME)
        create_event_log(
            boto3.client("events"), boto3.client("logs"), bus_name=os.environ.get("QBO_EVENT_BUS_NAME") or "default"
        )
        # template.yaml's RotationKey: seals a rotated token set the vault refused onto the item.
        key = boto3.client("kms").create_key(Description="qbo-connect local: seals refused rotations")
        os.environ["QBO_ROTATION_KEY_ID"] = key["KeyMetadata"]["Arn"]
        return self._create_queue(config.REFRESH_QUEUE_NAME, config.REFRESH_DLQ_NAME, "RefreshQueue")

    def _create_queue(self, name: str, dead_letter_name: str, logical_id: str) -> tuple[str, str, str]:
        """A queue with its dead-letter queue, as the template pairs them, with the template's visibility
        timeout (a batch outlasting SQS's default 30 s would otherwise be handed out twice) and receive
        count: (url, arn, dead-letter url)."""
        import boto3

        sqs = boto3.client("sqs")
        dlq_url = sqs.create_queue(QueueName=dead_letter_name)["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attributes = queue_attributes(self._template, logical_id)
        receives = attributes.pop("maxReceiveCount", None)
        if receives is not None:
            attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": int(receives)})
        queue_url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return queue_url, queue_arn, dlq_url

    def _create_admin_pool(self, aws_endpoint: str) -> AdminSignIn:
        """The administrators' user pool and group the template creates, with one administrator to sign in as."""
        import boto3
        from qbo_connect.settings import DEFAULT_ADMIN_GROUP

        cognito = boto3.client("cognito-idp")
        pool = self._template["Resources"]["AdminUserPool"]["Properties"]
        pool_id = cognito.create_user_pool(
            PoolName=f"{config.STACK_NAME}-administrators",
            AdminCreateUserConfig=pool["AdminCreateUserConfig"],
            MfaConfiguration=pool["MfaConfiguration"],
        )["UserPool"]["Id"]
        # As CloudFormation does with the template's EnabledMfas: authenticator apps (TOTP) on, and only them.
        cognito.set_user_pool_mfa_config(
            UserPoolId=pool_id,
            SoftwareTokenMfaConfiguration={"Enabled": "SOFTWARE_TOKEN_MFA" in pool["EnabledMfas"]},
            MfaConfiguration=pool["MfaConfiguration"],
        )
        # The template's console client, with its auth flows (SRP only: the password never leaves the browser)
        # and the minutes each sign-in step may take.
        console_client = self._template["Resources"]["AdminConsoleClient"]["Properties"]
        client_id = cognito.create_user_pool_client(
            UserPoolId=pool_id,
            ClientName=f"{config.STACK_NAME}-console",
            GenerateSecret=False,
            ExplicitAuthFlows=console_client["ExplicitAuthFlows"],
            AuthSessionValidity=console_client["AuthSessionValidity"],
        )["UserPoolClient"]["ClientId"]
        password = secrets.token_urlsafe(15) + "Aa7-"
        cognito.admin_create_user(UserPoolId=pool_id, Username=config.ADMIN_USERNAME, MessageAction="SUPPRESS")
        cognito.admin_set_user_password(
            UserPoolId=pool_id, Username=config.ADMIN_USERNAME, Password=password, Permanent=True
        )
        # The template's AdminGroup: only its members may administer connections.
        cognito.create_group(UserPoolId=pool_id, GroupName=DEFAULT_ADMIN_GROUP)
        cognito.admin_add_user_to_group(
            UserPoolId=pool_id, Username=config.ADMIN_USERNAME, GroupName=DEFAULT_ADMIN_GROUP
        )
        # Its first sign-in, through Cognito's API as the console makes it: the authenticator's setup, whose key
        # the banner and `qbo-connect-local totp` use (a new pool each start: an app would need the key again).
        secret = set_up_authenticator(cognito, pool_id, client_id, config.ADMIN_USERNAME, password)
        return AdminSignIn(pool_id, client_id, config.ADMIN_USERNAME, password, aws_endpoint, secret)

    def _authorizers(self) -> dict[str, Any]:
        """The template's authorizers, backed by the local pool (JWT) and the local credentials (IAM)."""
        assert self.admin is not None
        built: dict[str, Any] = {}
        for name, definition in http_api_authorizers(self._template).items():
            if name == "AWS_IAM":
                built[name] = IamAuthorizer(
                    config.FAKE_AWS_ACCESS_KEY_ID, config.FAKE_AWS_SECRET_ACCESS_KEY, config.REGION, config.ACCOUNT_ID
                )
            elif "JwtConfiguration" in (definition or {}):
                built[name] = JwtAuthorizer(
                    issuer=f"https://cognito-idp.{config.REGION}.amazonaws.com/{self.admin.user_pool_id}",
                    audience=(self.admin.client_id,),
                    jwks_url=f"{self.admin.aws_endpoint}/{self.admin.user_pool_id}/.well-known/jwks.json",
                )
        return built

    def _start_queue_source(self, function_name: str, queue_url: str, queue_arn: str) -> None:
        """A function's SQS event, with the batch settings template.yaml gives it."""
        import boto3

        function = self.functions.get(function_name)
        events = (
            (function_properties(self._template, function.spec.logical_id).get("Events") or {}).values()
            if function
            else []
        )
        queue_event = next((e for e in events if isinstance(e, dict) and e.get("Type") == "SQS"), None)
        if function is None or queue_event is None:
            log.warning("template.yaml gives functions/%s no SQS event: nothing consumes its queue", function_name)
            return
        properties = queue_event.get("Properties") or {}
        batch_size = parameter_default(self._template, properties.get("BatchSize", 10), 10)
        window = properties.get("MaximumBatchingWindowInSeconds", 0)
        concurrency = parameter_default(
            self._template, (properties.get("ScalingConfig") or {}).get("MaximumConcurrency"), 1
        )
        if function_name == "refresh" and self.options.refresh_concurrency:
            concurrency = self.options.refresh_concurrency
        source = QueueEventSource(
            function,
            boto3.client("sqs"),
            queue_url,
            queue_arn,
            batch_size=batch_size if isinstance(batch_size, int) else 10,
            window_seconds=window if isinstance(window, int | float) else 0,
            report_failures="ReportBatchItemFailures" in (properties.get("FunctionResponseTypes") or []),
            concurrency=concurrency,
            describe=self._describe_refreshes if function_name == "refresh" else self._describe_entity_changes,
            label="Refresh queue" if function_name == "refresh" else "Webhook queue",
        ).start()
        if function_name == "refresh":
            self.queue_source = source
        self._parts.append(_Part(f"{function_name} queue consumer", source.stop))

    def _subscribe_demo_webhooks(self, emulator_url: str | None, api_url: str) -> None:
        """The emulator sends the demo app signed webhooks, verified with a token set as the CLI sets one."""
        if not emulator_url:
            return  # Intuit's sandbox cannot reach this machine: its webhooks need a public endpoint
        from qbo_connect.runtime import services

        from qbo_local.emulator import facts

        verifier_token = secrets.token_urlsafe(32)
        services().webhook_verifiers.set(config.DEMO_CLIENT_ID, verifier_token)
        subscribed = requests.post(
            f"{emulator_url}{facts.ADMIN_PREFIX}/webhooks",
            json={
                "client_id": config.DEMO_CLIENT_ID,
                "url": f"{api_url}/intuit/webhooks",
                "verifier_token": verifier_token,
            },
            timeout=5,
        )
        subscribed.raise_for_status()

    @staticmethod
    def _describe_entity_changes(bodies: list[str], batch_started_at: float) -> str:
        """What a webhook batch carried: its changes, each published as a QuickBooks Entity Changed event."""
        changes = [c for body in bodies for c in (json.loads(body).get("changes") or [])]
        kinds = sorted({f"{c.get('entity')} {c.get('operation')}" for c in changes})
        return f"{len(changes)} change(s) ({', '.join(kinds)}) published as QuickBooks Entity Changed"

    @staticmethod
    def _describe_refreshes(bodies: list[str], batch_started_at: float) -> str:
        """What the refresh batch did to each connection, read back from the table (never the tokens)."""
        from qbo_connect.domain.connection_test import NEXT_STEPS
        from qbo_connect.runtime import services

        steps = {code.value: step for code, step in NEXT_STEPS.items()}
        described = []
        for body in bodies:
            try:
                connection_id = json.loads(body)["connection_id"]
            except (ValueError, KeyError, TypeError):
                described.append("a message that names no connection")
                continue
            connection = services().store.get(connection_id)
            if connection is None:
                described.append(f"{connection_id} no longer exists")
            else:
                summary = connection.summary()
                step = steps.get(summary.get("last_refresh_error") or summary["status"])
                described.append(
                    describe_refresh(
                        summary,
                        batch_started_at=batch_started_at,
                        now=time.time(),
                        next_step=step.replace(" ID", f" {connection_id}") if step else None,
                    )
                )
        return "; ".join(described)

    def _start_intuit(self) -> str | None:
        if self.intuit_keys is not None:
            log.info("Intuit sandbox keys found: talking to Intuit's real endpoints")
            return None
        from qbo_local.emulator import EmulatorConfig, EmulatorServer, facts

        overrides = {}
        if self.options.access_token_seconds is not None:
            overrides["access_token_seconds"] = self.options.access_token_seconds
        port = self.options.intuit_port
        ensure_port_free(port, "the Intuit emulator", "--intuit-port", config.INTUIT_PORT_ENV)
        try:
            server = EmulatorServer(EmulatorConfig(**overrides), host="127.0.0.1", port=port)
        except OSError:
            raise StackError(
                port_taken_message(port, "the Intuit emulator", "--intuit-port", config.INTUIT_PORT_ENV)
            ) from None
        server.start()
        self._parts.append(_Part("Intuit emulator", server.stop))
        url = server.url
        os.environ.update(
            {
                "QBO_INTUIT_AUTHORIZATION_URL": url + facts.AUTHORIZE_PATH,
                "QBO_INTUIT_TOKEN_URL": url + facts.TOKEN_PATH,
                "QBO_INTUIT_REVOCATION_URL": url + facts.REVOKE_PATH,
                "QBO_INTUIT_USERINFO_URL": url + facts.USERINFO_PATH,
                "QBO_PRODUCTION_API_BASE_URL": url,
                "QBO_SANDBOX_API_BASE_URL": url,
                "QBO_ALLOWED_API_HOSTS": url.removeprefix("http://"),
            }
        )
        companies = requests.get(f"{url}{facts.ADMIN_PREFIX}/companies", timeout=5)
        companies.raise_for_status()
        self.companies = [company["name"] for company in companies.json()["companies"]]
        log.info("Intuit emulator listening on %s", url)
        return url

    def _bind_router(self) -> RouterServer:
        root = self.options.root
        template = self._template
        specs = function_specs(root, template)
        by_logical_id = {logical_id: LocalFunction(spec) for logical_id, spec in specs.items()}
        self.functions = {function.spec.short_name: function for function in by_logical_id.values()}
        if "refresh" not in self.functions:
            raise StackError("template.yaml has no function in functions/refresh/: the schedule has nothing to run")
        authorizers = self._authorizers()
        routes = []
        for route in http_routes(template):
            if route.authorizer is not None and route.authorizer not in authorizers:
                raise StackError(f"template.yaml: route {route.path} names an unknown authorizer {route.authorizer}")
            authorizer = authorizers.get(route.authorizer) if route.authorizer else None
            routes.append(Route.of(route.method, route.path, by_logical_id[route.function], authorizer))
        port = self.options.port
        ensure_port_free(port, "the API", "--port", config.PORT_ENV, host="localhost")
        try:
            server = RouterServer(Router(routes), host="localhost", port=port)
        except OSError:
            raise StackError(port_taken_message(port, "the API", "--port", config.PORT_ENV)) from None
        self._parts.append(_Part("API router", server.stop))
        return server

    def _start_lambda_api(self) -> str:
        """Lambda's Invoke API for the functions, where boto3's lambda client goes (AWS_ENDPOINT_URL_LAMBDA; moto
        keeps the rest of AWS): a caller short of time hands its refresh to the refresh function as on AWS."""
        server = LambdaServer(LambdaService(self.functions.values()), host="127.0.0.1", port=0).start()
        self._parts.append(_Part("Lambda API", server.stop))
        # After use_local_aws, which drops any AWS_ENDPOINT_URL_* the shell had.
        os.environ["AWS_ENDPOINT_URL_LAMBDA"] = server.url
        os.environ["QBO_REFRESH_FUNCTION_NAME"] = self.functions["refresh"].spec.function_name
        log.info("Lambda API (Invoke) listening on %s", server.url)
        return server.url

    def _ensure_demo_connection(self) -> None:
        from qbo_connect.domain.administration import NewConnection
        from qbo_connect.errors import ConnectionNotFound
        from qbo_connect.runtime import services

        if self.intuit_keys is not None:
            client_id, client_secret = self.intuit_keys.client_id, self.intuit_keys.client_secret
        else:
            from qbo_local.emulator import facts

            client_id, client_secret = config.DEMO_CLIENT_ID, secrets.token_urlsafe(32)
            registered = requests.post(
                f"{os.environ['QBO_SANDBOX_API_BASE_URL']}{facts.ADMIN_PREFIX}/clients",
                json={"client_id": client_id, "client_secret": client_secret},
                timeout=5,
            )
            registered.raise_for_status()
        admin = services().admin
        try:
            admin.find(config.DEMO_CONNECTION_ID)
        except ConnectionNotFound:
            admin.create(
                NewConnection(
                    name=config.DEMO_NAME,
                    client_id=client_id,
                    environment=config.DEMO_ENVIRONMENT,
                    connection_id=config.DEMO_CONNECTION_ID,
                ),
                actor=config.STACK_ACTOR,
            )
        admin.set_client_secret(config.DEMO_CONNECTION_ID, client_secret, actor=config.STACK_ACTOR)

    # --- stop -------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Scheduler, router, emulator, moto: the reverse of start. Safe to call twice or after a failed start."""
        if self._stopped:
            return
        self._stopped = True
        discovery.remove_state(self.state_file, pid=os.getpid())
        if self.options.ready_file:
            discovery.remove_state(self.options.ready_file, pid=os.getpid())
        for part in reversed(self._parts):
            try:
                part.stop()
            except Exception:
                log.exception("Could not stop the %s cleanly", part.name)
        self._parts.clear()

    # --- what a person reads ----------------------------------------------------------------------
    def _function_log_line(self) -> str:
        if self.options.function_log is None:
            return "on this terminal (the functions' JSON lines, as CloudWatch Logs would hold them)"
        return f"{self.options.function_log}  (JSON lines, as in CloudWatch Logs; --function-logs prints them here)"

    def banner(self) -> str:
        document = self.document or {}
        api_url = document.get("api_url", "")
        if document.get("emulator_url"):
            intuit = f"{document['emulator_url']}  (emulator; companies: {', '.join(self.companies) or 'none'})"
        else:
            intuit = "Intuit's sandbox (keys from QBO_INTUIT_CLIENT_ID / QBO_INTUIT_CLIENT_SECRET)"
        lines = [
            "",
            "qbo-connect is running on this machine",
            "",
            f"  API            {api_url}",
            f"  Callback URL   {document.get('callback_url', '')}",
            f"  AWS (moto)     {document.get('aws_endpoint_url', '')}  region {document.get('region', '')}",
            f"  Lambda Invoke  {document.get('lambda_endpoint_url', '')}  (the functions, by name or ARN)",
            f"  Intuit         {intuit}",
            f"  Refresh sweep  every {self.options.refresh_interval:g} s",
            f"  State file     {self.state_file}",
            f"  Function logs  {self._function_log_line()}",
            "",
        ]
        if not document.get("emulator_url"):
            lines += [
                f"  Add {document.get('callback_url', '')} to your Intuit app's redirect URIs (Development).",
                "",
            ]
        if self.admin is not None:
            lines += [
                "The console (admin API behind Cognito sign-in: a password and an authenticator's code):",
                f"  {api_url}/    user {self.admin.username}   password {self.admin.password}",
                f"  code: {script_command('qbo-connect-local', 'qbo_local')} totp   (prints the current one; or add the",
                f"        key {self.admin.authenticator_secret} to an authenticator app, until this stack stops)",
                "",
            ]
        cli = cli_command()
        lines += [
            "Connect the demo company: open this link in a browser",
            f"  {self.authorize_link}",
        ]
        if document.get("emulator_url"):
            lines.append(
                f"  (the browser must reach both {_port_of(api_url)} and {_port_of(document['emulator_url'])}: "
                "on a remote machine, forward both ports)"
            )
        lines += [
            "",
            "Then try, in another terminal (from this folder):",
            f"  {cli} connections list",
            f"  {cli} connections test demo",
            f"  {cli} connections reset --yes demo",
            f"  {cli} connections authorize-link demo",
            "",
            "State is kept in memory only: stopping the stack forgets every connection it holds",
            "(the demo connection is created again at the next start).",
            "",
            "Press Ctrl+C to stop.",
            "",
        ]
        return "\n".join(lines)


def _port_of(url: str) -> str:
    return f"port {urlsplit(url).port}"
