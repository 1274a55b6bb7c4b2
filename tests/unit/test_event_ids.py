"""Event ids: 128 random bits each, never handed out twice, by threads or by a forked child."""

from __future__ import annotations

import os
import re
import threading

from schemas.events import IDS_PER_DRAW, new_event_id


def test_ids_are_32_hex_characters_and_unique_across_many_draws() -> None:
    ids = [new_event_id() for _ in range(IDS_PER_DRAW * 40 + 7)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_threads_never_share_an_id() -> None:
    seen: list[list[str]] = []

    def draw() -> None:
        seen.append([new_event_id() for _ in range(IDS_PER_DRAW * 3)])

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for ids in seen for i in ids]
    assert len(every) == 4 * IDS_PER_DRAW * 3 and len(set(every)) == len(every)


def test_a_forked_child_does_not_reuse_the_ids_its_parent_drew() -> None:
    new_event_id()  # the parent holds a draw with ids left in it
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.close(read)
        os.write(write, "".join(new_event_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 4096):
        data += chunk
    os.close(read)
    os.waitpid(child, 0)
    child_ids = {data[i : i + 32].decode() for i in range(0, len(data), 32)}
    parent_ids = {new_event_id() for _ in range(IDS_PER_DRAW)}
    assert len(child_ids) == 10 and not child_ids & parent_ids
