"""The embedded default corpus: the running Python's own standard-library source.

It needs no download and no file from the user, so a first run works on any
machine. Files are read in sorted relative-path order, so the same Python gives
the same text. Tests, site-packages, IDLE, lib2to3 and other bundled apps are
left out, and so are files with non-ASCII characters, which keeps a character
vocabulary under 128 tokens (it fits every char preset's vocab_size of 256).
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

DEFAULT_MAX_BYTES = (
    8 << 20
)  # 8 MiB: about 8M character tokens, plenty for 3M-50M parameter runs on CPU
_SKIP_DIRS = frozenset(
    {
        "site-packages",
        "dist-packages",
        "test",
        "tests",
        "idlelib",
        "lib2to3",
        "ensurepip",
        "turtledemo",
        "__pycache__",
        "tkinter",
    }
)


def stdlib_dir() -> Path:
    """The standard library folder of the running interpreter."""
    return Path(sysconfig.get_paths()["stdlib"])


def default_corpus_files() -> list[Path]:
    """Every .py file of the corpus, in the fixed order it is read."""
    root = stdlib_dir()
    files = [
        p for p in root.rglob("*.py") if not (set(p.relative_to(root).parts[:-1]) & _SKIP_DIRS)
    ]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def read_default_corpus(max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The corpus text: ASCII files joined with a blank line, cut at `max_bytes`."""
    parts: list[str] = []
    total = 0
    for path in default_corpus_files():
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if not data.isascii():
            continue
        parts.append(data.decode("ascii"))
        total += len(data) + 2
        if total >= max_bytes:
            break
    return "\n\n".join(parts)[:max_bytes]


def corpus_fingerprint() -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of every candidate file: changes when the corpus would change."""
    out = []
    for path in default_corpus_files():
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((str(path), st.st_size, st.st_mtime_ns))
    return out
