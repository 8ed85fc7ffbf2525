"""Test set-up: JAX on CPU, deterministic and quiet; an in-memory TaskStore for the training tests; the small model,
``segment`` options and worker processes the command and training tests share."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--size", "32", "32", "--quiet"]  # the ``segment`` options of every command test: 32x32, no progress


@pytest.fixture(autouse=True, scope="session")
def isolated_data_and_cache(tmp_path_factory):
    """No test may read or fill the user's TFDS data dir or weights cache: point both at a fresh directory."""
    root = tmp_path_factory.mktemp("home")
    for name, folder in (("TFDS_DATA_DIR", "tensorflow_datasets"), ("UNIVERSEG_JAX_CACHE", "universeg_jax")):
        os.environ[name] = str(root / folder)
    yield


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A small random-weight model (encoder (8, 8)) as a .safetensors file, for the command tests' ``--weights``."""
    from flax import nnx

    from universeg_jax import weights
    from universeg_jax.model import UniverSeg

    return weights.save(UniverSeg((8, 8), rngs=nnx.Rngs(0)), tmp_path_factory.mktemp("w") / "small.safetensors")


def segment_options(images, labels, query, out, weights, *extra) -> list[str]:
    """The options of ``universeg-jax segment`` for one support set, query and output folder, with ``SMALL`` and
    ``extra`` appended."""
    paths = (
        "--support-images",
        images,
        "--support-labels",
        labels,
        "--query",
        query,
        "--out",
        out,
        "--weights",
        weights,
    )
    return [str(a) for a in (*paths, *SMALL, *extra)]


def start_script(script, *args) -> subprocess.Popen:
    """``python script args`` from the repository root, on the CPU, in its own process group (as a job under a
    scheduler), stdout and stderr in one text pipe."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen(
        [sys.executable, str(script), *map(str, args)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@dataclasses.dataclass(frozen=True)
class FakeTask:
    """Same fields as ``universeg_jax.data.tasks.Task``."""

    id: str
    dataset: str
    examples: tuple
    subjects: tuple


class FakeTaskStore:
    """In-memory stand-in for ``universeg_jax.data.tasks.TaskStore`` (same interface, picklable).

    Each task is "segment the disc of brightness ``level``" on images holding a disc and a square of other
    brightness, so tasks really differ and a model can learn them. ``datasets`` maps dataset name -> number of
    tasks.
    """

    def __init__(self, datasets=None, *, subjects=12, examples_per_subject=1, size=32, seed=0):
        datasets = datasets or {"fake_a": 2, "fake_b": 2}
        rng = np.random.default_rng(seed)
        images, labels, self.tasks, self._meta = [], [], [], []
        yy, xx = np.mgrid[:size, :size]
        for dataset, n_tasks in datasets.items():
            for t in range(n_tasks):
                task_id = f"{dataset}/task{t}"
                level = 0.3 + 0.6 * rng.random()
                examples, subject_ids = [], []
                for s in range(subjects):
                    for _ in range(examples_per_subject):
                        cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
                        radius = rng.uniform(size * 0.1, size * 0.25)
                        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
                        image = 0.1 + 0.05 * rng.random((size, size))
                        qy, qx = rng.integers(0, size // 2, 2)
                        image[qy : qy + size // 4, qx : qx + size // 4] = 1.0 - level
                        image[disc] = level
                        examples.append(len(images))
                        subject_ids.append(f"subject{s}")
                        images.append(image.astype(np.float32)[..., None])
                        labels.append(disc.astype(np.float32)[..., None])
                        self._meta.append((task_id, f"subject{s}"))
                self.tasks.append(FakeTask(task_id, dataset, tuple(examples), tuple(subject_ids)))
        # Quantised to 8 bits like a built dataset, so that ``store[i]`` and ``gather`` agree.
        self._images = (np.round(np.stack(images) * 255) / 255).astype(np.float32)
        self._labels = np.stack(labels)

    def __len__(self):
        return len(self._images)

    def __getitem__(self, index):
        task, subject = self._meta[index]
        return {"image": self._images[index], "label": self._labels[index], "task": task, "subject": subject}

    def gather(self, indices):
        """uint8 images and labels, as ``TaskStore.gather``."""
        indices = np.asarray(indices)
        return (np.round(self._images[indices] * 255).astype(np.uint8), self._labels[indices].astype(np.uint8))

    def select(self, datasets=None, exclude=()):
        view = object.__new__(FakeTaskStore)
        view._images, view._labels, view._meta = self._images, self._labels, self._meta
        view.tasks = [t for t in self.tasks if (datasets is None or t.dataset in datasets) and t.dataset not in exclude]
        return view


def random_episodes(b=3, s=4, size=32):
    """A uint8 episode batch as the train step receives it: random images, random 0/1 labels, indices 0..b-1."""
    rng = np.random.default_rng(0)
    return {
        "query": rng.integers(0, 256, (b, size, size, 1), dtype=np.uint8),
        "query_label": rng.integers(0, 2, (b, size, size, 1), dtype=np.uint8),
        "support_images": rng.integers(0, 256, (b, s, size, size, 1), dtype=np.uint8),
        "support_labels": rng.integers(0, 2, (b, s, size, size, 1), dtype=np.uint8),
        "episode": np.arange(b, dtype=np.int32),
    }


def tiny_config(**changes):
    """The ``:cpu`` preset shrunk for tests (model (8, 8), 32x32, support 3); ``changes`` maps "section.field"
    to a value."""
    from configs.base import get_config

    config = get_config("cpu")
    config.model.encoder_blocks = (8, 8)
    config.data.size = 32
    config.data.support_size = 3
    config.data.num_workers = 0
    config.train.eval_every = 0
    config.update_from_flattened_dict(changes)
    return config
