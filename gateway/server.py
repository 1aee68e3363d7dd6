"""Running the server: one event loop per process, ``--workers N`` processes sharing the port
through SO_REUSEPORT, and a graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.app import build_app
from gateway.connections import make_runner
from gateway.keys import GATEWAY
from gateway.loader import Loaded, load

log = logging.getLogger("llm_gateway.server")


def install_fast_loop() -> None:
    try:
        import uvloop
    except ImportError:  # optional: Windows, or an install without it
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve_app(app: web.Application, host: str, port: int, *, reuse_port: bool = False) -> None:
    """Serve until SIGTERM/SIGINT, then stop accepting, drain in-flight requests for up to
    ``server.drain_timeout_s``, and close every provider session."""
    gw = app[GATEWAY]
    server = gw.config.server
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
    try:
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=1024)
        await site.start()
        settle_garbage_collector()
        sockets = runner.addresses
        log.info("llm-gateway listening on %s", ", ".join(f"http://{a[0]}:{a[1]}" for a in sockets))
        await stop.wait()
        log.info("draining (up to %.0fs)", server.drain_timeout_s)
        gw.draining = True
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


def serve(loaded: Loaded, config_path: str | None, host: str | None, port: int | None, workers: int | None) -> int:
    n = workers or loaded.config.server.workers
    if n <= 1:
        _run(with_workers(loaded, 1), host, port, reuse_port=False)
        return 0
    return _supervise(n, config_path, host, port)


def _supervise(n: int, config_path: str | None, host: str | None, port: int | None) -> int:
    """Start N worker processes on one port and pass SIGTERM/SIGINT on to them."""
    ctx = multiprocessing.get_context("spawn")
    path = str(Path(config_path).resolve()) if config_path else None
    procs = [ctx.Process(target=run_worker, args=(path, host, port, True, n), name=WORKER_NAME.format(i))
             for i in range(n)]
    stopping = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.is_alive() and p.pid is not None:
                p.terminate()

    # Installed before the workers start, so an early SIGTERM still reaches all of them.
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    # A worker stopped by the forwarded SIGTERM before its own handler was installed is a clean stop.
    clean = {0, -signal.SIGTERM} if stopping else {0}
    return 0 if all(p.exitcode in clean for p in procs) else 1


def configure_logging(level: int = logging.INFO) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
