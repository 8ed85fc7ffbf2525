"""DICOM series in (pydicom), segmentations out: NIfTI with the series geometry, or a DICOM SEG (highdicom).

A folder of DICOM files is read once: every file is parsed, files that are not images (DICOMDIR, reports, SEG
objects) are set aside, and the images are grouped by SeriesInstanceUID; each series becomes one volume:

* slices are sorted by their position along the slice normal (ImagePositionPatient . normal);
* every slice must share the orientation (ImageOrientationPatient), pixel spacing and size of the first, and
  positions must be evenly spaced: a missing slice, two slices at one position (several acquisitions or echoes)
  or a tilted slice is an error naming the series and the position;
* intensities are rescaled with each slice's RescaleSlope / RescaleIntercept (Hounsfield units for CT);
* the volume is laid out as NIfTI does, ``(columns, rows, slices)``, with the RAS affine of the series (DICOM
  positions are LPS), so every NIfTI tool and this package's reorientation treat it like a NIfTI file.

A file that claims to be DICOM (``.dcm`` or the ``DICM`` preamble) but cannot be parsed, or whose pixel data cannot
be decoded, is an error naming the file: a series is never read with a slice silently left out.

The steps every DICOM reader of the project shares (parse a file, rescale a slice, order slices along the normal,
the RAS affine of the slice geometry) are the functions ``read_file``, ``rescaled_pixels``, ``slice_normal``,
``position_order`` and ``ras_affine``; the MegaMedical builders (``universeg_datasets.raw.formats``) read their
series through them, with their own file search, InstanceNumber order and defaults for missing tags.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
# Relative tolerance for "the same" orientation, spacing and slice step.
TOLERANCE = 1e-3
STEP_TOLERANCE = 0.05  # a slice gap may differ from the usual one by 5 % (positions are rounded in the files)


def is_dicom_file(path) -> bool:
    """A DICOM suffix, or the 128-byte preamble followed by ``DICM``."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def dicom_files(folder) -> list[Path]:
    """The DICOM files directly inside ``folder`` (sorted by name; hidden files skipped)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and is_dicom_file(p))


def has_dicom(folder) -> bool:
    folder = Path(folder)
    return folder.is_dir() and any(
        p.is_file() and not p.name.startswith(".") and is_dicom_file(p) for p in folder.iterdir()
    )


@dataclasses.dataclass
class Series:
    """One DICOM series read as a volume: ``image`` is a ``nibabel.Nifti1Image`` (float32 ``(columns, rows,
    slices)``, RAS affine), ``datasets`` the slices' pydicom datasets in volume order (pixel data dropped)."""

    uid: str
    name: str
    folder: Path
    image: object
    datasets: list
    description: str = ""

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.image.shape)

    def to_volume(self, mask: np.ndarray) -> np.ndarray:
        """A ``(slices, rows, columns)`` array in DICOM frame order -> the volume layout ``(columns, rows, slices)``."""
        return np.transpose(mask, (2, 1, 0))

    def to_frames(self, volume: np.ndarray) -> np.ndarray:
        """A volume-layout array ``(columns, rows, slices)`` -> ``(slices, rows, columns)`` in ``datasets`` order."""
        return np.transpose(volume.reshape(self.shape[:3]), (2, 1, 0))


def read_file(path):
    """One DICOM file parsed by pydicom; a file it cannot parse is an error naming it."""
    import pydicom

    try:
        return pydicom.dcmread(path)
    except Exception as err:
        raise ValueError(f"cannot read DICOM file {path}: {err}") from None


def rescaled_pixels(path, ds) -> np.ndarray:
    """The decoded pixel data of one slice as float32, rescaled by its RescaleSlope and RescaleIntercept (1 and 0
    when absent or zero): Hounsfield units for CT. Pixel data that cannot be decoded is an error naming the file."""
    try:
        pixels = ds.pixel_array
    except Exception as err:
        raise ValueError(f"cannot decode the pixel data of DICOM file {path}: {err}") from None
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    return pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def slice_normal(orientation) -> np.ndarray:
    """The slice normal (row direction x column direction) of an ImageOrientationPatient."""
    orientation = np.asarray(orientation, np.float64)
    return np.cross(orientation[:3], orientation[3:])


def position_order(positions, normal) -> np.ndarray:
    """Indices that sort slices by their ImagePositionPatient along ``normal``; ties keep the given order."""
    return np.argsort(np.asarray(positions, np.float64) @ normal, kind="stable")


