"""``python -m aggregator``: wire settings, logging and the app, then serve."""

from __future__ import annotations

from smartgrid_common.health import serve
from smartgrid_common.logs import setup_logging
from smartgrid_common.redisdb import require_no_eviction
from smartgrid_common.settings import load_settings

from aggregator.app import build_app
from aggregator.settings import AggregatorSettings


def main() -> None:
    """Start the aggregator (fold worker + dashboard) on SMARTGRID_HTTP_PORT."""
    settings = load_settings(AggregatorSettings)
    setup_logging("aggregator", settings.log_level)
    require_no_eviction(settings)
    serve(build_app(settings), settings.http_host, settings.http_port, settings.metrics_port)


if __name__ == "__main__":
    main()
