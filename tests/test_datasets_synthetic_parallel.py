"""Synthetic tasks built by worker processes are the tasks a single process builds, in the same order."""

from universeg_datasets import synthetic_tasks


def test_parallel_build_equals_serial_build(monkeypatch):
    config = synthetic_tasks.SyntheticConfig(name="tiny", size=64, num_tasks=7, subjects=3, seed=5)
    builder = object.__new__(synthetic_tasks.SyntheticTasks)  # only _generate_examples is used
    builder._builder_config = config
    monkeypatch.setattr(type(builder), "builder_config", property(lambda self: self._builder_config))
    serial = list(builder._generate_examples(None))
    monkeypatch.setattr(synthetic_tasks, "build_processes", lambda num_tasks: 2)
    parallel = list(builder._generate_examples(None))
    assert [key for key, _ in parallel] == [key for key, _ in serial]
    assert len({example["task"] for _, example in serial}) == 7
    for (_, a), (_, b) in zip(serial, parallel):
        assert (a["image"] == b["image"]).all() and (a["label"] == b["label"]).all()