def ras_affine(orientation, spacing, step, origin) -> np.ndarray:
    """The RAS affine of slices laid out ``(columns, rows, slices)``: ``spacing`` is the PixelSpacing (row spacing,
    column spacing), ``step`` the world vector from one slice to the next, ``origin`` the first slice's position
    (DICOM positions are LPS; NIfTI's world is RAS)."""
    orientation = np.asarray(orientation, np.float64)
    lps = np.eye(4)
    lps[:3, 0] = orientation[:3] * spacing[1]  # along a row: column index increases, column spacing
    lps[:3, 1] = orientation[3:] * spacing[0]  # down a column: row index increases, row spacing
    lps[:3, 2] = step
    lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def read_folder(folder, *, what: str = "DICOM folder") -> list[Series]:
    """Every image series in ``folder``, each as a :class:`Series` (named after the folder; with several series,
    ``<folder>_s<SeriesNumber>``). SEG objects and files without pixel data are skipped with a warning."""
    folder = Path(folder)
    files = dicom_files(folder)
    if not files:
        raise ValueError(f"{what}: {folder} holds no DICOM files")
    groups: dict[str, list] = {}
    skipped = []
    for path in files:
        ds = read_file(path)
        sop_class = getattr(ds, "SOPClassUID", None) or getattr(
            getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None
        )
        if not sop_class:
            raise ValueError(f"cannot read DICOM file {path}: it has no SOP class (a corrupt or truncated file)")
        if getattr(ds, "Modality", "") == "SEG" or "PixelData" not in ds:
            skipped.append(path.name)
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "")) or "unknown"
        groups.setdefault(uid, []).append((path, ds))
    if skipped:
        warnings.warn(
            f"{folder}: skipped {len(skipped)} DICOM file(s) without image data (e.g. DICOMDIR, SEG): "
            f"{', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}",
            UserWarning,
            stacklevel=2,
        )
    if not groups:
        raise ValueError(f"{what}: {folder} holds no DICOM images")
    series = []
    numbers = [str(getattr(items[0][1], "SeriesNumber", "") or "") for items in groups.values()]
    for (uid, items), number in zip(groups.items(), numbers):
        if len(groups) == 1:
            name = folder.name
        elif number and numbers.count(number) == 1:
            name = f"{folder.name}_s{number}"
        else:
            name = f"{folder.name}_{uid.rsplit('.', 1)[-1]}"
        series.append(_volume(items, uid, name, folder))
    return sorted(series, key=lambda s: s.name)


def _floats(ds, keyword: str, count: int, path: Path) -> np.ndarray:
    value = getattr(ds, keyword, None)
    try:
        array = np.array([float(v) for v in value], np.float64)
    except (TypeError, ValueError):
        array = np.array([])
    if array.shape != (count,) or not np.isfinite(array).all():
        raise ValueError(f"DICOM file {path} lacks a valid {keyword} (got {value!r}): its geometry is unknown")
    return array


