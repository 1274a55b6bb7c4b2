"""Stopping processes by pid, whether or not they are our children."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path


def is_alive(pid: int) -> bool:
    try:
        # Reap it if it is our child: a zombie still answers kill(pid, 0).
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A process that died and that its parent (another process) has not reaped yet: still answers kill(0).

    Every thread is looked at, not the leader alone: a killed process whose leader is already a zombie while
    other threads finish (one blocked on a disk write) still holds its files and its listening sockets.
    """
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False  # no /proc (not Linux): kill(0) is all there is
    states = [_state(task / "stat") for task in tasks]
    return all(state in ("Z", "X", None) for state in states)


def _state(stat_file: Path) -> str | None:
    try:
        stat = stat_file.read_text()
    except OSError:
        return None  # the thread ended between the listing and the read
    return stat.rpartition(")")[2].split()[0]


def terminate(pid: int, timeout: float) -> bool:
    """SIGTERM, wait up to ``timeout``, then SIGKILL. True if it stopped on SIGTERM."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return True
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    while is_alive(pid):
        time.sleep(0.05)
    return False


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
