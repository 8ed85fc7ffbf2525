"""DICOM series in and out: small synthetic series written with pydicom (no downloads)."""

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from tests.conftest import segment_options
from universeg_jax import cli, dicom

ROWS, COLS = 24, 20
SPACING = (0.8, 0.7)  # row spacing, column spacing (mm)
STEP = 2.5
AXIAL = (1, 0, 0, 0, 1, 0)


def write_series(
    folder, volume, *, series_uid=None, number=1, start=-10.0, skip=(), corrupt=None, seed=0, orientation=AXIAL
):
    """Write ``volume`` (slices, rows, cols) int16 as a CT series (axial unless ``orientation``, slices ``STEP``
    apart along its normal); returns the series UID."""
    folder.mkdir(parents=True, exist_ok=True)
    normal = np.cross(orientation[:3], orientation[3:])
    series_uid = series_uid or generate_uid()
    study, frame = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"
    order = np.random.default_rng(seed).permutation(len(volume))  # files not in slice order
    for k in order:
        if k in skip:
            continue
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series_uid, frame
        ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "P1", "Test^Patient", "19700101", "O"
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = (
            "20260101",
            "120000",
            "A1",
            "",
            "1",
        )
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", number, int(k) + 1
        ds.Manufacturer = "test"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = list(orientation)
        ds.ImagePositionPatient = [float(v) for v in np.array([5.0, -3.0, start]) + normal * STEP * k]
        ds.PixelSpacing = list(SPACING)
        ds.SliceThickness = STEP
        ds.Rows, ds.Columns = volume.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
        ds.PixelData = volume[k].astype(np.int16).tobytes()
        ds.save_as(folder / f"im{number}_{k:03d}.dcm", enforce_file_format=True)
    if corrupt is not None:
        (folder / corrupt).write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    return series_uid


def phantom(slices=6, seed=0):
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[:slices, :ROWS, :COLS]
    label = ((yy - 12) ** 2 + (xx - 9) ** 2 < 30).astype(np.uint8)
    return (rng.integers(500, 520, (slices, ROWS, COLS)) + 300 * label.astype(np.int64)).astype(np.int16), label


def test_series_round_trip_geometry_and_intensities(tmp_path):
    volume, _ = phantom()
    uid = write_series(tmp_path / "ct", volume)
    (series,) = dicom.read_folder(tmp_path / "ct")
    assert series.uid == uid and series.name == "ct"
    data = np.asarray(series.image.dataobj)
    assert data.shape == (COLS, ROWS, 6) and data.dtype == np.float32
    np.testing.assert_array_equal(data, volume.transpose(2, 1, 0) * 2.0 - 1024)  # rescaled, (cols, rows, slices)
    np.testing.assert_allclose(series.image.header.get_zooms(), (SPACING[1], SPACING[0], STEP))
    assert nib.aff2axcodes(series.image.affine) == ("L", "P", "S")  # DICOM LPS axes seen in RAS
    np.testing.assert_allclose(series.image.affine[:3, 3], [-5.0, 3.0, -10.0])
    assert [int(ds.InstanceNumber) for ds in series.datasets] == list(range(1, 7))  # sorted by position


def test_missing_slice_mixed_folder_and_corrupt_file(tmp_path):
    volume, _ = phantom(8)
    write_series(tmp_path / "gap", volume, skip=(4,))
    with pytest.raises(ValueError, match="not evenly spaced.*a slice is missing"):
        dicom.read_folder(tmp_path / "gap")
    write_series(tmp_path / "mixed", volume, number=3)
    write_series(tmp_path / "mixed", volume[:5], number=4, seed=1)
    names = [s.name for s in dicom.read_folder(tmp_path / "mixed")]
    assert names == ["mixed_s3", "mixed_s4"]  # stated handling: one volume per series
    write_series(tmp_path / "copies", volume, series_uid="1.2.3.4")
    write_series(tmp_path / "copies", volume, series_uid="1.2.3.4", number=2)  # same UID, same positions
    with pytest.raises(ValueError, match="same position"):
        dicom.read_folder(tmp_path / "copies")
    write_series(tmp_path / "bad", volume, corrupt="broken.dcm")
    with pytest.raises(ValueError, match="broken.dcm"):
        dicom.read_folder(tmp_path / "bad")


