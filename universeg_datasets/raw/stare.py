"""STARE: retinal vessels in fundus photographs (Hoover et al. 2000)."""

from __future__ import annotations

from universeg_datasets.raw.common import Pair, RawTaskBuilder, files, manual_instructions
from universeg_datasets.readers import require_file


class Stare(RawTaskBuilder):
    """STARE vessel segmentation: the 20 fundus images hand-labelled by A. Hoover (labels-ah)."""

    RAW_FOLDER = "STARE"
    HOMEPAGE = "https://cecas.clemson.edu/~ahoover/stare/probing/index.html"
    MANUAL_DOWNLOAD_INSTRUCTIONS = manual_instructions(
        HOMEPAGE,
        "  STARE/stare-images/im0001.ppm.gz ...   (stare-images.tar extracted)\n"
        "  STARE/labels-ah/im0001.ah.ppm.gz ...   (labels-ah.tar extracted)\n"
        "Files may also be gunzipped (.ppm).",
    )

    def _pairs(self, root):
        pairs = []
        for label in files(root / "labels-ah", "im*.ah.ppm*"):
            name = label.name.split(".")[0]
            suffix = ".ppm.gz" if label.name.endswith(".gz") else ".ppm"
            candidates = [root / "stare-images" / f"{name}{s}" for s in (suffix, ".ppm.gz", ".ppm")]
            image = next((c for c in candidates if c.is_file()), candidates[0])
            require_file(image, f"image for label {label}")
            pairs.append(Pair(name, image, (label,), ("fundus",), {"vessel": None}))
        return pairs
