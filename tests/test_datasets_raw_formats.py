"""The catalog's coverage, the shared raw readers, and bad downloads of the table-defined builders."""

import builtins
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from universeg_datasets import catalog, registry
from universeg_datasets import raw as raw_package
from universeg_datasets.raw import dummy, fakes, formats, layout
from universeg_jax.data import tasks


def build(name, tmp_path):
    return registry.build(name, config="size64", data_dir=tmp_path / "data", manual_dir=tmp_path / "manual")


# ------------------------------------------------------------------------------------------------ catalog


def test_every_catalog_dataset_has_builders_or_a_reason_and_every_builder_module_is_in_it():
    entries = catalog.load_catalog()
    assert len(entries) == 53
    for entry in entries:
        assert entry["builders"] or len(entry.get("reason", "")) > 40, entry["name"]
        for name in entry["builders"]:
            assert registry.builder_class(name).HOMEPAGE == entry["layout_source"], name
    listed = {b for e in entries for b in e["builders"]}
    assert listed == set(registry.RAW)
    for module, names in raw_package.MODULES.items():
        assert set(names) <= listed, f"module {module} has builders missing from the catalog"
    assert {e["name"] for e in entries if not e["builders"]} == {"MCIC", "PPMI"}


@pytest.mark.parametrize("name", sorted(registry.RAW))
def test_instructions_name_the_folder_source_and_files(name):
    builder = registry.builder_class(name)
    text = builder.MANUAL_DOWNLOAD_INSTRUCTIONS
    assert builder.HOMEPAGE in text and f"{builder.RAW_FOLDER}/" in text


def test_catalog_without_builders_needs_a_reason(tmp_path):
    entry = {f: [] if f in ("modalities", "labels", "builders") else "x" for f in catalog.FIELDS}
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"datasets": [entry]}))
    with pytest.raises(ValueError, match="neither builders nor a 'reason'"):
        catalog.load_catalog(path)


# ------------------------------------------------------------------------------------------------ readers


def test_metaimage_reads_raw_zraw_and_inline_data_in_ras_order(tmp_path):
    volume = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)  # (x, y, z)
    for name, compressed in (("a.mhd", False), ("b.mhd", True), ("c.mha", False)):
        fakes.write_metaimage(tmp_path / name, volume, compressed=compressed)
        # LPS identity: x and y flip to reach RAS
        np.testing.assert_array_equal(formats.load(tmp_path / name, volumetric=True), volume[::-1, ::-1, :])
    fakes.write_metaimage(tmp_path / "plane.mhd", volume[:, :, 0])
    np.testing.assert_array_equal(formats.load(tmp_path / "plane.mhd", volumetric=False), volume[:, :, 0])
    (tmp_path / "b.zraw").write_bytes(b"not zlib")
    with pytest.raises(ValueError, match="b.mhd"):
        formats.load(tmp_path / "b.mhd", volumetric=True)
    (tmp_path / "a.raw").unlink()
    with pytest.raises(FileNotFoundError, match="a.raw"):
        formats.load(tmp_path / "a.mhd", volumetric=True)


def test_nrrd_and_dicom_series_of_one_volume_agree(tmp_path):
    volume = np.random.default_rng(0).integers(0, 200, (6, 5, 4)).astype(np.uint16)  # (rows, cols, slices)
    for k in range(4):
        fakes.write_dicom(tmp_path / "series" / f"{k}.dcm", volume[:, :, k], position=float(k), instance=k + 1)
    fakes.write_array(tmp_path / "label.nrrd", np.swapaxes(volume, 0, 1))  # NRRD (x, y, z) = (cols, rows, slices)
    from_dicom = formats.load(tmp_path / "series", volumetric=True)
    np.testing.assert_array_equal(from_dicom, formats.load(tmp_path / "label.nrrd", volumetric=True))
    in_order = formats.Dicom(tmp_path / "series", order="instance").read(True)
    np.testing.assert_array_equal(in_order, volume)
    (tmp_path / "series" / "2.dcm").write_bytes(b"junk")
    with pytest.raises(ValueError, match="2.dcm"):
        formats.load(tmp_path / "series", volumetric=True)


