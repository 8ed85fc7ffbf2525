"""Check a built dataset against the documented layout: the checks the tests run, usable on real builds.

python -m universeg_datasets.validate ~/tensorflow_datasets/drive/size128/1.0.0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from universeg_jax.data.contract import INDEX_FILE


def validate_built(path) -> dict:
    """Check every example of the built dataset at ``path``; returns a summary, raises ValueError on a fault.

    Checks: image and label ``(S,S,1)`` uint8, label values in {0, 1} and not empty, task/subject
    equal to the task index, task id ``dataset/modality/label/axis`` matching the example's fields.
    """
    path = Path(path)
    source = tfds.builder_from_directory(str(path)).as_data_source(split="train")
    index = json.loads((path / INDEX_FILE).read_text())
    if len(index["example_task"]) != len(source):
        raise ValueError(f"{path}: index lists {len(index['example_task'])} examples, data has {len(source)}")
    size = None
    for i in range(len(source)):
        example = source[i]
        image, label = example["image"], example["label"]
        size = size or image.shape[0]
        for name, array in (("image", image), ("label", label)):
            if array.shape != (size, size, 1) or array.dtype != np.uint8:
                raise ValueError(
                    f"{path} example {i}: {name} is {array.dtype}{array.shape}, expected uint8({size}, {size}, 1)"
                )
        if not set(np.unique(label).tolist()) <= {0, 1} or not label.any():
            raise ValueError(f"{path} example {i}: label values {np.unique(label)}, expected 0/1 with some 1")
        task, subject = example["task"].decode(), example["subject"].decode()
        if task != index["tasks"][index["example_task"][i]] or subject != index["example_subject"][i]:
            raise ValueError(f"{path} example {i}: task/subject {task}/{subject} differ from the task index")
        expected_end = f"/{example['modality'].decode()}/"
        if expected_end not in task or not task.endswith(f"/{example['axis']}"):
            raise ValueError(f"{path} example {i}: task id {task} does not match modality/axis fields")
    return {"examples": len(source), "tasks": len(index["tasks"]), "size": size}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m universeg_datasets.validate", description=__doc__.split("\n")[0])
    parser.add_argument("builds", nargs="+", metavar="PATH", help="version folders of built datasets")
    for argument in parser.parse_args().builds:
        print(argument, validate_built(argument))
