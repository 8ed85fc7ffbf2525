"""Every raw file format the MegaMedical builders read, each written once; errors name the file.

``load(source, volumetric)`` reads one image or label: a ``Path`` is read by its suffix (NIfTI, MetaImage
``.mhd``/``.mha``, NRRD, a DICOM file or a folder holding one DICOM series, and every 2D format
``universeg_jax.io.read_2d_image`` knows: PNG, JPEG, BMP, GIF, PPM, TIFF); the odd sources are small
objects with a ``read`` method: slices stacked into a volume, channels stacked, an item of a NumPy or HDF5
array, a MATLAB variable, a COCO run-length mask from a JSON file, a contour or polygon filled into a mask,
frames of a video.

Volumes come back in the closest canonical (RAS) orientation when the format carries one (NIfTI, MetaImage,
NRRD, DICOM), as ``(X, Y, Z)`` or ``(X, Y, Z, C)``; 2D images as ``(H, W)`` or ``(H, W, C)`` in file order.
DICOM is parsed, rescaled and oriented by ``universeg_jax.dicom`` (pydicom, a core dependency), the code inference
reads series with. The libraries of the ``raw`` extra (pynrrd, h5py, av) are imported when a file needs them; a
missing one fails with a message naming the extra.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from universeg_datasets import readers
from universeg_jax import dicom, io

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".mhd", ".mha", ".nrrd", ".nhdr", ".dcm")
EXTRA = 'pip install "universeg-jax[raw]"'
# MetaImage element types -> numpy dtypes.
MET_TYPES = {
    "MET_CHAR": "i1", "MET_UCHAR": "u1", "MET_SHORT": "i2", "MET_USHORT": "u2", "MET_INT": "i4",
    "MET_UINT": "u4", "MET_LONG": "i4", "MET_ULONG": "u4", "MET_LONG_LONG": "i8", "MET_ULONG_LONG": "u8",
    "MET_FLOAT": "f4", "MET_DOUBLE": "f8",
}  # fmt: skip
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
STACK_AXIS = 2  # ``Slices`` stacks 2D files along this axis: (H, W, N)


def optional_import(module: str, what: str):
    """Import an optional reader library, or fail saying which extra installs it."""
    try:
        return __import__(module)
    except ImportError as err:
        raise ImportError(f"reading {what} needs the '{module}' package: {EXTRA}") from err


def suffix(path: Path) -> str:
    """Lower-case suffix, with ``.gz`` kept for ``.nii.gz``."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def load(source, volumetric: bool, like: np.ndarray | None = None) -> np.ndarray:
    """Read ``source`` (a ``Path`` or a source object); ``like`` is the image already read, for sources
    that need its shape (contours, polygons)."""
    if not isinstance(source, Path):
        return source.read(volumetric, like)
    if source.is_dir():
        return read_dicom_series(source, volumetric)
    kind = suffix(source)
    if kind not in VOLUME_SUFFIXES:
        return io.read_2d_image(source)
    if kind in (".nii", ".nii.gz"):
        return read_nifti(source, volumetric)
    if kind in (".mhd", ".mha"):
        return read_metaimage(source, volumetric)
    if kind in (".nrrd", ".nhdr"):
        return read_nrrd(source, volumetric)
    return read_dicom_series([source], volumetric)


def _checked(array: np.ndarray, path, volumetric: bool) -> np.ndarray:
    """Squeeze singleton axes of a 2D image stored as a volume; check the number of axes and finiteness."""
    if not volumetric:
        array = np.squeeze(array)
        if array.ndim not in (2, 3):
            raise ValueError(f"{path} has shape {array.shape}; expected a 2D image")
    elif array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if volumetric and array.ndim not in (3, 4):
        raise ValueError(f"{path} has shape {array.shape}; expected a 3D volume (X, Y, Z[, C])")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"{path} contains NaN or inf values")
    return array