def test_rle_round_trip_and_polygon_fill():
    rng = np.random.default_rng(1)
    for shape in ((7, 5), (16, 16)):
        mask = rng.random(shape) > 0.6
        np.testing.assert_array_equal(formats.decode_rle(formats.encode_rle(mask)), mask)
    assert formats.decode_rle({"size": [2, 3], "counts": [1, 4, 1]}).tolist() == [[0, 1, 1], [1, 1, 0]]
    square = formats.fill_polygon(np.array([[1, 1], [4, 1], [4, 3], [1, 3]]), (6, 6), "square")
    assert square.sum() == 12 and square[1:4, 1:5].all()  # rows 1..3 x cols 1..4, boundary pixels included


@pytest.mark.parametrize("compression", ["tiff_lzw", "tiff_adobe_deflate", None])
def test_compressed_tiff_reads_with_the_core_dependencies(compression, tmp_path):
    """DRIVE's images are LZW-compressed TIFFs: tifffile needs the optional 'imagecodecs' for them, Pillow does not."""
    rgb = np.random.default_rng(2).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.tif", compression=compression)
    np.testing.assert_array_equal(formats.load(tmp_path / "x.tif", volumetric=False), rgb)


def test_palette_images_read_as_grey_levels_for_builders(tmp_path):
    """Builders read 2D files with the reader inference uses: a palette label keeps one channel and its labels."""
    image = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4) % 3, mode="P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255])
    image.save(tmp_path / "label.png")
    label = formats.load(tmp_path / "label.png", volumetric=False)
    np.testing.assert_array_equal(label, np.asarray(image.convert("L")))
    assert label.shape == (3, 4) and len(np.unique(label)) == 3
    with pytest.raises(FileNotFoundError, match="missing.png"):
        formats.load(tmp_path / "missing.png", volumetric=False)
    (tmp_path / "bad.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.png"):
        formats.load(tmp_path / "bad.png", volumetric=False)


def test_missing_optional_reader_names_the_extra(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_nrrd(name, *args, **kwargs):
        if name == "nrrd":
            raise ImportError("no module named nrrd")
        return real_import(name, *args, **kwargs)

    (tmp_path / "x.nrrd").write_bytes(b"NRRD0004\n")
    monkeypatch.setattr(builtins, "__import__", no_nrrd)
    with pytest.raises(ImportError, match=r"universeg-jax\[raw\]"):
        formats.load(tmp_path / "x.nrrd", volumetric=True)


def test_templates_match_fields_and_repeat_them():
    pattern = layout.compile_template("BraTS2021_{case}/BraTS2021_{case}_{m}.nii.gz", {"m": "flair|t1"})
    assert pattern.fullmatch("BraTS2021_00000/BraTS2021_00000_flair.nii.gz").groupdict() == {
        "case": "00000",
        "m": "flair",
    }
    assert not pattern.fullmatch("BraTS2021_00000/BraTS2021_00001_flair.nii.gz")
    assert not pattern.fullmatch("BraTS2021_00000/BraTS2021_00000_seg.nii.gz")
    assert layout.compile_template("a/*/b{x}.png").fullmatch("a/any/b7.png")


# ------------------------------------------------------------------------------------- bad downloads


def truncate(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])


