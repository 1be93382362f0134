"""``python -m ingest``: read settings, set up logging, serve the app (which runs the workers)."""

from smartgrid_common.health import serve
from smartgrid_common.logs import setup_logging
from smartgrid_common.settings import load_settings

from .app import build_app
from .settings import IngestSettings


def main() -> None:
    settings = load_settings(IngestSettings)
    setup_logging("ingest", settings.log_level)
    serve(build_app(settings), settings.http_host, settings.http_port)


if __name__ == "__main__":
    main()
