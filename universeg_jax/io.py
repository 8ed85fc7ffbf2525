"""Image, label, NIfTI and DICOM files: finding, pairing, reading and atomic writing (pictures: ``overlay``).

Formats: PNG, JPEG, BMP, TIFF (2D), NIfTI (``.nii``, ``.nii.gz``; 2D or 3D) and DICOM series (a folder of
``.dcm`` files, read by ``universeg_jax.dicom``; DICOM SEG files as labels). Every read error names the file;
every write goes to a temporary name in the target folder and is renamed into place, so a failure never leaves a
half-written file. :func:`read` reads a file once and keeps what writing its outputs needs (header, affine,
DICOM headers).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from universeg_jax import preprocess as pp
from universeg_jax.files import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".nii", ".nii.gz")
TIFF_SUFFIXES = (".tif", ".tiff")
# Palette, bilevel and grey+alpha images become grey levels (a palette's colours through Pillow's luma, so a grey
# palette keeps its values and a palette label stays one channel); other colour spaces become RGB.
TO_GRAY_MODES = ("P", "PA", "1", "LA")
TO_RGB_MODES = ("CMYK", "YCbCr", "LAB", "HSV")
# Label files may carry one of these after the image's name: "case1.png" pairs with "case1_mask.png".
LABEL_NAME_SUFFIXES = ("_mask", "_masks", "_label", "_labels", "_seg", "_gt")


def suffix(path) -> str:
    """Lower-case extension, with ``.nii.gz`` as one suffix."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def stem(path) -> str:
    """File name without its extension (``.nii.gz`` counted as one); a folder's (DICOM series) whole name."""
    name = Path(path).name
    if Path(path).is_dir():
        return name
    return name[: len(name) - len(suffix(path))]


def is_nifti(path) -> bool:
    return suffix(path) in (".nii", ".nii.gz")


def is_dicom_seg(path) -> bool:
    """A DICOM file whose modality is SEG (a segmentation, used as a label)."""
    from universeg_jax import dicom

    if not Path(path).is_file() or not dicom.is_dicom_file(path):
        return False
    import pydicom

    try:
        return getattr(pydicom.dcmread(path, stop_before_pixels=True), "Modality", "") == "SEG"
    except Exception:
        return False


def list_images(paths: Sequence, what: str) -> list[Path]:
    """The supported image files among ``paths`` (files, or folders read non-recursively), sorted by name.

    A folder that holds DICOM image files is itself one entry (a DICOM series, or several); so is each of its
    sub-folders that does. DICOM SEG files are entries of their own (labels).
    """
    from universeg_jax import dicom

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            segs = [f for f in sorted(p.iterdir()) if f.is_file() and dicom.is_dicom_file(f) and is_dicom_seg(f)]
            images = [f for f in dicom.dicom_files(p) if f not in segs]
            if images:
                found.append(p)
            found.extend(segs)
            found.extend(sorted(f for f in p.iterdir() if f.is_file() and suffix(f) in IMAGE_SUFFIXES))
            found.extend(
                sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith(".") and dicom.has_dicom(d))
            )
        elif p.is_file():
            if suffix(p) not in IMAGE_SUFFIXES and not dicom.is_dicom_file(p):
                raise ValueError(
                    f"{what}: {p} is not a supported image file ({', '.join(IMAGE_SUFFIXES)}, "
                    "or a folder of DICOM files)"
                )
            found.append(p)
        else:
            raise FileNotFoundError(f"{what}: {p} does not exist")
    if not found:
        raise ValueError(
            f"{what}: no image files ({', '.join(IMAGE_SUFFIXES)}) or DICOM series in {', '.join(map(str, paths))}"
        )
    return found


def _label_key(path: Path) -> str:
    key = stem(path)
    for tail in LABEL_NAME_SUFFIXES:
        if key.lower().endswith(tail) and len(key) > len(tail):
            return key[: -len(tail)]
    return key


def pair_images_labels(images: Sequence[Path], labels: Sequence[Path]) -> list[tuple[Path, Path]]:
    """Match each image with the label of the same name (optionally ending in ``_mask``, ``_label``, ``_seg``...).

    Every image needs exactly one label and every label one image; otherwise the error lists the strays.
    """
    by_key: dict[str, list[Path]] = {}
    for lab in labels:
        by_key.setdefault(_label_key(lab), []).append(lab)
    image_keys = [stem(i) for i in images]
    problems = []
    duplicates = {k for k in image_keys if image_keys.count(k) > 1}
    if duplicates:
        problems.append(f"several images share the name(s) {sorted(duplicates)}")
    shared = {k: v for k, v in by_key.items() if len(v) > 1}
    problems += [f"label name {k!r} matches several files: {list(map(str, v))}" for k, v in shared.items()]
    unlabelled = [str(i) for i, k in zip(images, image_keys) if k not in by_key]
    orphans = [str(p) for k, v in by_key.items() if k not in image_keys for p in v]
    if unlabelled:
        problems.append(f"support images without a label: {unlabelled}")
    if orphans:
        problems.append(f"support labels without an image: {orphans}")
    if problems:
        raise ValueError("cannot pair support images with labels by name: " + "; ".join(problems))
    return [(i, by_key[k][0]) for i, k in zip(images, image_keys)]


