"""Running the server: one event loop per process, ``--workers N`` processes sharing the port
through SO_REUSEPORT, and a graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.app import build_app
from gateway.connections import make_runner
from gateway.keys import RELOADER
from gateway.loader import Loaded, load
from gateway.multiproc_metrics import shared_metrics_dir, worker_gone
from gateway.pid_file import PidFile

log = logging.getLogger("llm_gateway.server")
# SIGHUP re-reads the config file (gateway.reload); Windows has none.
RELOAD_SIGNAL: signal.Signals | None = getattr(signal, "SIGHUP", None)
# A dead worker is replaced, at most this many times in this window.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0


def ignore_reload_signal() -> None:
    """Until the event loop's handler is installed, a SIGHUP (an early `llm-gateway reload`, or
    the --workers parent passing one on) must not kill the process, its default action."""
    if RELOAD_SIGNAL is not None:
        signal.signal(RELOAD_SIGNAL, signal.SIG_IGN)


def install_fast_loop() -> None:
    try:
        import uvloop
    except ImportError:  # optional: Windows, or an install without it
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve_app(app: web.Application, host: str, port: int, *, reuse_port: bool = False) -> None:
    """Serve until SIGTERM/SIGINT, then stop accepting, drain in-flight requests for up to
    ``server.drain_timeout_s``, and close every provider session."""
    live = app[RELOADER]
    server = live.current.config.server
    runner = await make_runner(
        app,
        shutdown_timeout=server.drain_timeout_s,
        access_log=logging.getLogger("aiohttp.access") if server.access_log else None,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Windows has no loop signal handlers: Ctrl-C arrives as KeyboardInterrupt instead.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    if RELOAD_SIGNAL is not None:
        loop.add_signal_handler(RELOAD_SIGNAL, live.request_reload)
    try:
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=1024)
        await site.start()
        settle_garbage_collector()
        sockets = runner.addresses
        log.info("llm-gateway listening on %s", ", ".join(f"http://{a[0]}:{a[1]}" for a in sockets))
        await stop.wait()
        log.info("draining (up to %.0fs)", server.drain_timeout_s)
        live.draining = True
    finally:
        await runner.cleanup()
    log.info("stopped")


def settle_garbage_collector() -> None:
    """Once started: everything loaded so far (modules, config, plugins, pydantic schemas) lives
    as long as the process, so it is moved out of the collector's sight (``gc.freeze``), and the
    youngest generation may grow to 10 000 objects before a collection. A request's objects die
    by reference counting; collecting every 700 allocations only walked the same in-flight
    requests over and over (3% of the CPU per stream in perf)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


WORKER_NAME = "llm-gateway-{}"


def first_process() -> bool:
    """Whether this process speaks for the whole server in start-up notices: the only process,
    or worker 0 of ``--workers N`` (so a notice is logged once, not once per worker)."""
    return multiprocessing.current_process().name in ("MainProcess", WORKER_NAME.format(0))


def with_workers(loaded: Loaded, n: int) -> Loaded:
    """The config as this server runs it: ``server.workers`` is the effective process count
    (``--workers`` wins over the file), so plugins that divide work by it see the real number."""
    if loaded.config.server.workers == n:
        return loaded
    server = loaded.config.server.model_copy(update={"workers": n})
    return replace(loaded, config=loaded.config.model_copy(update={"server": server}))


def run_worker(config_path: str | None, host: str | None, port: int | None, reuse_port: bool, workers: int = 1) -> None:
    ignore_reload_signal()
    configure_logging()
    loaded = with_workers(load(config_path), workers)
    _run(loaded, host, port, reuse_port)


def _run(loaded: Loaded, host: str | None, port: int | None, reuse_port: bool) -> None:
    install_fast_loop()
    server = loaded.config.server

    async def main() -> None:
        await serve_app(build_app(loaded), host or server.host, server.port if port is None else port,
                        reuse_port=reuse_port)

    asyncio.run(main())


