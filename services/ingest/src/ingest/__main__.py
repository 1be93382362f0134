"""``python -m ingest``: read settings, set up logging, serve the app (which runs the workers)."""

import signal
import sys

# A stop request that arrives while the process is still starting ends it cleanly too (exit 0);
# once serving, `serve` keeps this behaviour after uvicorn's graceful shutdown.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

from smartgrid_common.health import serve  # noqa: E402
from smartgrid_common.logs import setup_logging  # noqa: E402
from smartgrid_common.redisdb import require_no_eviction  # noqa: E402
from smartgrid_common.settings import load_settings  # noqa: E402

from .app import build_app  # noqa: E402
from .settings import IngestSettings  # noqa: E402


def main() -> None:
    settings = load_settings(IngestSettings)
    setup_logging("ingest", settings.log_level)
    if settings.processor_enable_aggregations:  # only the live path uses Redis
        require_no_eviction(settings)
    serve(build_app(settings), settings.http_host, settings.http_port, settings.metrics_port)


if __name__ == "__main__":
    main()
