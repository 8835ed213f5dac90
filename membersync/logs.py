"""structlog set-up: JSON lines in production, pretty output on a terminal, filtered by level."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    """Configure structlog and the standard library's root logger once, where a process starts."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    render_json = (not sys.stderr.isatty()) if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if render_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(
        level=numeric, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s", force=True
    )
    # membersync's HTTP kernel logs every request itself, with request ids and timings.
    logging.getLogger("httpx").setLevel(max(numeric, logging.WARNING))
    # Alembic narrates every schema check at INFO; its errors still come through.
    logging.getLogger("alembic").setLevel(max(numeric, logging.WARNING))