def serve(
    loaded: Loaded, config_path: str | None, host: str | None, port: int | None, workers: int | None,
    pid_file: str | None = None,
) -> int:
    n = workers or loaded.config.server.workers
    ignore_reload_signal()
    with PidFile(pid_file or loaded.config.server.pid_file):
        if n <= 1:
            _run(with_workers(loaded, 1), host, port, reuse_port=False)
            return 0
        return _supervise(n, config_path, host, port)


class Workers:
    """N worker processes on one port: started, replaced when one dies (at most ``MAX_RESTARTS``
    in ``RESTART_WINDOW_S``, so a worker that cannot start does not loop), and stopped together."""

    def __init__(self, args: tuple[Any, ...], metrics_dir: str) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.args = args
        self.metrics_dir = metrics_dir
        self.stopping = False
        self.procs: list[Any] = []
        self.restarts: list[float] = []
        self.reaped: set[int] = set()

    def start(self, n: int) -> None:
        for i in range(n):
            self.procs.append(self.spawn(i))

    def spawn(self, i: int) -> Any:
        p = self.ctx.Process(target=run_worker, args=self.args, name=WORKER_NAME.format(i))
        # An ignored signal stays ignored across exec: a reload passed on while a replacement
        # worker is still starting must not kill it (its own handler comes once it listens).
        previous = signal.signal(RELOAD_SIGNAL, signal.SIG_IGN) if RELOAD_SIGNAL is not None else None
        try:
            p.start()
        finally:
            if RELOAD_SIGNAL is not None:
                signal.signal(RELOAD_SIGNAL, previous)
        if self.stopping:  # the signal came while this one was starting
            p.terminate()
        return p

    def stop(self, signum: int, _frame: Any) -> None:
        self.stopping = True
        for p in self.procs:
            if p.is_alive() and p.pid is not None:
                p.terminate()

    def forward_reload(self, signum: int, _frame: Any) -> None:
        for p in self.procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signum)

    def run(self) -> None:
        """Until every worker has exited."""
        while live := [p.sentinel for p in self.procs if p.exitcode is None]:
            multiprocessing.connection.wait(live, timeout=1.0)
            for i, p in enumerate(self.procs):
                if p.exitcode is not None and p.pid not in self.reaped:
                    self.reap(i, p)

    def reap(self, i: int, p: Any) -> None:
        self.reaped.add(p.pid)
        worker_gone(p.pid, self.metrics_dir)
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_S]
        if self.stopping:
            return
        if len(self.restarts) >= MAX_RESTARTS:
            log.error("worker %s (pid %s) exited with %s; not restarted (%d restarts in %.0fs)",
                      p.name, p.pid, p.exitcode, MAX_RESTARTS, RESTART_WINDOW_S)
            return
        log.warning("worker %s (pid %s) exited with %s: starting another", p.name, p.pid, p.exitcode)
        self.restarts.append(now)
        self.procs[i] = self.spawn(i)


def _supervise(n: int, config_path: str | None, host: str | None, port: int | None) -> int:
    """Start N worker processes on one port and pass SIGTERM/SIGINT on to them. The workers share
    a metrics directory, so any of them answers ``/metrics`` for all."""
    path = str(Path(config_path).resolve()) if config_path else None
    with shared_metrics_dir() as metrics_dir:
        workers = Workers((path, host, port, True, n), metrics_dir)
        # Installed before the workers start, so an early SIGTERM still reaches all of them.
        signal.signal(signal.SIGTERM, workers.stop)
        signal.signal(signal.SIGINT, workers.stop)
        workers.start(n)  # SIGHUP is ignored here until all started, and so in each worker until it listens
        if RELOAD_SIGNAL is not None:
            signal.signal(RELOAD_SIGNAL, workers.forward_reload)
        workers.run()
    # A worker stopped by the forwarded SIGTERM before its own handler was installed is a clean stop.
    clean = {0, -signal.SIGTERM} if workers.stopping else {0}
    return 0 if all(p.exitcode in clean for p in workers.procs) else 1


def configure_logging(level: int = logging.INFO) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
