"""Imported first by every function's handler module: in a Lambda runtime, no cyclic garbage collection
until the first invocation has answered.

A cold start creates tens of thousands of objects that live as long as the container: modules,
classes, botocore's models and clients, the service's wiring. Python's collector walks them again and
again as they pile up and finds next to nothing to free: about 5% of the instructions of a cold start's
import and first request (docs/performance.md, "Cold start"). Importing this module pauses the collector
(reference counting still frees every object that is not in a cycle). The handler's outermost decorator,
`resume_collection_after_first_invocation`, resumes it once the first invocation has answered, after
moving everything then alive into the permanent generation (gc.freeze), so later collections do not walk
the start-up objects either.

The cost: the reference cycles that became garbage before the freeze stay for the container's life. In the
benchmark's first requests (bench/cold_start.py) that was 23 to 646 objects of the 60,000 to 92,000 alive.
A first invocation that works long keeps its own too: about 20 objects an AWS call (measured on moto), so
a sweep at the write budget's 12,000 due connections (some 1,500 calls) keeps a few megabytes.

Only in Lambda: the CLI, the tests and the local stack (which imports the handlers into one long-running
process) keep Python's collector as it is.
"""

from __future__ import annotations

import functools
import gc
import os
from collections.abc import Callable
from typing import Any

# Lambda's reserved variable, set in the function's own process (botocore reads it into its user agent there);
# AWS_LAMBDA_RUNTIME_API is not a safe sign: a runtime's bootstrap may take it out before importing the handler.
IN_LAMBDA = os.environ.get("AWS_EXECUTION_ENV", "").startswith("AWS_Lambda_")

_paused = IN_LAMBDA and gc.isenabled()
if _paused:
    gc.disable()


def resume_collection_after_first_invocation(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """The handler, resuming the collector paused at import when its first invocation ends, however it ends."""

    @functools.wraps(handler)
    def invoke(event: Any, context: Any) -> Any:
        global _paused
        try:
            return handler(event, context)
        finally:
            if _paused:
                _paused = False
                gc.freeze()
                gc.enable()

    return invoke
