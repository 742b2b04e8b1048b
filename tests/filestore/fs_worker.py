"""Child process for the filestore tests (run as a script, not collected by pytest).

usage: fs_worker.py ROLE ROOT AREAS_JSON ARGS...
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

from filestore import AreaConfig, FileStore, QuotaExceeded

MiB = 1 << 20


class SlowStream(io.RawIOBase):
    """Delivers ``ready_after`` bytes, says so on stdout, then hangs until killed."""

    def __init__(self, ready_after: int) -> None:
        self.left = ready_after

    def readable(self) -> bool:
        return True

    def readinto(self, buf):  # type: ignore[no-untyped-def]
        if self.left <= 0:
            print("ready", flush=True)
            time.sleep(30)  # the parent kills us long before this ends
            raise SystemExit("not killed")
        n = min(len(buf), self.left)
        buf[:n] = b"k" * n
        self.left -= n
        return n


def main() -> None:
    role, root, areas_json, *args = sys.argv[1:]
    areas = {k: AreaConfig(q, w) for k, (q, w) in json.loads(areas_json).items()}
    store = FileStore(Path(root), areas)

    if role == "hold":  # put that stops mid-stream and waits to be killed
        store.put(args[0], SlowStream(int(args[1])))

    elif role == "die-in-replace":  # SIGKILL inside the rename: before or after it
        real_replace = os.replace

        def replace(src, dst):  # type: ignore[no-untyped-def]
            if args[1] == "after":
                real_replace(src, dst)
            print("ready", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        os.replace = replace
        store.put(args[0], io.BytesIO(args[2].encode()))

    elif role == "fill":  # race another process for the quota
        area, count, size, seed = args[0], int(args[1]), int(args[2]), int(args[3])
        quota = areas[area].quota_bytes
        rng = random.Random(seed)
        created, refused = [], 0
        for i in range(count):
            data = rng.randbytes(size)
            try:
                obj = store.put(area, io.BytesIO(data), size=size if i % 2 else None)
                created.append(obj.size)
            except QuotaExceeded:
                refused += 1
            used = store.usage(area).used_bytes
            assert quota is None or used <= quota, f"usage {used} passed quota {quota}"
        print(json.dumps({"created": created, "refused": refused}))

    elif role == "append":  # rows of varied length, some longer than PIPE_BUF
        area, relpath, who, count = args[0], args[1], args[2], int(args[3])
        for i in range(count):
            payload = chr(ord("a") + i % 26) * ((i * 37) % 6000)
            store.append_named(area, relpath, f"{who},{i},{payload},end\n".encode())

    elif role == "named":  # same name many times: every write must get its own file
        area, relpath, who, count = args[0], args[1], args[2], int(args[3])
        used = [store.write_named(area, relpath, io.BytesIO(f"{who}-{i}".encode()))
                for i in range(count)]
        print(json.dumps(used))

    else:
        raise SystemExit(f"unknown role {role}")


if __name__ == "__main__":
    main()
