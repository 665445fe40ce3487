"""Reading a file a user names: a regular file of bounded size, in UTF-8, or one
ConfigError line saying why not (/dev/zero or a FIFO would be read for ever)."""

from __future__ import annotations

import stat
from pathlib import Path

from sqla_bench.base.errors import ConfigError


def read_text(path: Path, max_bytes: int) -> str:
    """``path``'s text, or a one-line ConfigError."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"cannot read {path}: not a regular file")
        if info.st_size > max_bytes:
            raise ConfigError(
                f"cannot read {path}: {info.st_size:,} bytes; sqla-bench reads files of at "
                f"most {max_bytes:,}"
            )
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not UTF-8 text (byte {error.start})") from None