def _volume(items, uid: str, name: str, folder: Path) -> Series:
    from pydicom.pixels import apply_rescale  # noqa: F401  (pydicom >= 3; imported to fail early if missing)

    label = f"series {name} ({uid}) in {folder}"
    first_path, first = items[0]
    orientation = _floats(first, "ImageOrientationPatient", 6, first_path)
    spacing = _floats(first, "PixelSpacing", 2, first_path)
    normal = slice_normal(orientation)
    shape = (int(first.Rows), int(first.Columns))
    positions = []
    for path, ds in items:
        if not np.allclose(_floats(ds, "ImageOrientationPatient", 6, path), orientation, atol=TOLERANCE):
            raise ValueError(
                f"{label}: {path.name} has another orientation than {first_path.name}: "
                "the series mixes acquisitions; put each in its own folder"
            )
        if not np.allclose(_floats(ds, "PixelSpacing", 2, path), spacing, rtol=TOLERANCE):
            raise ValueError(f"{label}: {path.name} has another pixel spacing than {first_path.name}")
        if (int(ds.Rows), int(ds.Columns)) != shape:
            raise ValueError(
                f"{label}: {path.name} is {ds.Rows}x{ds.Columns}, {first_path.name} is {shape[0]}x{shape[1]}"
            )
        positions.append(_floats(ds, "ImagePositionPatient", 3, path))
    positions = np.array(positions)
    order = position_order(positions, normal)
    items, positions = [items[i] for i in order], positions[order]
    distance = positions @ normal
    if len(items) > 1:
        steps = np.diff(distance)
        same = np.flatnonzero(steps < TOLERANCE * max(spacing.max(), 1.0))
        if len(same):
            a, b = items[same[0]][0].name, items[same[0] + 1][0].name
            raise ValueError(
                f"{label}: {a} and {b} lie at the same position ({distance[same[0]]:.2f} mm along the "
                "slice normal): the folder holds several acquisitions, echoes or copies of one series"
            )
        usual = float(np.median(steps))
        bad = np.flatnonzero(np.abs(steps - usual) > STEP_TOLERANCE * usual)
        if len(bad):
            k = int(bad[0])
            raise ValueError(
                f"{label}: slices are not evenly spaced: {steps[k]:.2f} mm between {items[k][0].name} and "
                f"{items[k + 1][0].name} (at {distance[k]:.2f} and {distance[k + 1]:.2f} mm) where {usual:.2f} mm is "
                f"usual; {'a slice is missing' if steps[k] > usual else 'the series mixes acquisitions'}"
            )
        step = (positions[-1] - positions[0]) / (len(items) - 1)
        if abs(np.dot(step / np.linalg.norm(step), normal)) < 1 - 1e-3:
            raise ValueError(
                f"{label}: slice positions do not follow the slice normal (a tilted or sheared series); "
                "convert it to NIfTI with a tool that resamples it, e.g. dcm2niix"
            )
    else:
        thickness = float(getattr(first, "SliceThickness", 0) or 0) or 1.0
        step = normal * thickness

    slices = []
    for path, ds in items:
        pixels = rescaled_pixels(path, ds)
        if pixels.shape != shape:
            raise ValueError(
                f"DICOM file {path} has pixel data of shape {pixels.shape}; expected {shape} "
                "(multi-frame or colour images are not a series of slices)"
            )
        slices.append(pixels)
        del ds.PixelData  # the volume holds the voxels; the headers stay for DICOM SEG references
    volume = np.stack(slices, axis=-1).transpose(1, 0, 2)  # (columns, rows, slices)
    import nibabel as nib

    image = nib.Nifti1Image(volume, ras_affine(orientation, spacing, step, positions[0]))
    image.header.set_xyzt_units("mm")
    return Series(uid, name, folder, image, [ds for _, ds in items], str(getattr(first, "SeriesDescription", "")))


def write_seg(path, series: Series, label_map: np.ndarray, label_values, *, tmp_path=None) -> Path:
    """Write a DICOM SEG object for ``label_map`` (volume layout, values ``label_values``) that references every
    slice of ``series``: one segment per label value, stored as a binary segmentation (highdicom)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    __version__ = _version()
    frames = series.to_frames(np.asarray(label_map))
    values = [int(v) for v in label_values]
    numbered = np.zeros(frames.shape, np.uint8 if len(values) < 256 else np.uint16)
    for number, value in enumerate(values, start=1):
        numbered[frames == value] = number
    algorithm = hd.AlgorithmIdentificationSequence(
        name="universeg-jax", version=__version__, family=codes.cid7162.ArtificialIntelligence
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=f"label {value}",
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for number, value in enumerate(values, start=1)
    ]
    first = series.datasets[0]
    seg = hd.seg.Segmentation(
        source_images=series.datasets,
        pixel_array=numbered,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=int(getattr(first, "SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="universeg-jax",
        manufacturer_model_name="universeg-jax",
        software_versions=__version__,
        device_serial_number="0",
        series_description=f"universeg-jax segmentation of {series.description or series.name}"[:64],
        omit_empty_frames=False,
    )
    seg.save_as(str(tmp_path or path))
    return Path(path)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("universeg-jax")
    except metadata.PackageNotFoundError:
        return "0"


def read_seg(path, series: Series) -> np.ndarray:
    """A DICOM SEG that references ``series`` as a label map in the volume layout (values: segment numbers)."""
    import highdicom as hd

    try:
        seg = hd.seg.segread(str(path))
        uids = [str(ds.SOPInstanceUID) for ds in series.datasets]
        frames = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids, combine_segments=True, skip_overlap_checks=True
        )
    except Exception as err:
        raise ValueError(f"cannot read DICOM SEG {path} as a label of series {series.name}: {err}") from None
    return series.to_volume(np.asarray(frames))
