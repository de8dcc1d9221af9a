"""Which process owns a ``running`` run, and whether it still lives.

A run being measured records its owner: host, pid and the process's start time. The start time is
what tells a live owner from a pid the system has since given to another process: a resume checks
all three and refuses while the owner lives (two processes would measure the same cells), and takes
over a run whose owner is gone (killed, crashed, or its pid reused). Owners on another host cannot
be checked from here; they count as alive unless the resume is forced.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone

#: Start times read twice for one process agree to the clock tick (10 ms); anything further apart
#: is another process.
SAME_START_S = 0.05


@dataclass(frozen=True)
class Owner:
    """The process measuring a run."""

    host: str | None
    pid: int | None
    #: The process's start time (seconds since the epoch); ``None`` in stores written before it was kept.
    started: float | None = None

    @classmethod
    def current(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), process_start(os.getpid()))

    def alive(self) -> bool | None:
        """True while the owner runs, False once it is gone, None when it cannot be told (another
        host, or no pid recorded)."""
        if self.pid is None or self.host != socket.gethostname():
            return None
        if os.name == "nt":  # os.kill(pid, 0) would terminate the process there
            return None
        try:
            os.kill(int(self.pid), 0)
        except ProcessLookupError:
            return False
        except OSError:  # PermissionError: alive, owned by another user
            pass
        if self.started is None:
            return True  # a store without start times: the pid is all there is
        now = process_start(int(self.pid))
        return now is not None and abs(now - self.started) <= SAME_START_S

    def describe(self) -> str:
        since = ""
        if self.started is not None:
            since = ", started " + datetime.fromtimestamp(self.started, timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        return f"pid {self.pid} on {self.host}{since}"


def process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), or None when it does not exist."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return None
