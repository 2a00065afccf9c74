"""qbo-connect: the administrators' command line for QuickBooks Online connections.

This runs before anything imports qbo_connect: Powertools reads these variables when its Logger,
Tracer and Metrics are created. A command line has no use for EMF metrics or X-Ray segments, and
metrics would otherwise be printed to stdout, which belongs to the command's output (`--output json`).
The log level is set when a command runs (main.cli), not here: importing the CLI must not change how
other programs started from the same process log.
"""

import os

os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
