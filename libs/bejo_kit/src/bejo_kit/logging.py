"""structlog set-up: JSON lines off a terminal, coloured key=value on one.

Library logs (aiohttp, aio-pika, pymongo: stdlib `logging`) go through the same processors and
renderer via structlog's `ProcessorFormatter` on the root logger, so a service's stderr is one
format, at one level, every line carrying the service name.
"""

from __future__ import annotations

import logging
import sys

import orjson
import structlog
from structlog.types import EventDict, Processor, WrappedLogger


def _orjson_dumps(obj: object, default: object = None) -> str:
    return orjson.dumps(obj, default=default).decode()  # type: ignore[arg-type]


class _StructlogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the root handler we install, so configuring again replaces it (and nothing else)."""


def _add_service(service: str) -> Processor:
    # Stdlib records may come from threads (pymongo's monitors) where the contextvar is unset.
    def add(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return add


def configure_logging(service: str, level: str = "INFO", json: bool | None = None) -> None:
    use_json = (not sys.stderr.isatty()) if json is None else json
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if use_json:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    else:
        renderer = structlog.dev.ConsoleRenderer()
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        numeric_level = logging.INFO
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)

    handler = _StructlogHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, _add_service(service)],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StructlogHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
