"""Logger, Tracer and Metrics, created once and shared by every function, the CLI and the local stack.

Configured by Powertools' own environment variables (POWERTOOLS_SERVICE_NAME, ...).
Logs go to stderr so that the CLI's stdout stays clean for `--output json`; Lambda keeps both.

Tracing: every function runs with Lambda's active tracing, which records each invocation in X-Ray
(its initialization, invocation and errors, linked to the caller's trace) with no SDK in the function.
Richer traces (a subsegment per AWS call and per Intuit request, the handler's ColdStart and Service
annotations) need the X-Ray SDK to patch botocore and requests, which adds about 120 million
instructions (tens of milliseconds) to a cold start (docs/performance.md, "Cold start"), and the SDK
reaches its end of support on 2027-02-25. So they are opt-in: the template's DetailedTracing
parameter (QBO_DETAILED_TRACING=true). Off, `tracer.capture_lambda_handler` hands the handler back untouched and nothing imports the SDK.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

SERVICE = "qbo-connect"
# Only what the service calls: AWS (botocore) and Intuit (requests). Not Powertools' patch_all, which
# imports and patches every library the X-Ray SDK knows.
TRACED_MODULES = ("botocore", "requests")


class Tracing:
    """Powertools' Tracer when detailed tracing is on, created (and patching) only then."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._tracer: Any = None

    @property
    def enabled(self) -> bool:
        # Imported here: settings (through the metering domain) imports this module.
        from qbo_connect.settings import detailed_tracing

        return detailed_tracing()

    def capture_lambda_handler(
        self,
        handler: Callable[..., Any] | None = None,
        *,
        capture_response: bool | None = None,
        capture_error: bool | None = None,
    ) -> Any:
        """Powertools' decorator, with or without its options: `@tracer.capture_lambda_handler` or
        `@tracer.capture_lambda_handler(capture_response=False)`."""
        if handler is None:
            return functools.partial(
                self.capture_lambda_handler, capture_response=capture_response, capture_error=capture_error
            )
        if not self.enabled:
            return handler
        return self.powertools_tracer().capture_lambda_handler(
            handler, capture_response=capture_response, capture_error=capture_error
        )

    def powertools_tracer(self) -> Any:
        if self._tracer is None:
            from aws_lambda_powertools import Tracer

            self._tracer = Tracer(service=self._service, auto_patch=False)
            self._tracer.patch(modules=TRACED_MODULES)
        return self._tracer


# Powertools warns on every invocation that adds no metric of its own (the consent routes): a line of noise
# in each log stream, and on a cold start the warning machinery reads and tokenizes Powertools' source.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

# Libraries whose DEBUG lines carry what they send and receive: requests-oauthlib the token requests and
# Intuit's answers (the Basic auth header, codes, tokens), botocore every AWS request and answer body (the
# connection secret's document). Lambda's application log level DEBUG sets the root logger to DEBUG; these
# stay at INFO whatever the root's level, so turning DEBUG on to chase a failure leaks no secret.
SECRET_BEARING_LOGGERS = ("requests_oauthlib", "oauthlib", "botocore.endpoint", "botocore.parsers")
for _name in SECRET_BEARING_LOGGERS:
    logging.getLogger(_name).setLevel(logging.INFO)


class ThreadSafeEMFProvider(AmazonCloudWatchEMFProvider):
    """Powertools' EMF metric set, changed by one thread at a time.

    The refresh function refreshes a batch's records in threads (refresh_runs.py), and the local stack runs
    invocations of one function side by side: Powertools' add_metric reads a metric's values, appends and
    stores them back, and at 100 values flushes and clears the set, with no lock. A thread switch in
    between lost datapoints (a permanent failure counted once for two), and a flush while another thread
    added could fail on a set changing under it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._changing = threading.RLock()  # re-entrant: add_metric flushes, flush_metrics clears
        super().__init__(*args, **kwargs)

    def add_metric(self, *args: Any, **kwargs: Any) -> None:
        with self._changing:
            super().add_metric(*args, **kwargs)

    def serialize_metric_set(self, *args: Any, **kwargs: Any) -> Any:
        with self._changing:
            return super().serialize_metric_set(*args, **kwargs)

    def flush_metrics(self, *args: Any, **kwargs: Any) -> None:
        with self._changing:
            super().flush_metrics(*args, **kwargs)

    def clear_metrics(self) -> None:
        with self._changing:
            super().clear_metrics()


logger = Logger(service=SERVICE, stream=sys.stderr)
tracer = Tracing(SERVICE)
# A store of its own: Powertools' Metrics instances share one unless given a provider, so a workflow that
# runs the Python client beside Metrics of its own would publish the service's metrics in its namespace.
metrics = Metrics(provider=ThreadSafeEMFProvider(service=SERVICE, namespace="QboConnect"))

__all__ = ["MetricUnit", "logger", "metrics", "tracer"]