def load_nifti(path):
    """The nibabel image of a NIfTI file (header and affine kept), with a clear error if it is unreadable.

    Its voxels are read once, here, and cached in the image (``get_fdata``), so a truncated file fails now."""
    import nibabel as nib

    path = _existing(path)
    try:
        image = nib.load(str(path))
        image.get_fdata(dtype=np.float32)  # force a full read: a truncated file fails here, not later
    except Exception as err:
        raise ValueError(f"cannot read NIfTI file {path}: {err}") from None
    return image


@dataclasses.dataclass
class Loaded:
    """One file (or DICOM series) read once: ``array`` as stored (2D image, or a volume in its stored voxel order),
    ``affine`` for volumes, ``reference`` (the nibabel image outputs are written with) and, for DICOM, ``series``."""

    path: Path
    name: str
    array: np.ndarray
    volume: bool
    affine: np.ndarray | None = None
    reference: object = None
    series: object = None

    @property
    def nifti_output(self) -> bool:
        """Outputs are NIfTI (NIfTI and DICOM sources)."""
        return self.reference is not None


def read(path, *, what: str = "image") -> list[Loaded]:
    """Read a file, or a DICOM folder (one entry per series), once.

    NIfTI voxels are float32 (as the dataset builders read them) for images and exact for labels
    (``what="label"``); 2D files as :func:`read_image` / :func:`read_label`.
    """
    from universeg_jax import dicom

    path = Path(path)
    if path.is_dir():
        return [
            Loaded(path, s.name, np.asarray(s.image.dataobj), True, s.image.affine, s.image, s)
            for s in dicom.read_folder(path, what=f"{what} {path}")
        ]
    if is_nifti(path):
        image = _load_nifti_once(path)
        try:
            array = np.asarray(image.dataobj, np.float32) if what == "image" else np.asanyarray(image.dataobj)
        except Exception as err:
            raise ValueError(f"cannot read NIfTI file {path}: {err}") from None
        shape = list(array.shape)
        while len(shape) > 2 and shape[-1] == 1:
            shape.pop()
        return [Loaded(path, stem(path), array, len(shape) == 3, image.affine, image)]
    array = read_label(path) if what == "label" else read_image(path)
    return [Loaded(path, stem(path), array, False)]


def read_support_pair(image_path, label_path) -> tuple[Loaded, np.ndarray]:
    """A support image and its label, each read once and checked against each other (the ``segment`` command and
    the app read support pairs with this).

    The image is a file or a folder of one DICOM series; its label a label file, or a DICOM SEG file for a DICOM
    series. Returns the image and the label array; a 2D NIfTI pair as ``(H, W)`` arrays.
    """
    from universeg_jax import dicom

    image_path, label_path = Path(image_path), Path(label_path)
    loaded = read(image_path, what="image")
    if len(loaded) != 1:
        raise ValueError(
            f"support {image_path} holds {len(loaded)} DICOM series "
            f"({', '.join(x.name for x in loaded)}): put each series in its own folder with its label"
        )
    (image,) = loaded
    if image.series is not None and dicom.is_dicom_file(label_path) and not label_path.is_dir():
        label = dicom.read_seg(label_path, image.series)
    else:
        labels = read(label_path, what="label")
        if len(labels) != 1:
            raise ValueError(f"the label {label_path} of support {image_path} holds {len(labels)} DICOM series")
        label = labels[0].array
    if np.shape(image.array)[:2] != np.shape(label)[:2] or (
        image.volume and np.shape(image.array)[:3] != np.shape(label)[:3]
    ):
        raise ValueError(
            f"support image {image_path} has shape {np.shape(image.array)} but its label {label_path} "
            f"has shape {np.shape(label)}"
        )
    if image.reference is not None and not image.volume:  # a 2D NIfTI image: (H, W) or (H, W, 1)
        image = dataclasses.replace(image, array=image.array.reshape(image.array.shape[:2]))
        label = np.asarray(label).reshape(np.shape(label)[:2])
    return image, label


def _load_nifti_once(path):
    import nibabel as nib

    path = _existing(path)
    try:
        return nib.load(str(path))
    except Exception as err:
        raise ValueError(f"cannot read NIfTI file {path}: {err}") from None


