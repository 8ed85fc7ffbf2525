"""Image, label and NIfTI files: finding, pairing, reading, atomic writing, and overlay pictures.

Formats: PNG, JPEG, BMP, TIFF (2D) and NIfTI (``.nii``, ``.nii.gz``; 2D or 3D). Every read error names the file;
every write goes to a temporary name in the target folder and is renamed into place, so a failure never leaves a
half-written file.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from universeg_jax import preprocess as pp
from universeg_jax.files import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".nii", ".nii.gz")
PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
# Label files may carry one of these after the image's name: "case1.png" pairs with "case1_mask.png".
LABEL_NAME_SUFFIXES = ("_mask", "_masks", "_label", "_labels", "_seg", "_gt")
# Outline colours for label 1, 2, ... of an overlay (then repeating).
PALETTE = np.array(
    [(255, 64, 64), (64, 160, 255), (255, 200, 0), (200, 80, 255), (0, 220, 200), (255, 128, 0)], np.uint8
)
SUPPORT_COLOUR = np.array((0, 230, 0), np.uint8)


def suffix(path) -> str:
    """Lower-case extension, with ``.nii.gz`` as one suffix."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def stem(path) -> str:
    """File name without its extension (``.nii.gz`` counted as one)."""
    name = Path(path).name
    return name[: len(name) - len(suffix(path))]


def is_nifti(path) -> bool:
    return suffix(path) in (".nii", ".nii.gz")


def list_images(paths: Sequence, what: str) -> list[Path]:
    """The supported image files among ``paths`` (files, or folders read non-recursively), sorted by name."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(f for f in p.iterdir() if f.is_file() and suffix(f) in IMAGE_SUFFIXES))
        elif p.is_file():
            if suffix(p) not in IMAGE_SUFFIXES:
                raise ValueError(f"{what}: {p} is not a supported image file ({', '.join(IMAGE_SUFFIXES)})")
            found.append(p)
        else:
            raise FileNotFoundError(f"{what}: {p} does not exist")
    if not found:
        raise ValueError(f"{what}: no image files ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, paths))}")
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
    """The nibabel image of a NIfTI file (header and affine kept), with a clear error if it is unreadable."""
    import nibabel as nib

    path = _existing(path)
    try:
        image = nib.load(str(path))
        image.get_fdata(dtype=np.float32)  # force a full read: a truncated file fails here, not later
    except Exception as err:
        raise ValueError(f"cannot read NIfTI file {path}: {err}") from None
    return image


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
    """The pixel (or voxel) array of a supported file. TIFF and Pillow formats are 2D (optionally RGB/RGBA)."""
    path = _existing(path)
    kind = suffix(path)
    if kind in (".nii", ".nii.gz"):
        image = load_nifti(path)
        return np.asanyarray(image.dataobj)
    try:
        if kind in (".tif", ".tiff"):
            import tifffile

            array = tifffile.imread(str(path))
        elif kind in PILLOW_SUFFIXES:
            from PIL import Image

            with Image.open(path) as im:
                array = np.asarray(im.convert("RGB") if im.mode == "P" else im)
        else:
            raise ValueError(f"unsupported extension {kind!r}; use one of {', '.join(IMAGE_SUFFIXES)}")
    except Exception as err:
        raise ValueError(f"cannot read image {path}: {err}") from None
    if array.ndim == 3 and array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{path} has shape {array.shape}: a stack, not a 2D image; store volumes as NIfTI")
    return array


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
    """The suffix a mask for the image at ``path`` is written with: the same format, but PNG instead of JPEG."""
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


# ---------------------------------------------------------------------------------------------------------------
# Overlays: a quick look at support examples and a prediction.


def _outline(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a binary mask, two pixels wide."""
    from scipy import ndimage

    inner = ndimage.binary_erosion(mask, iterations=2, border_value=0)
    return mask & ~inner


def _panel(image: np.ndarray, label_map: np.ndarray, height: int, colours) -> np.ndarray:
    """An RGB picture of a 2D image at ``height`` px with each label value's outline in its colour."""
    h, w = image.shape
    size = (height, max(1, round(w * height / h)))
    gray = pp.resize_image(pp.normalize_intensity(image), size, "area" if h > height else "bilinear")
    rgb = np.repeat((gray * 255).round().astype(np.uint8)[..., None], 3, axis=-1)
    values = [v for v in np.unique(label_map) if v != 0]
    for value in values:
        mask = pp.resize_label(label_map == value, size, "nearest").astype(bool)
        rgb[_outline(mask)] = colours(value)
    return rgb


def overlay(
    query: np.ndarray,
    label_map: np.ndarray,
    label_values: Sequence[int],
    support_images: Sequence[np.ndarray] = (),
    support_labels: Sequence[np.ndarray] = (),
    *,
    height: int = 256,
    max_support: int = 8,
) -> np.ndarray:
    """An RGB uint8 picture: top, the query and the query with the predicted outlines (one colour per label);
    bottom, up to ``max_support`` support examples with their label outlines in green."""
    query = pp.to_grayscale(query, name="query")
    colour_of = {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(label_values)}
    top = [
        _panel(query, np.zeros(query.shape, np.uint8), height, None),
        _panel(query, label_map, height, lambda v: colour_of.get(v, PALETTE[0])),
    ]
    rows = [top]
    thumbs = [
        _panel(pp.to_grayscale(img), pp.label_to_2d(lab) != 0, height // 2, lambda v: SUPPORT_COLOUR)
        for img, lab in list(zip(support_images, support_labels))[:max_support]
    ]
    if thumbs:
        rows.append(thumbs)
    gap = 4
    width = max(sum(p.shape[1] for p in row) + gap * (len(row) - 1) for row in rows)
    canvas = np.full((sum(row[0].shape[0] for row in rows) + gap * (len(rows) - 1), width, 3), 255, np.uint8)
    y = 0
    for row in rows:
        x = 0
        for panel in row:
            canvas[y : y + panel.shape[0], x : x + panel.shape[1]] = panel
            x += panel.shape[1] + gap
        y += row[0].shape[0] + gap
    return canvas
