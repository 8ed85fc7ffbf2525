"""STARE: retinal vessels in fundus photographs (Hoover et al. 2000)."""

from __future__ import annotations

from pathlib import Path

from universeg_datasets.raw.common import Pair, files
from universeg_datasets.raw.layout import define
from universeg_datasets.readers import require_file

# Label folder -> file tag of the two annotators (labels-ah.tar, labels-vk.tar); A. Hoover's labels first.
ANNOTATORS = {"labels-ah": "ah", "labels-vk": "vk"}


def stare_pairs(root: Path) -> list[Pair]:
    """Each labelled image (gzipped or not) with its label from the first annotator that has labels."""
    pairs = []
    for label in annotator_labels(root)[1]:
        name = label.name.split(".")[0]
        suffix = ".ppm.gz" if label.name.endswith(".gz") else ".ppm"
        candidates = [root / "stare-images" / f"{name}{s}" for s in (suffix, ".ppm.gz", ".ppm")]
        image = next((c for c in candidates if c.is_file()), candidates[0])
        require_file(image, f"image for label {label}")
        pairs.append(Pair(name, image, (label,), ("fundus",), {"vessel": None}))
    return pairs


def annotator_labels(root):
    """(label folder, its label files) of the first annotator with labels under ``root``."""
    for folder, tag in ANNOTATORS.items():
        labels = files(root / folder, f"im*.{tag}.ppm*")
        if labels:
            return folder, labels
    looked = ", ".join(f"{root / folder}/im*.{tag}.ppm[.gz]" for folder, tag in ANNOTATORS.items())
    raise FileNotFoundError(f"stare: no vessel labels found; looked for {looked}")


define(
    globals(),
    "stare",
    folder="STARE",
    url="https://cecas.clemson.edu/~ahoover/stare/probing/index.html",
    doc="STARE vessel segmentation: the 20 fundus images hand-labelled by A. Hoover (labels-ah) or, when only\n"
    "    those are present, by V. Kouznetsova (labels-vk); the metadata's ``annotator`` says which.",
    pairs=stare_pairs,
    source_metadata=lambda root: {"annotator": annotator_labels(root)[0]},
    layout_text="  STARE/stare-images/im0001.ppm.gz ...   (stare-images.tar extracted)\n"
    "  STARE/labels-ah/im0001.ah.ppm.gz ...   (labels-ah.tar extracted; or labels-vk/im0001.vk.ppm.gz ...)",
    note="Files may also be gunzipped (.ppm).",
)