def is_volume(path) -> bool:
    """Whether a NIfTI file holds a 3D volume (trailing singleton axes ignored) rather than a 2D image."""
    import nibabel as nib

    try:
        shape = list(nib.load(str(path)).shape)
    except Exception as err:
        raise ValueError(f"cannot read NIfTI file {path}: {err}") from None
    while len(shape) > 2 and shape[-1] == 1:
        shape.pop()
    return len(shape) == 3


def read_image(path) -> np.ndarray:
    """The pixel (or voxel) array of a supported file: NIfTI as stored, the 2D formats as :func:`read_2d_image`
    reads them (grey, RGB or RGBA)."""
    path = _existing(path)
    kind = suffix(path)
    if kind in (".nii", ".nii.gz"):
        image = load_nifti(path)
        return np.asanyarray(image.dataobj)
    if kind not in IMAGE_SUFFIXES:
        raise ValueError(
            f"cannot read image {path}: unsupported extension {kind!r}; use one of {', '.join(IMAGE_SUFFIXES)}"
        )
    array = read_2d_image(path)
    if array.ndim == 3 and array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{path} has shape {array.shape}: a stack, not a 2D image; store volumes as NIfTI")
    return array


def read_2d_image(path) -> np.ndarray:
    """A 2D image file (PNG, JPEG, BMP, GIF, PPM, TIFF, optionally gzipped) as ``(H,W)`` or ``(H,W,C)``, singleton
    axes dropped: the one reader of 2D files for inference and the dataset builders.

    Palette (``P``, ``PA``), bilevel (``1``, as 0/255) and grey+alpha images become grey levels
    (``TO_GRAY_MODES``); CMYK, YCbCr, LAB and HSV become RGB; other modes are kept as stored.
    """
    import gzip

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        name = path.name[:-3] if path.suffix == ".gz" else path.name
        array = _read_tiff(data) if name.lower().endswith(TIFF_SUFFIXES) else _read_pillow(data)
    except Exception as err:
        raise ValueError(f"cannot read image file {path}: {err}") from err
    array = np.squeeze(array)
    if array.ndim not in (2, 3) or array.size == 0:
        raise ValueError(f"image file {path} has shape {array.shape}; expected (H, W) or (H, W, C)")
    return array


def _read_pillow(data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        if image.mode in TO_GRAY_MODES:
            image = image.convert("L")
        elif image.mode in TO_RGB_MODES:
            image = image.convert("RGB")
        return np.asarray(image)


def _read_tiff(data: bytes) -> np.ndarray:
    """tifffile reads every TIFF layout, but decodes compressed ones (LZW, Deflate, JPEG) only with the optional
    'imagecodecs' package; Pillow (a core dependency) decodes those instead (DRIVE's images are LZW-compressed)."""
    import io

    import tifffile

    try:
        return tifffile.imread(io.BytesIO(data))
    except ValueError as err:
        if "imagecodecs" not in str(err):
            raise
    return _read_pillow(data)


def read_label(path) -> np.ndarray:
    """A label file as an array. JPEG is lossy, so a JPEG label is thresholded at half range into a binary mask."""
    array = read_image(path)
    if suffix(path) in (".jpg", ".jpeg"):
        warnings.warn(f"{path}: JPEG labels are lossy; using it as a binary mask (>= 128)", UserWarning, stacklevel=2)
        return pp.to_grayscale(array) >= 128
    return array


def _existing(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    return path


def mask_suffix(path) -> str:
    """The suffix a mask for the image at ``path`` is written with: the same format, but PNG instead of JPEG and
    NIfTI (``.nii.gz``) for a DICOM series."""
    if Path(path).is_dir():
        return ".nii.gz"
    kind = suffix(path)
    return ".png" if kind in (".jpg", ".jpeg") else kind


def write_array(path, array: np.ndarray, *, reference=None) -> Path:
    """Write ``array`` to ``path`` in the format of its extension, atomically.

    NIfTI outputs need ``reference`` (the nibabel image the array was computed from): its affine and header are
    kept and the data type follows ``array``. PNG takes uint8/uint16 2D arrays (or RGB uint8), BMP uint8.
    """
    path = Path(path)
    kind = suffix(path)
    array = np.asarray(array)
    with atomic_path(path) as tmp:
        if kind in (".nii", ".nii.gz"):
            if reference is None:
                raise ValueError(f"writing {path}: a NIfTI output needs the reference image for its affine and header")
            header = reference.header.copy()
            header.set_data_dtype(array.dtype)
            image = type(reference)(array, reference.affine, header)
            image.header.set_slope_inter(1, 0)
            image.to_filename(str(tmp))
        elif kind in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(str(tmp), array, photometric="minisblack")  # masks and maps are never RGB
        elif kind in (".png", ".bmp"):
            from PIL import Image

            Image.fromarray(array).save(tmp, format=kind[1:].upper())
        else:
            raise ValueError(f"cannot write {path}: unsupported extension {kind!r}")
    return path
