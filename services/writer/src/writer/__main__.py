"""``python -m writer``: wire settings, logging and the app, then serve."""

from __future__ import annotations

import logging

from smartgrid_common.health import serve
from smartgrid_common.logs import setup_logging
from smartgrid_common.redisdb import require_no_eviction
from smartgrid_common.settings import load_settings

from writer.app import build_app
from writer.settings import WriterSettings


def main() -> None:
    """Start the writer (rollups -> InfluxDB) with its health endpoints on SMARTGRID_HTTP_PORT."""
    settings = load_settings(WriterSettings)
    setup_logging("writer", settings.log_level)
    require_no_eviction(settings)
    # httpx logs every request at INFO: one line per InfluxDB write is noise.
    logging.getLogger("httpx").setLevel("WARNING")
    serve(build_app(settings), settings.http_host, settings.http_port, settings.metrics_port)


if __name__ == "__main__":
    main()