LUNA = "LUNA16/subset0/1.3.6.1.4.1.14519.5.2.1.6279.6001.100225287222365663678666836860"
BAD = {
    # case: (builder, break the fake download, exception, text the message must contain)
    "label missing": (
        "btcv",
        lambda m: (m / "BTCV/RawData/Training/label/label0002.nii.gz").unlink(),
        FileNotFoundError,
        "img0002.nii.gz",
    ),
    "modality missing": (
        "brats2021",
        lambda m: (m / "BraTS2021/BraTS2021_00002/BraTS2021_00002_t2.nii.gz").unlink(),
        FileNotFoundError,
        "BraTS2021_00002_t2.nii.gz",
    ),
    "MetaImage data truncated": (
        "luna16",
        lambda m: truncate(m / f"{LUNA}.raw"),
        ValueError,
        f"{LUNA.split('/')[-1]}.mhd",
    ),
    "corrupt NRRD": (
        "cdemris",
        lambda m: (m / "cDEMRIS/post/p2/la_seg_b_1.nrrd").write_bytes(b"NRRD0004\ntype: junk\n"),
        ValueError,
        "la_seg_b_1.nrrd",
    ),
    "slice label missing": (
        "lgg_flair",
        lambda m: (m / "kaggle_3m/TCGA_CS_4941_19960909/TCGA_CS_4941_19960909_4_mask.tif").unlink(),
        FileNotFoundError,
        "TCGA_CS_4941_19960909_4_mask.tif",
    ),
    "modality of another size": (
        "wmh",
        lambda m: fakes.write_array(m / "WMH/training/Utrecht/2/pre/T1.nii.gz", np.zeros((5, 5, 5), np.uint8)),
        ValueError,
        "T1.nii.gz",
    ),
    "corrupt MAT label": (
        "consep",
        lambda m: (m / "CoNSeP/Test/Labels/test_1.mat").write_bytes(b"MATLAB junk"),
        ValueError,
        "test_1.mat",
    ),
    "corrupt layer": (
        "idrid",
        lambda m: (
            m / "IDRiD/A. Segmentation/2. All Segmentation Groundtruths/a. Training Set/2. Haemorrhages/IDRiD_55_HE.tif"
        ).write_bytes(b"II*\x00junk"),
        ValueError,
        "IDRiD_55_HE.tif",
    ),
    "corrupt DICOM slice": (
        "chaos",
        lambda m: (m / "CHAOS/Train_Sets/CT/2/DICOM_anon/i3,0000b.dcm").write_bytes(b"\x00" * 200),
        ValueError,
        "i3,0000b.dcm",
    ),
    "ground-truth slice missing": (
        "chaos",
        lambda m: (m / "CHAOS/Train_Sets/MR/1/T2SPIR/Ground/IMG-0004-6.png").unlink(),
        ValueError,
        "T2SPIR/Ground",
    ),
    "contour file not numbers": (
        "scd",
        lambda m: (
            m / "SCD/SCD_ManualContours/SC-N-02/contours-manual/IRCCI-expert/IM-0001-0048-icontour-manual.txt"
        ).write_text("x y\nnot numbers\n"),
        ValueError,
        "IM-0001-0048-icontour-manual.txt",
    ),
    "labels JSON corrupt": (
        "chexplanation",
        lambda m: (m / "CheXplanation/gt_segmentations_val.json").write_text("{"),
        ValueError,
        "gt_segmentations_val.json",
    ),
    "video corrupt": (
        "echonet",
        lambda m: truncate(m / "EchoNet-Dynamic/Videos/0X1002E8FBACD08477.avi"),
        ValueError,
        "0X1002E8FBACD08477.avi",
    ),
    "masks array missing": (
        "pannuke",
        lambda m: (m / "PanNuke/Fold 2/masks/fold2/masks.npy").unlink(),
        FileNotFoundError,
        "masks.npy",
    ),
    "HDF5 corrupt": ("tucc", lambda m: truncate(m / "TUCC/dataset.hdf5"), ValueError, "dataset.hdf5"),
    "label stack shorter": (
        "isbi_em",
        lambda m: fakes.write_array(m / "ISBI2012/train-labels.tif", np.zeros((40, 48), np.uint8)),
        ValueError,
        "train-labels.tif",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_download_names_the_file_and_leaves_nothing(case, tmp_path):
    name, corrupt, error, text = BAD[case]
    dummy.write_dummy(name, tmp_path / "manual")
    corrupt(tmp_path / "manual")
    with pytest.raises(error, match=text.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        build(name, tmp_path)
    assert not list((tmp_path / "data").glob(f"{name}/*/*/dataset_info.json"))
    with pytest.raises(FileNotFoundError, match="not built"):
        tasks.open_tasks([name], tmp_path / "data", size=64)


def test_docs_layout_table_is_up_to_date():
    docs = (Path(__file__).parents[1] / "docs" / "datasets.md").read_text()
    assert catalog.layouts_table() in docs, "regenerate: python -m universeg_datasets.catalog --layouts"
