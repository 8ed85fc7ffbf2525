"""Tiny fake copies of the table-defined raw datasets, written in each dataset's published layout.

``FAKES[name]`` lists a dataset's files as literal paths with ``{s}`` (the subject) and ``{k}`` (slice number)
placeholders and what each file holds; ``write_fake(name, manual_dir)`` writes them (``dummy.write_dummy``
calls it). Every subject's files derive from one label map of nested disks/balls, so an image, its channels
and its labels always agree; files are written in the format their suffix names.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE_2D = (40, 48)
SHAPE_3D = (20, 24, 16)
SLICES = 6  # slices of slice-per-file volumes


@dataclasses.dataclass(frozen=True)
class Fake:
    """``files``: (path template, role); roles: "image" (grey, from the label map), "rgb" (3 channels),
    "label" (the label map), ("mask", v) (255 where the label map is v), ("value", v) (v where it is not 0).
    ``values``: label values drawn (nested, first outermost); ``dims``: 2 or 3; ``slices``: 3D volumes stored
    one 2D file per slice ``{k}`` = 1..SLICES."""

    folder: str
    subjects: tuple[str, ...]
    files: tuple[tuple, ...]  # (template, role) or (template, role, subjects that have this file)
    values: tuple[int, ...] = (255,)
    dims: int = 3


def nested_labels(shape, values) -> np.ndarray:
    """``dummy.nested_labels`` with any label values (drawn as ranks, then mapped)."""
    from universeg_datasets.raw.dummy import nested_labels as draw

    ranks = draw(shape, range(1, len(values) + 1))
    return np.concatenate([[0], values]).astype(np.int32)[ranks]


def role_array(role, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if role in ("image", "rgb"):
        base = 60.0 + 40.0 * (label > 0) + 0.1 * label.astype(np.float32)
        noise = rng.normal(0.0, 10.0, label.shape + ((3,) if role == "rgb" else ()))
        return np.clip((base[..., None] if role == "rgb" else base) + noise, 0, 255).astype(np.uint8)
    if role == "label":
        return label.astype(np.uint16 if label.max() > 255 else np.uint8)
    kind, value = role
    if kind == "mask":
        return ((label == value) * 255).astype(np.uint8)
    if kind == "value":
        return ((label > 0) * value).astype(np.uint8)
    if kind == "rgbmask":  # a colour (3-channel) mask file
        return np.repeat(((label == value) * 255).astype(np.uint8)[..., None], 3, axis=-1)
    raise ValueError(f"unknown fake file role {role!r}")


def write_fake(name: str, manual_dir, seed: int = 0, copies: int = 1) -> None:
    """Write the fake files of ``name``; ``copies`` > 1 repeats each subject under ids with a digit appended
    (for benchmarks)."""
    fake = FAKES[name]
    rng = np.random.default_rng(seed)
    root = Path(manual_dir) / fake.folder
    for base, subject in ((s, s + (str(c) if c else "")) for c in range(copies) for s in fake.subjects):
        label = nested_labels(SHAPE_3D if fake.dims == 3 else SHAPE_2D, fake.values)
        for template, role, *only in fake.files:
            if only and base not in only[0]:
                continue
            array = role_array(role, label, rng)
            if "{k}" in template:  # one 2D file per slice of the volume
                for k in range(SLICES):
                    plane = label_plane(array, k)
                    write_array(root / template.format(s=subject, k=k + 1), plane, index=k)
            else:
                write_array(root / template.format(s=subject), array)


def label_plane(array: np.ndarray, k: int) -> np.ndarray:
    """Slice ``k`` of a fake volume cut into SLICES planes along its last spatial axis, as a 2D image."""
    depth = array.shape[2]
    index = int(round((k + 0.5) * depth / SLICES - 0.5))
    return np.ascontiguousarray(array[:, :, index])


def write_array(path: Path, array: np.ndarray, index: int = 0) -> None:
    """Write ``array`` in the format of ``path``'s suffix (2D formats via ``dummy.save_image``); ``index``:
    the slice number of a DICOM slice (its position and instance number)."""
    from universeg_datasets.raw import dummy

    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        nib.save(nib.Nifti1Image(array, np.eye(4)), path)
    elif name.endswith((".mhd", ".mha")):
        write_metaimage(path, array)
    elif name.endswith(".nrrd"):
        import nrrd

        header = {"space": "left-posterior-superior", "space directions": np.eye(array.ndim)} if array.ndim == 3 else {}
        nrrd.write(str(path), array, header)
    elif name.endswith(".dcm"):
        write_dicom(path, array, position=float(index), instance=index + 1)
    elif name.endswith(".npy"):
        np.save(path, array)
    elif name.endswith(".mat"):
        import scipy.io

        scipy.io.savemat(path, {"type_map": array, "inst_map": (array > 0).astype(np.int32)})
    else:
        dummy.save_image(path, array)


def write_metaimage(path: Path, array: np.ndarray, compressed: bool = False) -> None:
    """A MetaImage (``.mhd`` + ``.raw``/``.zraw``, or ``.mha`` inline); 3D arrays are (x, y, z), 2D (rows, cols)."""
    types = {"u1": "MET_UCHAR", "u2": "MET_USHORT", "i2": "MET_SHORT", "f4": "MET_FLOAT"}
    data = np.moveaxis(array, range(3), range(3)[::-1]) if array.ndim == 3 else array  # -> (z, y, x)
    dims = " ".join(str(d) for d in reversed(data.shape))
    blob = np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<")).tobytes()
    blob = zlib.compress(blob) if compressed else blob
    inline = path.suffix.lower() == ".mha"
    data_name = "LOCAL" if inline else path.with_suffix(".zraw" if compressed else ".raw").name
    header = (
        f"ObjectType = Image\nNDims = {array.ndim}\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        f"CompressedData = {compressed}\nTransformMatrix = {' '.join(str(int(v)) for v in np.eye(array.ndim).ravel())}\n"
        f"ElementSpacing = {' '.join(['1'] * array.ndim)}\nDimSize = {dims}\n"
        f"ElementType = {types[data.dtype.str[1:]]}\nElementDataFile = {data_name}\n"
    )
    if inline:
        path.write_bytes(header.encode() + blob)
    else:
        path.write_text(header)
        path.with_name(data_name).write_bytes(blob)


def write_dicom(
    path: Path, array: np.ndarray, *, position: float = 0.0, instance: int = 1, series: str = "1.2.3"
) -> None:
    """One uncompressed 16-bit DICOM slice (MR), at ``position`` mm along the slice normal."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.InstanceNumber = "MR", series, instance
    ds.ImageOrientationPatient, ds.ImagePositionPatient = [1, 0, 0, 0, 1, 0], [0, 0, position]
    ds.PixelSpacing = [1, 1]
    ds.Rows, ds.Columns = array.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.ascontiguousarray(array, dtype="<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _volume(folder, subjects, image, label, values, **extra):
    """A dataset of one image (or several modality files) and one label file per subject."""
    images = image if isinstance(image, tuple) else (image,)
    return Fake(folder, subjects, tuple((t, "image") for t in images) + ((label, "label"),), values, **extra)


ISLES = tuple(
    f"training_{{s}}/SMIR.Brain.XX.O.MR_{m}.1{i}/SMIR.Brain.XX.O.MR_{m}.1{i}.nii"
    for i, m in enumerate(("ADC", "MTT", "TTP", "Tmax", "rCBF", "rCBV"))
)

FAKES = {
    "amos": Fake(
        "amos22",
        ("0001", "0507"),
        (
            ("imagesTr/amos_{s}.nii.gz", "image"),
            ("labelsTr/amos_{s}.nii.gz", "label"),
            ("imagesTs/amos_{s}.nii.gz", "image"),
        ),
        (1, 6, 15),
    ),
    "brats2021": _volume(
        "BraTS2021",
        ("00000", "00002"),
        tuple(f"BraTS2021_{{s}}/BraTS2021_{{s}}_{m}.nii.gz" for m in ("flair", "t1", "t1ce", "t2")),
        "BraTS2021_{s}/BraTS2021_{s}_seg.nii.gz",
        (2, 1, 4),
    ),
    "btcv": _volume(
        "BTCV",
        ("0001", "0002"),
        "RawData/Training/img/img{s}.nii.gz",
        "RawData/Training/label/label{s}.nii.gz",
        (6, 1, 13),
    ),
    "brain_development": _volume(
        "BrainDevelopment",
        ("a01", "a02"),
        "Hammers_mith-n30r83/{s}.nii.gz",
        "Hammers_mith-n30r83/{s}-seg.nii.gz",
        (3, 17, 83),
    ),
    "cdemris": Fake(
        "cDEMRIS",
        ("p1", "p2"),
        (
            ("pre/{s}/de_a_1.nrrd", "image"),
            ("pre/{s}/la_seg_a_1.nrrd", ("value", 1)),
            ("post/{s}/de_b_1.nrrd", "image"),
            ("post/{s}/la_seg_b_1.nrrd", ("value", 1)),
        ),
    ),
    "feta": _volume(
        "feta_2.1",
        ("001", "002"),
        "sub-{s}/anat/sub-{s}_rec-mial_T2w.nii.gz",
        "sub-{s}/anat/sub-{s}_rec-mial_dseg.nii.gz",
        (1, 3, 7),
    ),
    "isles2017": Fake(
        "ISLES2017",
        ("1", "2"),
        tuple((t, "image") for t in ISLES)
        + (("training_{s}/SMIR.Brain.XX.O.OT.19/SMIR.Brain.XX.O.OT.19.nii", ("value", 1)),),
    ),
    "lits": _volume(
        "LiTS", ("0", "1"), "Training Batch 1/volume-{s}.nii", "Training Batch 1/segmentation-{s}.nii", (1, 2)
    ),
    "luna16": _volume(
        "LUNA16",
        (
            "1.3.6.1.4.1.14519.5.2.1.6279.6001.100225287222365663678666836860",
            "1.3.6.1.4.1.14519.5.2.1.6279.6001.100332161840553388986847034053",
        ),
        "subset0/{s}.mhd",
        "seg-lungs-LUNA16/{s}.mhd",
        (3, 4, 5),
    ),
    "mm_whs": Fake(
        "MM-WHS",
        ("1001", "1002"),
        (
            ("ct_train/ct_train_{s}_image.nii.gz", "image"),
            ("ct_train/ct_train_{s}_label.nii.gz", "label"),
            ("mr_train/mr_train_{s}_image.nii.gz", "image"),
            ("mr_train/mr_train_{s}_label.nii.gz", "label"),
        ),
        (205, 500, 850),
    ),
    "promise12": _volume(
        "PROMISE12", ("00", "01"), "TrainingData_Part1/Case{s}.mhd", "TrainingData_Part1/Case{s}_segmentation.mhd", (1,)
    ),
    "segthor": _volume(
        "SegTHOR", ("01", "02"), "train/Patient_{s}/Patient_{s}.nii.gz", "train/Patient_{s}/GT.nii.gz", (2, 4)
    ),
    "smir": _volume("xVertSeg.v1", ("001", "002"), "Data1/images/image{s}.mhd", "Data1/masks/mask{s}.mhd", (200,)),
    "spineweb": _volume("IVD_Challenge_Data", ("01", "02"), "{s}/{s}.nii", "{s}/{s}_Label.nii", (1,)),
    "verse": _volume(
        "VerSe",
        ("verse004", "verse500"),
        "dataset-verse19training/rawdata/sub-{s}/sub-{s}_ct.nii.gz",
        "dataset-verse19training/derivatives/sub-{s}/sub-{s}_seg-vert_msk.nii.gz",
        (20, 24, 28),
    ),
    "wmh": _volume(
        "WMH",
        ("0", "2"),
        ("training/Utrecht/{s}/pre/FLAIR.nii.gz", "training/Utrecht/{s}/pre/T1.nii.gz"),
        "training/Utrecht/{s}/wmh.nii.gz",
        (2, 1),
    ),
    "word": _volume(
        "WORD-V0.1.0", ("0001", "0002"), "imagesTr/word_{s}.nii.gz", "labelsTr/word_{s}.nii.gz", (1, 10, 16)
    ),
    "lgg_flair": Fake(
        "kaggle_3m",
        ("TCGA_CS_4941_19960909", "TCGA_DU_5851_19950428"),
        (("{s}/{s}_{k}.tif", "rgb"), ("{s}/{s}_{k}_mask.tif", ("mask", 255))),
    ),
    "brain_met_share": Fake(
        "mets_stanford_releaseMask_train",
        ("Mets_000", "Mets_002"),
        tuple((f"{{s}}/{c}/{{k}}.png", "image") for c in "0123") + (("{s}/seg/{k}.png", ("mask", 255)),),
    ),
    # 2D datasets
    "bbbc003": Fake(
        "BBBC003",
        ("7_19_M1E1", "7_19_M1E2"),
        (("mouse_embryos_dic_images/{s}.tif", "image"), ("mouse_embryos_dic_foreground/{s}.png", ("mask", 255))),
        dims=2,
    ),
    "bbbc038": Fake(
        "stage1_train",
        ("00071198d059ba7f", "003cee89357d9fe1"),
        (("{s}/images/{s}.png", "rgb"), ("{s}/masks/a1.png", ("mask", 1)), ("{s}/masks/b2.png", ("mask", 2))),
        (1, 2),
        dims=2,
    ),
    "bus": Fake("BUS", ("000001", "000002"), (("original/{s}.png", "image"), ("GT/{s}.png", ("mask", 255))), dims=2),
    "camus": Fake(
        "CAMUS",
        ("patient0001", "patient0002"),
        (
            ("database_nifti/{s}/{s}_2CH_ED.nii.gz", "image"),
            ("database_nifti/{s}/{s}_2CH_ED_gt.nii.gz", "label"),
            ("database_nifti/{s}/{s}_4CH_ES.nii.gz", "image"),
            ("database_nifti/{s}/{s}_4CH_ES_gt.nii.gz", "label"),
            ("database_nifti/{s}/{s}_4CH_half_sequence.nii.gz", "image"),
            ("training/{s}/{s}_2CH_ES.mhd", "image"),
            ("training/{s}/{s}_2CH_ES_gt.mhd", "label"),
        ),
        (2, 1, 3),
        dims=2,
    ),
    "consep": Fake(
        "CoNSeP",
        ("train_1", "test_1"),
        (
            ("Train/Images/{s}.png", "rgb", ("train_1",)),
            ("Train/Labels/{s}.mat", "label", ("train_1",)),
            ("Test/Images/{s}.png", "rgb", ("test_1",)),
            ("Test/Labels/{s}.mat", "label", ("test_1",)),
        ),
        (5, 2, 4),
        dims=2,
    ),
    "eophtha": Fake(
        "e_ophtha",
        ("E0000404", "E0000043"),
        (
            ("e_optha_EX/EX/{s}/C0001273.jpg", "rgb"),
            ("e_optha_EX/Annotation_EX/{s}/C0001273_EX.png", ("mask", 255)),
            ("e_optha_EX/healthy/{s}/C0001111.jpg", "rgb"),
            ("e_optha_MA/MA/{s}/C0000886.jpg", "rgb"),
            ("e_optha_MA/Annotation_MA/{s}/C0000886.png", ("mask", 255)),
        ),
        dims=2,
    ),
    "feto_plac": Fake(
        "FetoscopyPlacentaDataset",
        ("video01", "video02"),
        (
            ("Vessel_segmentation_annotations/{s}/images/anon001_00001.png", "rgb"),
            ("Vessel_segmentation_annotations/{s}/masks_gt/anon001_00001_mask.png", ("mask", 255)),
            ("Vessel_segmentation_annotations/{s}/images/anon001_00090.png", "rgb"),
            ("Vessel_segmentation_annotations/{s}/masks_gt/anon001_00090_mask.png", ("mask", 255)),
        ),
        dims=2,
    ),
    "idrid": Fake(
        "IDRiD",
        ("IDRiD_01", "IDRiD_55"),
        (
            ("A. Segmentation/1. Original Images/a. Training Set/{s}.jpg", "rgb"),
            *(
                (
                    f"A. Segmentation/2. All Segmentation Groundtruths/a. Training Set/{folder}/{{s}}_{code}.tif",
                    ("mask", v),
                    ("IDRiD_01",) if code == "SE" else ("IDRiD_01", "IDRiD_55"),
                )
                for v, (folder, code) in enumerate(
                    (
                        ("1. Microaneurysms", "MA"),
                        ("2. Haemorrhages", "HE"),
                        ("3. Hard Exudates", "EX"),
                        ("4. Soft Exudates", "SE"),
                        ("5. Optic Disc", "OD"),
                    ),
                    start=1,
                )
            ),
        ),
        (5, 2, 3, 4, 1),
        dims=2,
    ),
    "kvasir_seg": Fake(
        "Kvasir-SEG",
        ("cju0qkwl35piu0993l0dewei2", "cju0roawvklrq0799vmjorwfv"),
        (("images/{s}.jpg", "rgb"), ("masks/{s}.jpg", ("rgbmask", 255))),
        dims=2,
    ),
    "octa500": Fake(
        "OCTA-500",
        ("10001", "10002"),
        (
            ("OCTA_6M/Projection Maps/OCTA(FULL)/{s}.bmp", "image"),
            ("OCTA_6M/Projection Maps/OCT(FULL)/{s}.bmp", "image"),
            ("OCTA_6M/Projection Maps/OCTA(ILM_OPL)/{s}.bmp", "image"),
            ("OCTA_6M/GroundTruth/{s}.bmp", "label"),
        ),
        (255, 100),
        dims=2,
    ),
    "rose": Fake(
        "ROSE",
        ("01", "02"),
        (
            ("ROSE-1/SVC/train/img/{s}.tif", "image"),
            ("ROSE-1/SVC/train/gt/{s}.tif", ("mask", 255)),
            ("ROSE-1/SVC_DVC/test/img/{s}.png", "image"),
            ("ROSE-1/SVC_DVC/test/gt/{s}.tif", ("mask", 255)),
            ("ROSE-2/train/original/{s}.png", "image"),
            ("ROSE-2/train/gt/{s}.png", ("mask", 255)),
        ),
        dims=2,
    ),
    # DICOM series (one file per slice {k})
    "chaos": Fake(
        "CHAOS",
        ("1", "2"),
        (
            ("Train_Sets/CT/{s}/DICOM_anon/i{k},0000b.dcm", "image"),
            ("Train_Sets/CT/{s}/Ground/liver_GT_{k}.png", ("mask", 63)),
            ("Train_Sets/MR/{s}/T2SPIR/DICOM_anon/IMG-0004-{k}.dcm", "image"),
            ("Train_Sets/MR/{s}/T2SPIR/Ground/IMG-0004-{k}.png", "label"),
            ("Train_Sets/MR/{s}/T1DUAL/DICOM_anon/InPhase/IMG-0002-{k}.dcm", "image"),
            ("Train_Sets/MR/{s}/T1DUAL/DICOM_anon/OutPhase/IMG-0002-{k}.dcm", "image"),
            ("Train_Sets/MR/{s}/T1DUAL/Ground/IMG-0002-{k}.png", "label"),
        ),
        (63, 126, 252),
    ),
    "i2cvb": Fake(
        "I2CVB",
        ("Patient_383", "Patient_416"),
        (
            ("GE/{s}/T2W/{k}.dcm", "image"),
            ("GE/{s}/GT/prostate/{k}.dcm", ("value", 1)),
            ("GE/{s}/GT/pz/{k}.dcm", ("mask", 1)),
            ("GE/{s}/GT/cg/{k}.dcm", ("mask", 2), ("Patient_383",)),
        ),
        (1, 2),
    ),
}


def write_nci_isbi(root: Path, rng) -> None:
    """NCI-ISBI 2013: a TCIA DICOM series per case (study/series folders) and the challenge's NRRD label."""
    for case in ("Prostate3T-01-0001", "ProstateDx-01-0006"):
        collection = "Prostate-3T" if case.startswith("Prostate3T") else "PROSTATE-DIAGNOSIS"
        label = np.stack([label_plane(nested_labels(SHAPE_3D, (2, 1)), k) for k in range(SLICES)], axis=2)  # (r, c, k)
        for k in range(SLICES):
            write_array(
                root
                / "NCI-ISBI"
                / collection
                / case
                / "1.3.6.1.4.1.9328.50.4.1"
                / "1.3.6.1.4.1.9328.50.4.2"
                / f"1-{k + 1:02d}.dcm",
                role_array("image", label[:, :, k], rng),
                index=k,
            )
        write_array(
            root / "NCI-ISBI" / "Labels" / f"{case}.nrrd", np.swapaxes(label, 0, 1).astype(np.uint8)
        )  # (x, y, z)


def write_scd(root: Path, rng) -> None:
    """Sunnybrook: DICOM images of a cine series; i/o contour text files for some image numbers."""
    for case in ("SC-HF-I-01", "SC-N-02"):
        label = nested_labels(SHAPE_2D, (1, 2))
        for num in ("0020", "0040", "0048"):
            write_array(
                root / "SCD" / "SCD_DeidentifiedImages" / case / "CINESAX_300" / f"IM-0003-{num}.dcm",
                role_array("image", label, rng),
            )
        contours = root / "SCD" / "SCD_ManualContours" / case / "contours-manual" / "IRCCI-expert"
        contours.mkdir(parents=True, exist_ok=True)
        for num, kinds in (("0020", "io"), ("0048", "i")):  # image 0040 has no contour: not used
            for kind, radius in (("i", 6.0), ("o", 12.0)):
                if kind in kinds:
                    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
                    points = np.stack([24 + radius * np.cos(angles), 20 + radius * np.sin(angles)], axis=1)
                    np.savetxt(contours / f"IM-0001-{num}-{kind}contour-manual.txt", points, fmt="%.2f")
                (contours / f"IM-0001-{num}-p1contour-manual.txt").write_text("24.0 20.0\n25.0 20.0\n25.0 21.0\n")


def write_isbi_em(root: Path, rng) -> None:
    """ISBI 2012: two 3-page TIFF stacks; membranes are black (0) in the labels."""
    import tifffile

    ring = np.where(nested_labels(SHAPE_2D, (1, 2)) == 1, 0, 255).astype(np.uint8)  # a black membrane ring
    (root / "ISBI2012").mkdir(parents=True, exist_ok=True)
    pages = {
        "train-volume.tif": np.stack([role_array("image", 255 - ring, rng)] * 3),
        "train-labels.tif": np.stack([ring] * 3),
    }
    for name, stack in pages.items():
        tifffile.imwrite(root / "ISBI2012" / name, stack, photometric="minisblack")


def write_pannuke(root: Path, rng) -> None:
    """PanNuke: per fold, images.npy (N, H, W, 3) float64 and masks.npy (N, H, W, 6) of instance ids."""
    for fold in (1, 2):
        label = nested_labels(SHAPE_2D, (1, 3, 5))  # channels 0, 2, 4: neoplastic, connective, epithelial
        masks = np.stack([(label == c + 1) * (7 + c) for c in range(5)] + [label == 0], axis=-1).astype(np.float64)
        images = np.stack([role_array("rgb", label, rng)] * 2).astype(np.float64)
        for kind, array in (("images", images), ("masks", np.stack([masks] * 2))):
            path = root / "PanNuke" / f"Fold {fold}" / kind / f"fold{fold}" / f"{kind}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, array)


def write_tucc(root: Path, rng) -> None:
    """TUCC: one dataset.hdf5 with image, mask (frames x H x W), annot_id and frame_num."""
    import h5py

    label = nested_labels(SHAPE_2D, (1,))
    (root / "TUCC").mkdir(parents=True, exist_ok=True)
    with h5py.File(root / "TUCC" / "dataset.hdf5", "w") as handle:
        handle["image"] = np.stack([role_array("image", label, rng) for _ in range(3)])
        handle["mask"] = np.stack([label] * 3).astype(np.uint8)
        handle["annot_id"] = np.array([b"101_", b"101_", b"102_"])
        handle["frame_num"] = np.array([0, 1, 0])


def write_chexplanation(root: Path, rng) -> None:
    """CheXlocalize: gt_segmentations_val.json of COCO RLE masks per pathology, CheXpert validation images."""
    from universeg_datasets.raw import formats

    masks = {}
    for patient in ("patient64541", "patient64542"):
        label = nested_labels(SHAPE_2D, (1, 2))
        dummy_image = role_array("image", label, rng)
        write_array(
            root / "CheXplanation" / "CheXpert-v1.0" / "valid" / patient / "study1" / "view1_frontal.jpg", dummy_image
        )
        masks[f"{patient}_study1_view1_frontal"] = {
            "Cardiomegaly": formats.encode_rle(label == 1),
            "Lung Lesion": formats.encode_rle(label == 2),
            "Pneumothorax": formats.encode_rle(np.zeros(SHAPE_2D, bool)),
        }
    (root / "CheXplanation" / "gt_segmentations_val.json").write_text(json.dumps(masks))


def write_video(path: Path, frames: np.ndarray) -> None:
    """An MJPEG AVI of grey ``(T, H, W)`` uint8 frames (PyAV)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuvj420p"
        for plane in frames:
            frame = av.VideoFrame.from_ndarray(np.repeat(plane[..., None], 3, axis=-1), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def write_echonet(root: Path, rng) -> None:
    """EchoNet-Dynamic: 4-frame videos and VolumeTracings.csv lines for frames 1 (ED) and 3 (ES)."""
    rows = ["FileName,X1,Y1,X2,Y2,Frame"]
    for name in ("0X100009310A3BD7FC", "0X1002E8FBACD08477"):
        label = nested_labels(SHAPE_2D, (1,))
        write_video(
            root / "EchoNet-Dynamic" / "Videos" / f"{name}.avi",
            np.stack([role_array("image", label, rng) for _ in range(4)]),
        )
        for frame in (1, 3):
            rows.append(f"{name}.avi,24,4,24,36,{frame}")  # the long axis (left out)
            for y in np.linspace(8, 32, 7):
                half = 10 * np.sqrt(max(0.0, 1 - ((y - 20) / 13) ** 2))
                rows.append(f"{name}.avi,{24 - half:.2f},{y:.2f},{24 + half:.2f},{y:.2f},{frame}")
    (root / "EchoNet-Dynamic" / "VolumeTracings.csv").write_text("\n".join(rows) + "\n")


def write_hmc_qu(root: Path, rng) -> None:
    """HMC-QU: 5-frame videos (40x48) and Mask_<video>.mat with 3 labelled frames on the 32x32 centred square."""
    import scipy.io

    for name in ("ES0001 _4CH_1", "ES0002 _4CH_1"):
        label = nested_labels(SHAPE_2D, (1,))
        write_video(
            root / "HMC-QU" / "A4C" / f"{name}.avi", np.stack([role_array("image", label, rng) for _ in range(5)])
        )
        square = label[:, 4:44]  # the centred 40x40 square, at 32x32
        small = square[np.ix_(np.linspace(0, 39, 32).astype(int), np.linspace(0, 39, 32).astype(int))]
        masks = root / "HMC-QU" / "LV Ground-truth Segmentation Masks" / f"Mask_{name}.mat"
        masks.parent.mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(masks, {"predicted": np.stack([small] * 3).astype(np.uint8)})


def write_mnms(root: Path, rng) -> None:
    """M&Ms: 4D cine volumes whose ground truth labels two frames (ED, ES) of four."""
    for subject, split in (("A0S9V9", "Training/Labeled"), ("A1D0Q7", "Validation")):
        label = nested_labels(SHAPE_3D, (3, 2, 1))
        frames = np.stack([label * (t in (0, 2)) for t in range(4)], axis=-1).astype(np.uint8)
        image = np.stack([role_array("image", label, rng) for _ in range(4)], axis=-1)
        write_array(root / "OpenDataset" / split / subject / f"{subject}_sa.nii.gz", image)
        write_array(root / "OpenDataset" / split / subject / f"{subject}_sa_gt.nii.gz", frames)


def writer(name: str):
    """A ``dummy.WRITERS`` entry: ``(manual_dir, rng) -> None``."""
    return lambda root, rng: write_fake(name, root, int(rng.integers(1 << 30)))


WRITERS = {
    **{name: writer(name) for name in FAKES},
    "mnms": write_mnms,
    "nci_isbi": write_nci_isbi,
    "scd": write_scd,
    "isbi_em": write_isbi_em,
    "pannuke": write_pannuke,
    "tucc": write_tucc,
    "chexplanation": write_chexplanation,
    "echonet": write_echonet,
    "hmc_qu": write_hmc_qu,
}
