"""Episode pipeline: task weighting, distinct subjects, sharding by process, exact iterator resume."""

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
    return episodes.EpisodeSampler(store, tasks, support, episodes.task_probabilities(tasks, **weights), None, None)


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


def test_episode_shapes_and_values(store):
    batch = batches(store, 1, in_task={"affine": {"p": 1.0}}, task_augmentation={"flip_labels": {"p": 0.5}})[0]
    assert batch["query"].shape == batch["query_label"].shape == (4, 16, 16, 1)
    assert batch["support_images"].shape == batch["support_labels"].shape == (4, SUPPORT, 16, 16, 1)
    for key in ("query", "query_label", "support_images", "support_labels"):
        assert batch[key].dtype == np.float32
        assert 0.0 <= batch[key].min() and batch[key].max() <= 1.0
    assert set(np.unique(batch["support_labels"])) <= {0.0, 1.0}


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
def test_iterator_state_restores_the_exact_position(store, num_workers):
    ds = episodes.episode_batches(store, support_size=SUPPORT, batch_size=2, seed=0, in_task={"noise": {"p": 1.0}})
    reference = [ds[i] for i in range(5)]
    it = episodes.iterate(ds, num_workers=num_workers, prefetch=2)
    try:
        for i in range(3):
            assert_same_batch(next(it), reference[i])
        state = it.get_state()
    finally:
        it.close()
    resumed = episodes.iterate(ds, num_workers=num_workers, prefetch=2)
    try:
        resumed.set_state(state)
        assert_same_batch(next(resumed), reference[3])
        assert_same_batch(next(resumed), reference[4])
    finally:
        resumed.close()
