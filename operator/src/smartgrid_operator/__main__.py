"""Run the operator: ``python -m smartgrid_operator``; ``... delete-consumer NAMESPACE NAME`` is
the chart's pre-delete hook (:mod:`smartgrid_operator.uninstall`).

SMARTGRID_OPERATOR_NAMESPACES (comma-separated) limits it to some namespaces; unset, it
watches all of them. Liveness is served at http://0.0.0.0:$SMARTGRID_HTTP_PORT/healthz.
"""

from __future__ import annotations

import os
import sys

import kopf

from smartgrid_operator import handlers  # noqa: F401  (registers every handler)


def main() -> None:
    """Wire the settings from the environment and hand over to kopf."""
    if sys.argv[1:2] == ["delete-consumer"]:
        from smartgrid_operator import uninstall

        sys.exit(uninstall.main(sys.argv[2:]))
    namespaces = [n.strip() for n in os.environ.get("SMARTGRID_OPERATOR_NAMESPACES", "").split(",") if n.strip()]
    port = int(os.environ.get("SMARTGRID_HTTP_PORT", "8080"))
    kopf.configure(verbose=os.environ.get("SMARTGRID_LOG_LEVEL", "INFO") == "DEBUG")
    kopf.run(
        # One operator replica (Deployment strategy Recreate): no peering objects needed.
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://0.0.0.0:{port}/healthz",
    )


if __name__ == "__main__":
    main()
