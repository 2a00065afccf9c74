"""Logger, Tracer and Metrics, created once and shared by every function, the CLI and the local stack.

Configured by Powertools' own environment variables (POWERTOOLS_SERVICE_NAME, ...).
Logs go to stderr so that the CLI's stdout stays clean for `--output json`; Lambda keeps both.
"""

from __future__ import annotations

import sys

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = "qbo-connect"

logger = Logger(service=SERVICE, stream=sys.stderr)
tracer = Tracer(service=SERVICE)
metrics = Metrics(service=SERVICE, namespace="QboConnect")

__all__ = ["MetricUnit", "logger", "metrics", "tracer"]
