"""JSON-lines logging: one object per line, ready for CloudWatch Logs Insights.

What is logged: method, status code, latency, decision, quality reasons, model version,
request id and server lifecycle events. Never image bytes, crops, landmarks or scores.
"""

from __future__ import annotations

import json
import logging
import sys
import time

LOGGER_NAME = "ekyc"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"), default=str)


def configure(level: str = "INFO", stream=None) -> logging.Logger:
    """Send the ekyc logger's records to ``stream`` (stdout) as JSON lines.

    stdout holds only these JSON lines; native libraries (ONNX Runtime, OpenCV) write
    their own plain-text messages, if any, to stderr.
    """
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger


def log_event(event: str, level: int = logging.INFO, exc_info=None, **fields) -> None:
    logging.getLogger(LOGGER_NAME).log(level, event, extra={"fields": fields}, exc_info=exc_info)
