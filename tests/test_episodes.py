"""Episode pipeline: task weighting, distinct subjects, uint8 episodes with their index, sharding by process,
resuming at a batch position, device prefetch."""

import collections
import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import FakeTaskStore
from universeg_jax.data import episodes

SUPPORT = 3


@pytest.fixture(scope="module")
def store():
    return FakeTaskStore({"fake_a": 3, "fake_b": 1}, subjects=6, examples_per_subject=3, size=16)


def sampler_for(store, support=SUPPORT, **weights):
    tasks = episodes.usable_tasks(store.tasks, support)
    return episodes.EpisodeSampler(store, tasks, support, episodes.task_probabilities(tasks, **weights))


def batches(store, n, **kwargs):
    kwargs = {"support_size": SUPPORT, "batch_size": 4, "seed": 3, **kwargs}
    ds = episodes.episode_batches(store, **kwargs)
    return [ds[i] for i in range(n)]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_subjects_are_not_repeated_within_an_episode(store, seed):
    sampler = sampler_for(store)
    task, indices = sampler.choose(np.random.default_rng(seed))
    subjects = [store[i]["subject"] for i in indices]
    assert len(indices) == SUPPORT + 1
    assert len(set(subjects)) == len(subjects)
    assert {store[i]["task"] for i in indices} == {sampler.tasks[task].id}


def test_episodes_are_the_stores_uint8_examples_with_their_index(store):
    ds = episodes.episode_batches(store, support_size=SUPPORT, batch_size=4, seed=3)
    batch = ds[2]
    assert batch["query"].shape == batch["query_label"].shape == (4, 16, 16, 1)
    assert batch["support_images"].shape == batch["support_labels"].shape == (4, SUPPORT, 16, 16, 1)
    for key in ("query", "query_label", "support_images", "support_labels"):
        assert batch[key].dtype == np.uint8
    assert set(np.unique(batch["support_labels"])) <= {0, 1}
    np.testing.assert_array_equal(batch["episode"], [8, 9, 10, 11])  # global batch t holds episodes [4t, 4t+4)
    # Each example is one of the store's, unchanged (augmentation happens later, on the devices).
    images, _ = store.gather(range(len(store)))
    for image in batch["support_images"].reshape(-1, 16, 16, 1):
        assert (images == image).all(axis=(1, 2, 3)).any()


def test_datasets_are_weighted_before_tasks(store):
    # fake_a has 3 tasks and fake_b 1: by default each dataset gets half of the episodes.
    probs = episodes.task_probabilities(store.tasks)
    by_dataset = collections.defaultdict(float)
    for task, p in zip(store.tasks, probs):
        by_dataset[task.dataset] += p
    assert by_dataset == pytest.approx({"fake_a": 0.5, "fake_b": 0.5})
    probs = episodes.task_probabilities(store.tasks, "fake_a=3,fake_b=1", "fake_a/task0=2")
    np.testing.assert_allclose(probs, [0.375, 0.1875, 0.1875, 0.25])


def test_zero_weight_dataset_is_never_sampled(store):
    sampler = sampler_for(store, dataset_weights="fake_a=0")
    rng = np.random.default_rng(0)
    assert {sampler.tasks[sampler.choose(rng)[0]].dataset for _ in range(50)} == {"fake_b"}


@pytest.mark.parametrize(
    "weights, message",
    [
        ({"dataset_weights": "fake_a"}, "must look like"),
        ({"dataset_weights": "fake_a=x"}, "not a number"),
        ({"dataset_weights": "fake_a=-1"}, "finite and >= 0"),
        ({"dataset_weights": "nope=1"}, "not among the training tasks"),
        ({"dataset_weights": "fake_a=0,fake_b=0"}, "weight 0"),
    ],
)
def test_bad_weights_are_rejected(store, weights, message):
    with pytest.raises(ValueError, match=message):
        episodes.task_probabilities(store.tasks, **weights)