def canonical(array: np.ndarray, affine_ras: np.ndarray) -> np.ndarray:
    """The first three axes of ``array`` reordered and flipped to the closest RAS orientation."""
    ornt = nib.orientations.io_orientation(affine_ras)
    return np.ascontiguousarray(nib.orientations.apply_orientation(array, ornt))


def read_nifti(path: Path, volumetric: bool) -> np.ndarray:
    if volumetric:
        return readers.read_volume(path)
    try:
        array = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    except Exception as err:
        raise ValueError(f"cannot read NIfTI file {path}: {err}") from err
    array = _checked(array, path, volumetric=False)
    return np.swapaxes(array, 0, 1)  # NIfTI stores (x, y): rows are y


def _affine(directions: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """4x4 affine whose column ``i`` is the world step of voxel axis ``i``."""
    affine = np.eye(4)
    affine[:3, : directions.shape[1]] = directions
    affine[:3, 3] = origin
    return affine


def read_metaimage(path: Path, volumetric: bool) -> np.ndarray:
    """A MetaImage: ``.mhd`` header with its ``.raw``/``.zraw`` data file, or ``.mha`` with the data inline."""
    path = readers.require_file(path, "MetaImage file")
    try:
        blob = path.read_bytes()
        header, offset = {}, 0
        for line in blob.split(b"\n"):
            offset += len(line) + 1
            key, _, value = line.decode("latin-1").partition("=")
            header[key.strip()] = value.strip()
            if key.strip() == "ElementDataFile":
                break
        dims = [int(v) for v in header["DimSize"].split()]
        dtype = np.dtype(MET_TYPES[header["ElementType"]])
        big = header.get("ElementByteOrderMSB", header.get("BinaryDataByteOrderMSB", "False")).lower() == "true"
        dtype = dtype.newbyteorder(">" if big else "<")
        data_file = header["ElementDataFile"]
        data = (
            blob[offset:]
            if data_file == "LOCAL"
            else readers.require_file(path.with_name(data_file), f"data file of MetaImage {path}").read_bytes()
        )
        if header.get("CompressedData", "False").lower() == "true":
            data = zlib.decompress(data)
        channels = int(header.get("ElementNumberOfChannels", "1"))
        count = int(np.prod(dims)) * channels
        array = np.frombuffer(data, dtype=dtype, count=count).reshape(
            tuple(reversed(dims)) + ((channels,) if channels > 1 else ())
        )
    except FileNotFoundError:
        raise
    except Exception as err:
        raise ValueError(f"cannot read MetaImage file {path}: {err}") from err
    array = array.astype(np.float32)
    if not volumetric:
        return _checked(array, path, volumetric=False)  # file order (rows, columns)
    ndim = len(dims)
    array = np.moveaxis(array, range(ndim), range(ndim)[::-1])  # (z, y, x) -> (x, y, z)
    spacing = np.array([float(v) for v in header.get("ElementSpacing", " ".join(["1"] * ndim)).split()])
    matrix = np.array([float(v) for v in header.get("TransformMatrix", "").split()] or np.eye(ndim).ravel())
    directions = matrix.reshape(ndim, ndim).T * spacing  # column i: direction of axis i
    origin = np.array([float(v) for v in header.get("Offset", header.get("Origin", "0 0 0")).split()])
    if ndim == 3:
        array = canonical(array, LPS_TO_RAS @ _affine(directions, origin))  # MetaImage world space is LPS
    return _checked(array, path, volumetric)


def read_nrrd(path: Path, volumetric: bool) -> np.ndarray:
    """An NRRD file (attached or detached data; raw, gzip, bzip2 or ascii encoding) via pynrrd."""
    path = readers.require_file(path, "NRRD file")
    nrrd = optional_import("nrrd", f"NRRD file {path}")
    try:
        array, header = nrrd.read(str(path))  # Fortran index order: (x, y, z[, ...])
    except Exception as err:
        raise ValueError(f"cannot read NRRD file {path}: {err}") from err
    array = np.asarray(array, dtype=np.float32)
    if volumetric and array.ndim >= 3 and header.get("space directions") is not None:
        rows = [np.asarray(d, float) for d in header["space directions"] if d is not None and not np.isnan(d).any()]
        if len(rows) == 3 and array.ndim == 3:
            origin = np.asarray(header.get("space origin", np.zeros(3)), float)
            affine = _affine(np.stack(rows, axis=1), origin)
            space = str(header.get("space", "left-posterior-superior")).lower()
            if space in ("left-posterior-superior", "lps"):
                affine = LPS_TO_RAS @ affine
            array = canonical(array, affine)
    elif not volumetric:
        array = np.squeeze(array)
        array = np.swapaxes(array, 0, 1) if array.ndim == 2 else array  # Fortran order (x, y): rows are y
    return _checked(array, path, volumetric)


def read_dicom_series(files, volumetric: bool, *, order: str = "position") -> np.ndarray:
    """One DICOM series: a folder (every file in it, recursively) or a list of files.

    Slices are sorted along the slice normal (``order="position"``, then reoriented to RAS) or by
    InstanceNumber (``order="instance"``, kept as ``(rows, columns, slices)``, for labels stored as separate
    slice files in that order). A folder holding several series is an error naming them. Parsing, rescaling,
    the position order and the affine are ``universeg_jax.dicom``'s (the inference's reader); unlike it, this
    reader takes the files a release ships as they are: missing geometry tags get defaults (axial orientation,
    1 mm pixels, origin 0), slices without positions fall back to InstanceNumber order, and uneven or tilted
    slice positions are not checked.
    """
    if isinstance(files, Path):
        folder = files
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
        if not files:
            raise FileNotFoundError(f"no DICOM files in folder {folder}")
    slices = [(path, dicom.read_file(readers.require_file(path, "DICOM file"))) for path in files]
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for _, ds in slices}
    if len(series) > 1:
        raise ValueError(f"{files[0].parent} holds {len(series)} DICOM series; expected one: {sorted(series)}")
    if not volumetric:
        if len(slices) != 1:
            raise ValueError(f"expected one DICOM image, got {len(slices)} in {files[0].parent}")
        return _checked(dicom.rescaled_pixels(*slices[0]), slices[0][0], volumetric=False)
    first = slices[0][1]
    orientation = np.asarray(getattr(first, "ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), float)
    normal = dicom.slice_normal(orientation)
    if order == "position" and all(hasattr(ds, "ImagePositionPatient") for _, ds in slices):
        slices = [slices[i] for i in dicom.position_order([ds.ImagePositionPatient for _, ds in slices], normal)]
    else:
        slices.sort(key=lambda s: (int(getattr(s[1], "InstanceNumber", 0) or 0), s[0].name))
    planes = [dicom.rescaled_pixels(path, ds) for path, ds in slices]
    shapes = {p.shape for p in planes}
    if len(shapes) != 1:
        raise ValueError(f"DICOM slices in {files[0].parent} have different sizes {sorted(shapes)}")
    array = np.stack(planes, axis=2)  # (rows, columns, slices)
    if order == "position":
        spacing = [float(v) for v in getattr(first, "PixelSpacing", [1, 1])]
        positions = [np.asarray(getattr(ds, "ImagePositionPatient", [0, 0, 0]), float) for _, ds in slices]
        gap = np.linalg.norm(positions[-1] - positions[0]) / max(len(positions) - 1, 1) or 1.0
        affine = dicom.ras_affine(orientation, spacing, normal * gap, positions[0])
        array = canonical(array, affine[:, [1, 0, 2, 3]])  # its first two axes swapped: the array is (rows, columns)
    return _checked(array, files[0].parent, volumetric)


# ---------------------------------------------------------------------------------------------- sources


@dataclasses.dataclass(frozen=True)
class Slices:
    """2D files stacked into a volume ``(H, W, N[, C])``, in the given order (slice-per-file datasets)."""

    files: tuple[Path, ...]

    def read(self, volumetric, like=None):
        planes = [io.read_2d_image(f) for f in self.files]
        shapes = {p.shape for p in planes}
        if len(shapes) != 1:
            raise ValueError(f"slices {self.files[0].parent}/... have different sizes {sorted(shapes)}")
        return np.stack(planes, axis=STACK_AXIS).astype(np.float32)

    def __str__(self):
        return f"{self.files[0]} ... ({len(self.files)} slices)"


def folder_slices(folder: Path) -> Slices:
    """The files of ``folder`` in name order as slices of one volume (e.g. CHAOS's ground-truth PNGs)."""
    files = tuple(sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")))
    if not files:
        raise FileNotFoundError(f"no slice files in folder {folder}")
    return Slices(files)


@dataclasses.dataclass(frozen=True)
class Dicom:
    """A DICOM series (folder or files) in an explicit slice order (see ``read_dicom_series``)."""

    files: Path | tuple[Path, ...]
    order: str = "position"

    def read(self, volumetric, like=None):
        return read_dicom_series(self.files, volumetric, order=self.order)

    def __str__(self):
        return str(self.files if isinstance(self.files, Path) else self.files[0].parent)


@dataclasses.dataclass(frozen=True)
class Channels:
    """Several files of one subject (one per modality) stacked on a last channel axis; same grid checked."""

    files: tuple[Any, ...]

    def read(self, volumetric, like=None):
        arrays = [load(f, volumetric) for f in self.files]
        for f, a in zip(self.files[1:], arrays[1:]):
            if a.shape != arrays[0].shape:
                raise ValueError(f"{f} has shape {a.shape}, which does not match {self.files[0]} {arrays[0].shape}")
        return np.stack(arrays, axis=-1)

    def __str__(self):
        return str(self.files[0])


@dataclasses.dataclass(frozen=True)
class ArrayItem:
    """Item ``index`` (optionally one ``channel``) of a ``.npy`` array, memory-mapped (PanNuke's folds)."""

    path: Path
    index: int
    channel: int | None = None

    def read(self, volumetric, like=None):
        array = cached("NumPy", self.path)
        if self.index >= len(array):
            raise ValueError(f"{self.path} has {len(array)} items; item {self.index} does not exist")
        item = np.asarray(array[self.index] if self.channel is None else array[self.index, ..., self.channel])
        return item.astype(np.float32)

    def __str__(self):
        return f"{self.path}[{self.index}]"


def cached(kind: str, path: Path):
    """The opened contents of a file read by many items (NumPy memory map, HDF5 handle, parsed JSON), kept
    while the file is unchanged on disk (same modification time and size)."""
    stat = readers.require_file(path, f"{kind} file").stat()
    return _open_cached(kind, path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _open_cached(kind: str, path: Path, *_):
    try:
        if kind == "NumPy":
            return np.load(path, mmap_mode="r", allow_pickle=False)
        if kind == "HDF5":
            return optional_import("h5py", f"HDF5 file {path}").File(path, "r")
        return json.loads(path.read_text())
    except ImportError:
        raise
    except Exception as err:
        raise ValueError(f"cannot read {kind} file {path}: {err}") from err


def npy_length(path: Path) -> int:
    return len(cached("NumPy", path))


@dataclasses.dataclass(frozen=True)
class Hdf5Item:
    """Item ``index`` of dataset ``key`` in an HDF5 file (TUCC's ``dataset.hdf5``)."""

    path: Path
    key: str
    index: int

    def read(self, volumetric, like=None):
        data = hdf5_dataset(self.path, self.key)
        if self.index >= len(data):
            raise ValueError(f"{self.path}:{self.key} has {len(data)} items; item {self.index} does not exist")
        return np.asarray(data[self.index], dtype=np.float32)

    def __str__(self):
        return f"{self.path}:{self.key}[{self.index}]"


def hdf5_dataset(path: Path, key: str):
    handle = cached("HDF5", path)
    if key not in handle:
        raise ValueError(f"HDF5 file {path} has no dataset {key!r} (has {sorted(handle)})")
    return handle[key]


@dataclasses.dataclass(frozen=True)
class MatVariable:
    """One variable of a MATLAB ``.mat`` file (CoNSeP's ``type_map``, HMC-QU's ``predicted``); ``moveaxis``
    moves a leading frame axis last."""

    path: Path
    key: str
    frames_first: bool = False

    def read(self, volumetric, like=None):
        array = read_mat(self.path, self.key).astype(np.float32)
        return np.moveaxis(array, 0, -1) if self.frames_first else array

    def __str__(self):
        return f"{self.path}:{self.key}"


def read_mat(path: Path, key: str) -> np.ndarray:
    import scipy.io

    readers.require_file(path, "MATLAB file")
    try:
        variables = scipy.io.loadmat(path)
    except Exception as err:
        raise ValueError(f"cannot read MATLAB file {path}: {err}") from err
    if key not in variables:
        raise ValueError(f"MATLAB file {path} has no variable {key!r}")
    return np.asarray(variables[key])


@dataclasses.dataclass(frozen=True)
class RleMask:
    """A COCO run-length mask ``{"size": [h, w], "counts": ...}`` at ``keys`` inside a JSON file."""

    path: Path
    keys: tuple[str, ...]

    def read(self, volumetric, like=None):
        node = cached("JSON", self.path)
        try:
            for key in self.keys:
                node = node[key]
            return decode_rle(node).astype(np.float32)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{self.path}: no valid RLE mask at {'/'.join(self.keys)}: {err}") from err

    def __str__(self):
        return f"{self.path}:{'/'.join(self.keys)}"


def read_json(path: Path):
    return cached("JSON", path)


def decode_rle(rle: dict) -> np.ndarray:
    """COCO run-length encoding (compressed string or list of counts, column-major) -> ``(h, w)`` uint8."""
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = _rle_string_counts(counts)
    flat = np.zeros(height * width, np.uint8)
    position, value = 0, 0
    for count in counts:
        if position + count > flat.size:
            raise ValueError("run lengths exceed the mask size")
        flat[position : position + count] = value
        position, value = position + count, 1 - value
    return flat.reshape(width, height).T


def _rle_string_counts(text: str) -> list[int]:
    """Counts of a compressed COCO RLE string (LEB128-like, 5 bits per character, deltas from the 2nd back)."""
    counts, index = [], 0
    while index < len(text):
        value, shift, more = 0, 0, True
        while more:
            char = ord(text[index]) - 48
            value |= (char & 0x1F) << (5 * shift)
            more = bool(char & 0x20)
            index += 1
            shift += 1
            if not more and char & 0x10:
                value |= -1 << (5 * shift)
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def encode_rle(mask: np.ndarray) -> dict:
    """Inverse of ``decode_rle`` (compressed string form), for fake data and round-trip tests."""
    flat = np.asarray(mask, np.uint8).T.ravel()
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1] if flat.size else 0]])))
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    if counts and flat.size and counts[-1] == 0:
        counts.pop()
    text = []
    for i, count in enumerate(counts):
        value = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            char = value & 0x1F
            value >>= 5
            more = not ((value == 0 and not char & 0x10) or (value == -1 and char & 0x10))
            text.append(chr((char | (0x20 if more else 0)) + 48))
    return {"size": list(mask.shape), "counts": "".join(text)}


