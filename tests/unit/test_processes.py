"""When a process counts as gone: only once nothing of it can still hold a port or a file."""

from __future__ import annotations

import subprocess
import sys
import time

from mailpulse.processes import is_alive

# The main thread ends (pthread_exit) while a second thread sleeps on: the leader shows as a zombie, yet the
# process lives and keeps its files, as a killed process does while one thread finishes a disk write.
_LEADER_EXITS_FIRST = """
import ctypes, threading, time
threading.Thread(target=time.sleep, args=(2.0,)).start()
time.sleep(0.1)
ctypes.CDLL(None).pthread_exit(None)
"""


def _leader_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()[0]


def test_a_process_whose_leader_is_a_zombie_is_alive_while_another_thread_runs() -> None:
    proc = subprocess.Popen([sys.executable, "-c", _LEADER_EXITS_FIRST])
    try:
        deadline = time.monotonic() + 5
        while _leader_state(proc.pid) != "Z":
            assert time.monotonic() < deadline, "the leader thread never ended"
            time.sleep(0.02)
        assert is_alive(proc.pid)
        proc.wait(timeout=10)
        assert not is_alive(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_an_ended_child_is_not_alive() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while is_alive(proc.pid):
        assert time.monotonic() < deadline, "an ended child still counts as alive"
        time.sleep(0.02)