def test_support_larger_than_every_task_fails_clearly(store):
    with pytest.raises(ValueError, match=r"support_size=6 is larger than every task of dataset 'fake_a'"):
        episodes.usable_tasks(store.tasks, 6)


def test_repeated_subjects_fill_the_support_of_small_tasks_but_never_with_the_query():
    store = FakeTaskStore({"fake_a": 2}, subjects=4, examples_per_subject=2, size=16)
    tasks = episodes.usable_tasks(store.tasks, 6, repeat_subjects=True)
    assert len(tasks) == 2  # 4 subjects for a support of 6 (without repeats: "larger than every task")
    sampler = episodes.EpisodeSampler(store, tasks, 6, episodes.task_probabilities(tasks), repeat_subjects=True)
    for seed in range(20):
        _, indices = sampler.choose(np.random.default_rng(seed))
        subjects = [store[i]["subject"] for i in indices]
        assert len(indices) == 7 and subjects[-1] not in subjects[:-1]
        assert set(subjects[:-1]) == {f"subject{s}" for s in range(4)} - {subjects[-1]}  # every other subject
    ds = episodes.episode_batches(store, support_size=6, batch_size=2, seed=0, repeat_subjects=True)
    assert ds[0]["support_images"].shape == (2, 6, 16, 16, 1)


def test_small_tasks_are_dropped_when_others_remain():
    store = FakeTaskStore({"fake_a": 1}, subjects=4, size=16)
    store.tasks.append(dataclasses.replace(store.tasks[0], id="fake_a/small", subjects=("s",) * 4))
    assert [t.id for t in episodes.usable_tasks(store.tasks, 3)] == ["fake_a/task0"]


def test_processes_get_contiguous_slices_of_the_same_global_batches(store):
    whole = batches(store, 3)
    halves = [batches(store, 3, process_index=p, process_count=2) for p in range(2)]
    for t in range(3):
        for key in whole[t]:
            np.testing.assert_array_equal(np.concatenate([halves[0][t][key], halves[1][t][key]]), whole[t][key])


def test_batch_size_must_divide_over_processes(store):
    with pytest.raises(ValueError, match="divisible by the number of processes"):
        batches(store, 1, batch_size=3, process_count=2)


def test_same_seed_same_episodes_other_seed_other_episodes(store):
    a, b, c = batches(store, 2), batches(store, 2), batches(store, 2, seed=4)
    np.testing.assert_array_equal(a[1]["support_images"], b[1]["support_images"])
    assert not np.array_equal(a[1]["support_images"], c[1]["support_images"])


def assert_same_batch(x, y):
    assert x.keys() == y.keys()
    for key in x:
        np.testing.assert_array_equal(x[key], y[key])


@pytest.mark.parametrize("num_workers", [0, 1])
def test_iterating_from_a_position_gives_the_batches_of_that_position(store, num_workers):
    ds = episodes.episode_batches(store, support_size=SUPPORT, batch_size=2, seed=0)
    reference = [ds[i] for i in range(5)]
    it = episodes.iterate(ds, start=3, num_workers=num_workers, prefetch=2)
    try:
        assert_same_batch(next(it), reference[3])
        assert_same_batch(next(it), reference[4])
    finally:
        it.close()


def test_device_prefetcher_keeps_order_counts_waiting_and_passes_errors_on():
    placed = []

    def source():
        for i in range(3):
            yield {"x": np.full(2, i)}
        raise RuntimeError("reader broke")

    prefetcher = episodes.DevicePrefetcher(source(), lambda b: placed.append(b) or b, size=2)
    try:
        assert [int(next(prefetcher)["x"][0]) for _ in range(3)] == [0, 1, 2]
        with pytest.raises(RuntimeError, match="reader broke"):
            next(prefetcher)
        assert prefetcher.wait_seconds >= 0 and len(placed) == 3
    finally:
        prefetcher.close()
    with pytest.raises(ValueError, match="device prefetch size must be >= 1"):
        episodes.DevicePrefetcher(source(), lambda b: b, size=0)
