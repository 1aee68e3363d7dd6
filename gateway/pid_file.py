"""The PID file of a running server, and ``llm-gateway reload``: signal the server through it."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from types import TracebackType


class PidFile:
    """Context manager: writes this process's PID to ``path`` (if any) and removes the file on
    exit, unless another server has written its own PID there since."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self.pid = os.getpid()

    def __enter__(self) -> PidFile:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + f".{self.pid}.tmp")
            tmp.write_text(f"{self.pid}\n", encoding="ascii")
            tmp.replace(self.path)  # never a half-written file for `reload` to read
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self.path is None:
            return
        with contextlib.suppress(OSError, ValueError):
            if int(self.path.read_text(encoding="ascii").strip()) == self.pid:
                self.path.unlink()


def signal_reload(path: str | Path) -> int:
    """Send the reload signal (SIGHUP) to the server whose PID ``path`` holds; returns the PID.
    Raises ``LookupError`` with a message for the user when that is not possible."""
    sig = getattr(signal, "SIGHUP", None)
    if sig is None:
        raise LookupError("configuration reload needs SIGHUP, which this platform does not have")
    try:
        pid = int(Path(path).read_text(encoding="ascii").strip())
    except FileNotFoundError:
        raise LookupError(f"no PID file at {path}: is the gateway running (with this pid_file)?") from None
    except (OSError, ValueError) as exc:
        raise LookupError(f"cannot read a PID from {path}: {exc}") from None
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        raise LookupError(f"no process {pid} (from {path}): the gateway is not running") from None
    except PermissionError:
        raise LookupError(f"not allowed to signal process {pid} (from {path})") from None
    return pid