@dataclasses.dataclass(frozen=True)
class Polygon:
    """A filled polygon of ``(x, y)`` pixel points (or a text file of ``x y`` lines, Sunnybrook's contours),
    on the grid of the image it labels."""

    points: tuple[tuple[float, float], ...] = ()
    path: Path | None = None
    name: str = ""

    def read(self, volumetric, like=None):
        points = np.asarray(self.points, float) if self.path is None else read_points(self.path)
        if like is None:
            raise ValueError(f"{self}: a polygon label needs the image it belongs to")
        return fill_polygon(points, like.shape[:2], str(self)).astype(np.float32)

    def __str__(self):
        return str(self.path) if self.path else self.name


def read_points(path: Path) -> np.ndarray:
    readers.require_file(path, "contour file")
    try:
        points = np.loadtxt(path, dtype=float, ndmin=2)
    except Exception as err:
        raise ValueError(f"cannot read contour file {path}: {err}") from err
    if points.shape[1] != 2:
        raise ValueError(f"contour file {path} must hold 'x y' lines, got {points.shape[1]} columns")
    return points


def fill_polygon(points: np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    """Mask of the pixels whose centres lie inside the closed polygon ``points`` (``(N, 2)`` x, y)."""
    if len(points) < 3:
        raise ValueError(f"{name}: a polygon needs at least 3 points, got {len(points)}")
    from matplotlib.path import Path as MplPath

    rows, cols = np.mgrid[: shape[0], : shape[1]]
    centres = np.stack([cols.ravel(), rows.ravel()], axis=1).astype(float)
    return MplPath(points).contains_points(centres, radius=1e-9).reshape(shape)


@dataclasses.dataclass(frozen=True)
class TiffPage:
    """Page ``index`` of a multi-page TIFF (ISBI 2012's train-volume.tif)."""

    path: Path
    index: int

    def read(self, volumetric, like=None):
        import tifffile

        readers.require_file(self.path, "TIFF file")
        try:
            return np.asarray(tifffile.imread(self.path, key=self.index), dtype=np.float32)
        except Exception as err:
            raise ValueError(f"cannot read page {self.index} of TIFF file {self.path}: {err}") from err

    def __str__(self):
        return f"{self.path}[page {self.index}]"


def tiff_pages(path: Path) -> int:
    import tifffile

    readers.require_file(path, "TIFF file")
    try:
        with tifffile.TiffFile(path) as tif:
            return len(tif.pages)
    except Exception as err:
        raise ValueError(f"cannot read TIFF file {path}: {err}") from err


@dataclasses.dataclass(frozen=True)
class Video:
    """Frames of a video (AVI via PyAV) as grey levels: ``frames`` given -> ``(H, W)`` of one frame or
    ``(H, W, T)`` of several; ``frames=None`` -> every frame; ``crop_square`` cuts the centred square;
    ``size`` resizes the frames (to the grid of labels drawn on a resized copy, HMC-QU)."""

    path: Path
    frames: int | tuple[int, ...] | None = None
    crop_square: bool = False
    size: tuple[int, int] | None = None

    def read(self, volumetric, like=None):
        wanted = (self.frames,) if isinstance(self.frames, int) else self.frames
        frames = read_video(self.path, wanted)
        if self.crop_square:
            height, width = frames.shape[1:3]
            side = min(height, width)
            top, left = (height - side) // 2, (width - side) // 2
            frames = frames[:, top : top + side, left : left + side]
        if self.size is not None:
            from universeg_jax import preprocess

            frames = preprocess.resize_image(frames, self.size)
        return frames[0] if isinstance(self.frames, int) else np.moveaxis(frames, 0, -1)

    def __str__(self):
        return f"{self.path} (frame {self.frames})" if isinstance(self.frames, int) else str(self.path)


def read_video(path: Path, frames: Sequence[int] | None = None) -> np.ndarray:
    """``(T, H, W)`` float32 grey frames of a video file; only ``frames`` (indices) when given."""
    av = optional_import("av", f"video file {path}")
    readers.require_file(path, "video file")
    wanted = None if frames is None else set(frames)
    out = {}
    try:
        with av.open(str(path)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if wanted is None or index in wanted:
                    out[index] = frame.to_ndarray(format="gray").astype(np.float32)
                if wanted is not None and len(out) == len(wanted):
                    break
    except Exception as err:
        raise ValueError(f"cannot read video file {path}: {err}") from err
    missing = sorted(set(wanted or ()) - set(out))
    if missing or not out:
        raise ValueError(f"video file {path} has no frame(s) {missing or 'at all'}")
    return np.stack([out[i] for i in sorted(out)])
