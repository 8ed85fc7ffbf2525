"""Shared standardisation, file readers and the catalog."""

import re
from pathlib import Path

import numpy as np
import pytest

from universeg_datasets import catalog, readers, registry, standardize


def test_slice_indices():
    assert standardize.slice_indices(11, 1) == [5]
    indices = standardize.slice_indices(100, 5, span=0.6)
    assert len(indices) == 5 and indices[0] >= 19 and indices[-1] <= 80
    assert standardize.slice_indices(4, 10) == sorted(set(standardize.slice_indices(4, 10)))
    with pytest.raises(ValueError, match="slices"):
        standardize.slice_indices(10, 0)


def test_volume_views_cut_every_axis():
    volume = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    views = list(standardize.volume_views(volume, volume % 2, slices=1))
    assert [(v.axis, v.slice_index, v.image.shape) for v in views] == [(0, 2, (5, 6)), (1, 2, (4, 6)), (2, 3, (4, 5))]
    np.testing.assert_array_equal(views[1].image, volume[:, 2, :])


def test_task_ids_are_clean_and_stable():
    assert (
        standardize.task_id("msd_colon", "CT", "colon cancer primaries", 2) == "msd_colon/CT/colon_cancer_primaries/2"
    )
    assert standardize.task_id("a", "b/c", "d", 0) == "a/b_c/d/0"
    with pytest.raises(ValueError, match="usable"):
        standardize.task_id("a", "b", " / ", 0)


def test_view_examples_one_per_present_label():
    label = np.zeros((20, 20), np.int32)
    label[2:8, 2:8], label[10:18, 10:18] = 1, 2
    image = np.random.default_rng(0).random((20, 20, 3))
    view = standardize.View(image, label)
    examples = dict(
        standardize.view_examples(
            view, {"a": 1, "b": 2, "c": 3, "any": None}, dataset="d", modality="m", subject="s", size=16
        )
    )
    assert sorted(e["label_name"] for e in examples.values()) == ["a", "any", "b"]  # "c" is absent: skipped
    for example in examples.values():
        assert example["image"].shape == example["label"].shape == (16, 16, 1)
        assert example["image"].dtype == example["label"].dtype == np.uint8
        assert example["image"].max() > example["image"].min() and set(np.unique(example["label"])) == {0, 1}


def test_check_same_size_names_both_files():
    with pytest.raises(ValueError, match="lab.png.*img.png"):
        standardize.check_same_size(np.zeros((4, 5, 3)), np.zeros((4, 6)), "img.png", "lab.png", ndim=2)


def test_readers_name_the_file(tmp_path):
    (tmp_path / "bad.nii.gz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.nii.gz"):
        readers.read_volume(tmp_path / "bad.nii.gz")


def test_catalog_lists_53_datasets_with_known_builders():
    entries = catalog.load_catalog()
    assert len(entries) == 53
    listed = {b for e in entries for b in e["builders"]}
    assert listed == set(registry.RAW)  # every raw builder is in the catalog, and only real builders are


def test_docs_table_is_up_to_date():
    docs = (Path(__file__).parents[1] / "docs" / "datasets.md").read_text()
    assert catalog.markdown_table(catalog.load_catalog()) in docs, "regenerate: python -m universeg_datasets.catalog"


def test_bad_catalog_is_rejected(tmp_path):
    path = tmp_path / "catalog.json"
    path.write_text('{"datasets": [{"name": "X"}]}')
    with pytest.raises(ValueError, match=re.escape("lacks")):
        catalog.load_catalog(path)
