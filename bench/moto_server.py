"""moto's server as the benchmark runs it: `python -m bench.moto_server -H 127.0.0.1 -p PORT`.

It is the local stack's embedded AWS (qbo_local.stack.local_aws_server: DynamoDB's and Secrets Manager's
requests applied atomically, as AWS does, where plain moto lets two processes racing for one lease both
win; and Cognito's SRP sign-in, which the stack's start makes for its administrator). And four changes
to moto, for the benchmark only, where moto does per call work that grows with what it
holds (AWS does not), so that the throughput figure measures qbo-connect and not moto:

- Secrets Manager finds a secret by comparing every stored secret's name and ARN: with 11,000
  secrets every GetSecretValue and PutSecretValue scans them all (and a scan racing a concurrent
  CreateSecret fails). A name (all qbo-connect passes) is the dictionary key moto stores the secret
  under, so a lookup by name is a dictionary lookup; an ARN still goes through moto's scan.
- SQS deletes a message by scanning the queue twice and rebuilding it, for every message: with
  10,000 queued that is quadratic. Here one pass stops at the message (usually near the front: the
  oldest are received first), with the same checks and bookkeeping.
- SQS computes every queue attribute, the three approximate message counts among them (each a scan
  of the queue), for every message sent and received: quadratic again. Here a count is reused for
  up to five seconds (SQS calls them approximate too; nothing in the benchmark reads them), and
  attribute names are converted once.
- DynamoDB checks an update expression's clause counts, and that no two of its paths overlap, at
  every nested node of its syntax tree, each check walking the subtree again: quadratic in the number
  of SET actions (the metadata save sets twenty). Here each check runs once, at the root, whose
  clauses cover every nested one.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from typing import Any

import moto.sqs.models as sqs_models
from moto.dynamodb.parsing.ast_nodes import UpdateExpression
from moto.dynamodb.parsing.validators import ActionCountValidator, OverlappingPathsValidator
from moto.secretsmanager.models import SecretsStore
from moto.sqs.exceptions import ReceiptHandleIsInvalid
from moto.sqs.models import Queue

_scan_getitem = SecretsStore.__getitem__
_scan_contains = SecretsStore.__contains__
_scan_get = SecretsStore.get


def _getitem(self: SecretsStore, key: str) -> Any:
    if not key.startswith("arn:"):
        return dict.__getitem__(self, key)  # KeyError when missing, as moto's own lookup raises
    return _scan_getitem(self, key)


def _contains(self: SecretsStore, key: object) -> bool:
    if isinstance(key, str) and not key.startswith("arn:"):
        return dict.__contains__(self, key)
    return _scan_contains(self, key)


def _get(self: SecretsStore, key: str) -> Any:
    if not key.startswith("arn:"):
        return dict.get(self, key)
    return _scan_get(self, key)


def _delete_message(self: Queue, receipt_handle: str) -> None:
    if receipt_handle in self.deleted_messages:
        return  # already deleted: moto answers success, as SQS does
    with self._messages_lock:
        for index, message in enumerate(self._messages):
            if message.had_receipt_handle(receipt_handle):
                del self._messages[index]
                self.pending_messages.discard(message)
                self.deleted_messages.update(message.all_receipt_handles)
                return
    raise ReceiptHandleIsInvalid()


def _reused_for_a_while(count: property) -> property:
    lock = threading.Lock()

    def getter(self: Queue) -> int:
        cache = self.__dict__.setdefault("_bench_counts", {})
        hit = cache.get(count)
        # One thread recounts at a time; the others take the last count meanwhile.
        if (hit is None or time.monotonic() - hit[0] > 5.0) and lock.acquire(blocking=hit is None):
            try:
                hit = cache[count] = (time.monotonic(), count.fget(self))
            finally:
                lock.release()
        return hit[1]

    return property(getter)


def _count_actions_at_the_root(self: ActionCountValidator, node: Any) -> Any:
    if isinstance(node, UpdateExpression):
        self.verify_action_counts(node)
    return node


def _check_overlaps_at_the_root(self: OverlappingPathsValidator, node: Any) -> Any:
    if isinstance(node, UpdateExpression):
        self.check_for_overlapping_paths(node)
    return node


SecretsStore.__getitem__ = _getitem  # type: ignore[method-assign]
SecretsStore.__contains__ = _contains  # type: ignore[method-assign]
SecretsStore.get = _get  # type: ignore[method-assign]
Queue.delete_message = _delete_message  # type: ignore[method-assign]
for _name in (
    "approximate_number_of_messages",
    "approximate_number_of_messages_delayed",
    "approximate_number_of_messages_not_visible",
):
    setattr(Queue, _name, _reused_for_a_while(getattr(Queue, _name)))
ActionCountValidator.traverse = _count_actions_at_the_root  # type: ignore[method-assign]
OverlappingPathsValidator.traverse = _check_overlaps_at_the_root  # type: ignore[method-assign]
sqs_models.camelcase_to_underscores = functools.lru_cache(maxsize=512)(sqs_models.camelcase_to_underscores)


def _exit_with_parent() -> None:
    """The benchmark owns this server: if it dies without stopping it, don't linger."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def main(argv: list[str]) -> int:
    import argparse

    from qbo_local.stack import local_aws_server

    parser = argparse.ArgumentParser(prog="python -m bench.moto_server")
    parser.add_argument("-H", "--host", default="127.0.0.1", choices=["127.0.0.1"])
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args(argv)
    local_aws_server(args.port)  # make dev's embedded AWS: serialized writes, and Cognito's sign-in as strict as AWS's
    threading.Event().wait()  # serves in its thread until the benchmark stops this process
    return 0


if __name__ == "__main__":
    threading.Thread(target=_exit_with_parent, name="exit-with-parent", daemon=True).start()
    sys.exit(main(sys.argv[1:]))
