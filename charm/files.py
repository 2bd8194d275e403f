"""Writing a file whole or not at all: every file the charm puts on the machine.

No `ops` here. A reader (the daemon, systemd, the next hook) sees the old file or the new
one, never half of either, and a crash in between leaves no temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes, mode: int, *, dir_mode: int = 0o755) -> None:
    """Write `data` to `path` with file mode `mode`, replacing it in one rename.

    Missing parent directories are made with `dir_mode` (0o700 for what only root reads).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=dir_mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_private(path: Path, data: bytes) -> None:
    """Write a file only root reads (a key, a record of what was carried over)."""
    write_atomically(path, data, 0o600, dir_mode=0o700)