@pytest.mark.parametrize("orientation", [AXIAL, (0, 1, 0, 0, 0, -1), (-1, 0, 0, 0, 0, -1)])
def test_builders_read_a_series_as_inference_does(orientation, tmp_path):
    """One DICOM core: the MegaMedical builders' reader (a folder, files out of order, rescaled CT) gives the
    inference's volume in the closest RAS orientation, for axial, sagittal and coronal series."""
    from universeg_datasets.raw import formats

    volume, _ = phantom()
    write_series(tmp_path / "s", volume, orientation=orientation)
    (series,) = dicom.read_folder(tmp_path / "s")
    expected = np.asarray(nib.as_closest_canonical(series.image).dataobj)
    assert expected.min() == volume.min() * 2.0 - 1024  # rescaled
    np.testing.assert_array_equal(formats.read_dicom_series(tmp_path / "s", volumetric=True), expected)


def test_cli_segments_a_series_into_nifti_and_dicom_seg(tmp_path, weights_file):
    import highdicom as hd

    volume, label = phantom(6)
    write_series(tmp_path / "support" / "case1", volume)
    (series,) = dicom.read_folder(tmp_path / "support" / "case1")
    (tmp_path / "labels").mkdir()
    nib.save(nib.Nifti1Image(label.transpose(2, 1, 0), series.image.affine), tmp_path / "labels" / "case1.nii.gz")
    uid = write_series(tmp_path / "query" / "scan", phantom(6, seed=1)[0])
    out = tmp_path / "out"
    options = segment_options(tmp_path / "support", tmp_path / "labels", tmp_path / "query", out, weights_file)
    code = cli.main(["segment", *options, "--dicom-seg", "--slices-per-volume", "3"])
    assert code == 0
    mask = nib.load(out / "scan.nii.gz")
    (query,) = dicom.read_folder(tmp_path / "query" / "scan")
    assert mask.shape == query.shape
    np.testing.assert_allclose(mask.affine, query.image.affine, atol=1e-5)
    seg = hd.seg.segread(str(out / "scan_seg.dcm"))
    referenced = {
        str(ds.ReferencedSOPInstanceUID)
        for item in seg.ReferencedSeriesSequence
        for ds in item.ReferencedInstanceSequence
    }
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == uid
    assert referenced == {str(ds.SOPInstanceUID) for ds in query.datasets}
    frames = seg.get_pixels_by_source_instance(
        [str(ds.SOPInstanceUID) for ds in query.datasets], combine_segments=True, skip_overlap_checks=True
    )
    np.testing.assert_array_equal(query.to_volume(np.asarray(frames)) > 0, np.asanyarray(mask.dataobj) > 0)
    # The SEG also serves as a support label.
    np.testing.assert_array_equal(dicom.read_seg(out / "scan_seg.dcm", query) > 0, np.asanyarray(mask.dataobj) > 0)
    assert sorted(p.name for p in out.iterdir()) == ["overlays", "scan.nii.gz", "scan_seg.dcm"]


def test_corrupt_series_leaves_no_outputs(tmp_path, weights_file, capsys):
    volume, label = phantom(6)
    write_series(tmp_path / "query" / "scan", volume, corrupt="x.dcm")
    (tmp_path / "sup").mkdir()
    nib.save(nib.Nifti1Image(volume.transpose(2, 1, 0).astype(np.float32), np.eye(4)), tmp_path / "sup" / "a.nii.gz")
    (tmp_path / "lab").mkdir()
    nib.save(nib.Nifti1Image(label.transpose(2, 1, 0), np.eye(4)), tmp_path / "lab" / "a.nii.gz")
    out = tmp_path / "out"
    code = cli.main(
        ["segment", *segment_options(tmp_path / "sup", tmp_path / "lab", tmp_path / "query", out, weights_file)]
    )
    assert code == 2 and "x.dcm" in capsys.readouterr().err
    assert not out.exists()


def test_pydicom_reads_what_the_tests_write(tmp_path):
    write_series(tmp_path / "s", phantom(2)[0])
    ds = pydicom.dcmread(sorted((tmp_path / "s").iterdir())[0])
    assert ds.Modality == "CT" and ds.pixel_array.shape == (ROWS, COLS)
