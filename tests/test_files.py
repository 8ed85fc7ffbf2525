"""Shared file helpers: the cache directory and file checksums."""

import hashlib
from pathlib import Path

from universeg_jax import files


def test_cache_dir_reads_the_environment_with_home_expanded_and_empty_as_unset(monkeypatch):
    monkeypatch.setenv("UNIVERSEG_JAX_CACHE", "~/elsewhere")
    assert files.cache_dir() == Path.home() / "elsewhere"
    monkeypatch.setenv("UNIVERSEG_JAX_CACHE", "")
    assert files.cache_dir() == Path.home() / ".cache" / "universeg_jax"
    monkeypatch.delenv("UNIVERSEG_JAX_CACHE")
    assert files.cache_dir() == Path.home() / ".cache" / "universeg_jax"


def test_sha256_of_a_file_larger_than_one_block(tmp_path):
    data = bytes(range(256)) * 5000  # 1.2 MB: two blocks
    (tmp_path / "f").write_bytes(data)
    assert files.sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()
