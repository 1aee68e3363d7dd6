"""Redaction: no log record carries a secret, whatever logger wrote it or handler prints it.

``gateway_configure`` installs one ``RedactingFilter`` per app. It masks, in each record's message
(formatted with its args), its exception and stack text and its ``fields`` (the structured extra
the access log uses): every secret literal of the config (vendor ``api_key`` and plain client
keys), the values of ``Authorization`` / ``api-key`` / ``x-api-key`` headers and the shapes of
common vendor keys (``sk-…``, ``sk-ant-…``, ``sk-or-…``, ``xai-…``, ``pplx-…``, Bearer tokens);
see ``gateway.secrets``.

Where the filter sits, and why: a filter on a *logger* sees only records logged to that logger,
not those that propagate up from its children (``aiohttp.server``, ``llm_gateway.handler``), so it
would be useless on the root logger. A filter on a *handler* sees every record the handler
prints, from any logger, so the filter goes on every handler that exists at start-up (the root
logger's and any named logger's). Handlers added later (pytest's ``caplog``, a framework's
``dictConfig``) never got it, so the log record factory is wrapped too: every record is scrubbed
once, as it is created, before any handler sees it; the handler filters then find it marked and
pass it on. A scrubbed record has its message formatted (``args`` is None) and its exception
pre-formatted into ``exc_text`` (``exc_info`` is None): standard formatters print it unchanged.

Cost: nothing per request. Records exist only for log calls above their logger's level, and a
record with nothing secret-looking in it costs a few substring tests.

The plugin also owns the ``logging`` section (``format: text|json``, ``level``, per-logger
``loggers``); without it the host's logging setup is left as it is. App cleanup undoes all of it.
Other plugins (e.g. tracing, for span attributes) scrub with ``app[REDACTOR]``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway import hookimpl
from gateway.config import GatewayConfig
from gateway.plugin_manager import carry_over
from gateway.secrets import MIN_LITERAL_LEN, Scrubber, mask

log = logging.getLogger("llm_gateway.redaction")

SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "api-key", "x-api-key"})
FIELDS = "fields"  # the record attribute holding structured fields (``extra={"fields": {...}}``)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
Level = Literal["debug", "info", "warning", "error", "critical"]


def _lower(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: v.lower() if isinstance(v, str) else v for k, v in value.items()}
    return value.lower() if isinstance(value, str) else value


class LoggingSettings(BaseModel):
    """The ``logging`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["text", "json"] = "text"
    level: Level = "info"
    loggers: dict[str, Level] = Field(default_factory=dict)  # e.g. {"llm_gateway.access": "warning"}

    _lowered = field_validator("level", "loggers", mode="before")(_lower)


class Redactor(Scrubber):
    """``Scrubber`` plus structured values, header maps and log records."""

    def scrub_value(self, value: Any) -> Any:
        """Strings scrubbed inside dicts, lists and tuples; other values returned as they are."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: self.scrub_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub_value(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.scrub_value(v) for v in value)
        return value

    def scrub_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Credential headers masked whole, the others scrubbed (e.g. for a span or a debug dump)."""
        return {k: mask(v) if k.lower() in SENSITIVE_HEADERS else self.scrub(v) for k, v in headers.items()}

    def scrub_record(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # bad args: logging would print msg and args raw in its error report
            message = f"{record.msg!s} (unformattable log arguments: {record.args!r})"
        record.msg, record.args = self.scrub(message), None
        if "message" in record.__dict__:
            record.message = record.msg
        if record.exc_info:
            record.exc_text = record.exc_text or _EXC_FORMATTER.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        self.scrub_fields(record)

    def scrub_fields(self, record: logging.LogRecord) -> None:
        fields = record.__dict__.get(FIELDS)
        if isinstance(fields, dict) and self._fields_need_scrub(fields):
            setattr(record, FIELDS, self.scrub_value(fields))

    def _fields_need_scrub(self, fields: dict[str, Any]) -> bool:
        # One scrub over the joined strings instead of one per field (the access log's case).
        if not _SCALARS.issuperset(map(type, fields.values())):
            return True
        joined = "\n".join([v for v in fields.values() if type(v) is str])
        return self.scrub(joined) is not joined


_EXC_FORMATTER = logging.Formatter()
_SCALARS = frozenset({str, int, float, bool, type(None)})
REDACTOR: web.AppKey[Redactor] = web.AppKey("llm_gateway.redactor")


class RedactingFilter(logging.Filter):
    """Scrubs a record once and never drops one. The record factory calls it first, before
    ``Logger.makeRecord`` adds ``extra`` and before ``logging.makeLogRecord`` fills in the record,
    so the marker remembers *what* was scrubbed: a handler scrubs again what changed since."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor
        self.active = True
        self.mark = f"_redacted_{id(self):x}"

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.active:
            return True
        d = record.__dict__
        done = d.get(self.mark)
        if done is None or done[0] is not record.msg or record.args:
            self.redactor.scrub_record(record)
        elif done[1] is not d.get(FIELDS):
            self.redactor.scrub_fields(record)
        d[self.mark] = (record.msg, d.get(FIELDS))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__.get(FIELDS)
        if isinstance(fields, dict):
            entry.update((k, v) for k, v in fields.items() if k not in entry)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return orjson.dumps(entry, default=str).decode()


def existing_handlers() -> list[logging.Handler]:
    loggers = [logging.getLogger()] + [
        lg for lg in list(logging.Logger.manager.loggerDict.values()) if isinstance(lg, logging.Logger)
    ]
    found = {id(h): h for lg in loggers for h in lg.handlers}
    if logging.lastResort is not None:
        found[id(logging.lastResort)] = logging.lastResort
    return list(found.values())


class LogSetup:
    """What one app changed in the process's logging, so that its cleanup can undo exactly that."""

    def __init__(self, redactor: Redactor, settings: LoggingSettings | None) -> None:
        self.filter = RedactingFilter(redactor)
        self.settings = settings
        self.filtered: list[logging.Handler] = []
        self.formatters: list[tuple[logging.Handler, logging.Formatter | None]] = []
        self.levels: dict[str, int] = {}
        self.added: logging.Handler | None = None
        self._previous: Callable[..., logging.LogRecord] | None = None
        self._factory: Callable[..., logging.LogRecord] | None = None

    def install(self) -> None:
        if self.settings is not None:
            self._apply(self.settings)
        for handler in existing_handlers():
            handler.addFilter(self.filter)
            self.filtered.append(handler)
        previous, scrub = logging.getLogRecordFactory(), self.filter.filter

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            scrub(record)
            return record

        self._previous, self._factory = previous, factory
        logging.setLogRecordFactory(factory)

    def _apply(self, settings: LoggingSettings) -> None:
        root = logging.getLogger()
        for name, level in {"": settings.level, **settings.loggers}.items():
            logger = logging.getLogger(name or None)
            self.levels[name] = logger.level
            logger.setLevel(level.upper())
        if not root.handlers:
            self.added = logging.StreamHandler(sys.stderr)
            self.added.setFormatter(logging.Formatter(TEXT_FORMAT))
            root.addHandler(self.added)
        if settings.format == "json":
            for handler in root.handlers:
                self.formatters.append((handler, handler.formatter))
                handler.setFormatter(JsonFormatter())

    def uninstall(self) -> None:
        if logging.getLogRecordFactory() is self._factory and self._previous is not None:
            logging.setLogRecordFactory(self._previous)
        else:  # another factory wraps ours now: it stays in the chain, as a pass-through
            self.filter.active = False
        for handler in self.filtered:
            handler.removeFilter(self.filter)
        for handler, formatter in self.formatters:
            handler.setFormatter(formatter)
        for name, level in self.levels.items():
            logging.getLogger(name or None).setLevel(level)
        if self.added is not None:
            logging.getLogger().removeHandler(self.added)


@hookimpl
def gateway_config_sections() -> dict[str, type[BaseModel]]:
    return {"logging": LoggingSettings}


LOG_SETUP: web.AppKey[LogSetup] = web.AppKey("llm_gateway.redaction.log_setup")


@hookimpl
def gateway_configure(config: GatewayConfig, app: web.Application) -> None:
    setup = carry_over(app, LOG_SETUP, "process", lambda: None)
    if setup is not None:
        # A configuration reload: the process's logging stays as set up at start-up; its filter
        # learns the new config's secrets, and keeps masking the old ones (requests of the
        # previous configuration may still be logging).
        redactor = Redactor(setup.filter.redactor.literals + tuple(config.secrets))
        setup.filter.redactor = redactor
        app[REDACTOR], app[LOG_SETUP] = redactor, setup
        return
    redactor = Redactor(config.secrets)
    app[REDACTOR] = redactor
    setup = LogSetup(redactor, config.section("logging"))
    setup.install()
    app[LOG_SETUP] = setup

    async def undo(_app: web.Application) -> None:
        setup.uninstall()

    # on_cleanup runs after every cleanup_ctx teardown, so shutdown logging is still scrubbed.
    app.on_cleanup.append(undo)
    short = sum(len(s) < MIN_LITERAL_LEN for s in config.secrets)
    if short:
        log.warning("%d configured secret(s) shorter than %d characters are masked only as header values",
                    short, MIN_LITERAL_LEN)
