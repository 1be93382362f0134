"""JSON logging: one object per line on stdout, with the service name and any extra fields."""

from __future__ import annotations

import logging
import sys
import time

import orjson

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object; ``extra={...}`` fields become top-level keys."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def setup_logging(service: str, level: str = "INFO") -> None:
    """Route all logging (ours, uvicorn's, kopf's) through the JSON formatter on stdout."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel("WARNING")
    # One line per HTTP request would drown the log (ingest writes many times a second).
    logging.getLogger("httpx").setLevel("WARNING")


class KafkaClientLog:
    """The ``logger`` of a confluent-kafka client: librdkafka's own lines become the service's JSON
    lines (logger ``librdkafka``) instead of plain text on stderr, at the levels the live path's
    native reader gives them: its errors and warnings, which it retries (a broker that went away, a
    coordinator still loading), as warnings. A client made with it queues its lines until it is
    polled: poll it in its loop, or once before it is closed."""

    def __init__(self) -> None:
        self._log = logging.getLogger("librdkafka")

    def log(self, level: int, fmt: str, *args: object) -> None:
        self._log.log(min(level, logging.WARNING), fmt, *args)


KAFKA_CLIENT_LOG = KafkaClientLog()
