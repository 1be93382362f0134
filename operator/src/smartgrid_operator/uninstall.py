"""``python -m smartgrid_operator delete-consumer NAMESPACE NAME``: the chart's pre-delete hook.

``helm uninstall`` deletes the operator together with the release's SmartGridConsumer. The
consumer's finalizer is the operator's to remove, so without this hook it stayed, and with it the
namespace in ``Terminating``. The hook runs before Helm deletes anything: it deletes the consumer
and waits while the operator, still running, deletes what the consumer owns and removes the
finalizer. If no operator does so within the timeout (it was stopped, or never watched this
namespace), the hook removes the finalizer itself, as the docs say to do by hand: the owner
references still let the garbage collector delete the workloads.
"""

from __future__ import annotations

import argparse
import logging
import time

from smartgrid_common.logs import setup_logging

from smartgrid_operator import kube
from smartgrid_operator.builders import FINALIZER

log = logging.getLogger("smartgrid_operator.uninstall")


def _wait_gone(namespace: str, name: str, timeout: float, interval: float) -> bool:
    deadline = time.monotonic() + timeout
    while kube.get(kube.CONSUMER, namespace, name) is not None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def delete_consumer(namespace: str, name: str, timeout: float, interval: float = 1.0) -> str:
    """Delete the consumer and wait until it is gone; what happened, in a word: ``absent``,
    ``deleted`` (by the operator) or ``released`` (the finalizer removed here after ``timeout``).
    Raises TimeoutError when it is still there after that too (another finalizer holds it)."""
    consumer = kube.get(kube.CONSUMER, namespace, name)
    if consumer is None:
        log.info("consumer %s/%s: absent, nothing to delete", namespace, name)
        return "absent"
    kube.delete(kube.CONSUMER, namespace, name, consumer["metadata"]["uid"])
    log.info("consumer %s/%s: deleted, waiting up to %.0f s for the operator to release it", namespace, name, timeout)
    if _wait_gone(namespace, name, timeout, interval):
        log.info("consumer %s/%s: gone", namespace, name)
        return "deleted"
    log.warning(
        "consumer %s/%s: no operator removed its finalizer within %.0f s; removing %s here, the garbage "
        "collector deletes what it owned", namespace, name, timeout, FINALIZER,
    )
    kube.remove_finalizer(kube.CONSUMER, namespace, name, FINALIZER)
    if _wait_gone(namespace, name, timeout, interval):  # another finalizer may still be released
        return "released"
    holders = (kube.get(kube.CONSUMER, namespace, name) or {}).get("metadata", {}).get("finalizers")
    raise TimeoutError(f"consumer {namespace}/{name} is still there, held by the finalizers {holders}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m smartgrid_operator delete-consumer", description=__doc__.splitlines()[0])
    parser.add_argument("namespace")
    parser.add_argument("name")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the operator (default 60)")
    args = parser.parse_args(argv)
    setup_logging("operator")
    try:
        delete_consumer(args.namespace, args.name, args.timeout)
    except TimeoutError as error:
        log.error("%s", error)
        return 1
    return 0
