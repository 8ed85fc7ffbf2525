"""Stretch, pad to a square, or centre-crop non-square images to the model's square size? Measured on real files.

    python benchmarks/compare_aspect_ratio.py --manual_dir DIR [--size 128]

``DIR`` holds real release files of the non-square 2D datasets (Kvasir-SEG, WBC, DRIVE, CheXplanation), each in
its builder's layout, either directly (``DIR/Kvasir-SEG/...``) or under the builder's name
(``DIR/kvasir_seg/Kvasir-SEG/...``). The files are listed and read by the builders (``_pairs``, ``_read_pair``),
as a build does. Every (dataset, modality, label) with two or more labelled images is one task; each of its
images is the query once, with all the others as support (leave one out). Each mode fits the grayscale,
normalised images and the labels to ``size`` x ``size``:

* ``stretch``: resized whatever the aspect ratio (``preprocess.fit_image(..., "stretch")``);
* ``pad``: padded to a square with the edge values first, the prediction cropped back (``"pad"``);
* ``crop``: the central square only; the prediction is background outside it.

The classical baselines (``universeg_jax.baselines``) predict at ``size``; the probabilities are brought back to the
query's native size (``preprocess.unfit``) and thresholded at 0.5, and Dice is taken there against the native
label, so the modes are compared on the same pixels. Prints a Markdown table (docs/datasets.md, "Aspect ratio").

Only Kvasir-SEG (and CheXplanation, whose two sample images share no pathology) is far from square, so the square
datasets (WBC, DRIVE) are measured a second time with each image (and label) cut to its central band of rows, of a
height/width ratio drawn uniformly from ``--band`` (seeded): real pixels and labels, with aspect ratios that
differ between support and query as Kvasir-SEG's do. Rows marked ``band``.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np

from universeg_datasets import registry, standardize
from universeg_jax import baselines, metrics
from universeg_jax import preprocess as pp

DATASETS = ("kvasir_seg", "wbc", "drive", "chexplanation")
MODES = ("stretch", "pad", "crop")


def root_of(manual_dir: Path, name: str) -> Path | None:
    folder = registry.builder_class(name).RAW_FOLDER
    for root in (manual_dir / folder, manual_dir / name / folder):
        if root.is_dir():
            return root
    return None


def tasks_of(name: str, root: Path) -> dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]]:
    """{(modality, label): [(normalised grayscale image, binary label) at native size]} of one dataset."""
    builder = registry.builder_class(name)
    tasks = collections.defaultdict(list)
    for pair in builder._pairs(root):
        image, label_sets = builder._read_pair(pair)
        gray = pp.normalize_intensity(pp.to_grayscale(image))
        for label_values, label_map in label_sets:
            for label, value in label_values.items():
                mask = standardize.binarize(label_map, value)
                if mask.any():
                    tasks[(pair.modalities[0], label)].append((gray, mask))
    return dict(tasks)


def banded(tasks, low: float, high: float, seed: int = 0):
    """``tasks`` with every image and label cut to a centred band of rows, height/width drawn from [low, high]."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, items in tasks.items():
        out[key] = []
        for image, mask in items:
            h, w = mask.shape
            rows = min(h, max(8, int(round(rng.uniform(low, high) * w))))
            top = (h - rows) // 2
            if mask[top : top + rows].any():
                out[key].append((image[top : top + rows], mask[top : top + rows]))
    return out


def centre_box(shape) -> tuple[int, int, int, int]:
    h, w = shape
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side, side


def fit(image: np.ndarray, mask: np.ndarray, size: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    if mode == "crop":
        top, left, side, _ = centre_box(image.shape)
        image, mask = image[top : top + side, left : left + side], mask[top : top + side, left : left + side]
        mode = "stretch"
    fitted = np.clip(pp.fit_image(image, (size, size), mode), 0.0, 1.0)  # float rounding of the area weights
    return fitted, pp.fit_label(mask, (size, size), mode)


def unfit(probabilities: np.ndarray, shape, mode: str) -> np.ndarray:
    if mode != "crop":
        return pp.unfit(probabilities, shape, mode)
    top, left, side, _ = centre_box(shape)
    native = np.zeros(shape, np.float32)
    native[top : top + side, left : left + side] = pp.unfit(probabilities, (side, side), "stretch")
    return native


def round_trip(items, size: int, mode: str) -> list[float]:
    """Dice of each label fitted to ``size`` and brought back to its native size: what the mode itself loses."""
    return [
        float(metrics.dice(unfit(fit(image, mask, size, mode)[1], mask.shape, mode) >= 0.5, mask))
        for image, mask in items
    ]


def leave_one_out(items, predictor, size: int, mode: str) -> list[float]:
    fitted = [fit(image, mask, size, mode) for image, mask in items]
    scores = []
    for q, (_, truth) in enumerate(items):
        support = [f for i, f in enumerate(fitted) if i != q]
        images = np.stack([image for image, _ in support])[..., None]
        labels = np.stack([label for _, label in support])[..., None]
        probabilities = predictor(images, labels, fitted[q][0][None, ..., None])[0]
        prediction = unfit(probabilities, truth.shape, mode) >= 0.5
        scores.append(float(metrics.dice(prediction, truth)))
    return scores


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manual_dir", type=Path, required=True)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--band", type=float, nargs=2, default=(0.7, 1.0), metavar=("LOW", "HIGH"))
    args = parser.parse_args(argv)
    names = [baselines.make_baseline(n).name for n in baselines.BASELINES]
    print(
        f"size {args.size}; Dice at native size; round trip: every label fitted and brought back; baselines: "
        "leave one out in each task with 2+ images, mean over its queries, tasks weigh equally\n"
    )
    print(
        "| dataset | tasks (2+ images) | labelled images | height/width | mode | round trip | "
        + " | ".join(names)
        + " | baselines' mean |"
    )
    print("|---|---|---|---|---|---|" + "---|" * (len(names) + 1))
    totals = collections.defaultdict(list)
    for name in DATASETS:
        root = root_of(args.manual_dir, name)
        if root is None:
            print(f"| {name} | absent from {args.manual_dir} |")
            continue
        tasks = tasks_of(name, root)
        runs = [(name, tasks)]
        if all(abs(mask.shape[0] / mask.shape[1] - 1) < 0.05 for items in tasks.values() for _, mask in items):
            runs.append((f"{name} band {args.band[0]}-{args.band[1]}", banded(tasks, *args.band)))
        for label, tasks in runs:
            report(label, tasks, args.size, totals)
    for mode, rows in totals.items():
        mean = np.mean(rows, axis=0)
        print(
            f"| datasets with baselines, equal weight | | | | {mode} | | "
            + " | ".join(f"{v:.3f}" for v in mean)
            + f" | {mean.mean():.3f} |"
        )


def report(name: str, tasks, size: int, totals) -> None:
    """One table row per mode for one dataset's tasks; the baselines' scores are added to ``totals``."""
    shared = [items for items in tasks.values() if len(items) >= 2]
    ratios = [mask.shape[0] / mask.shape[1] for items in tasks.values() for _, mask in items]
    labelled = sum(len(items) for items in tasks.values())
    for mode in MODES:
        trip = np.mean([np.mean(round_trip(items, size, mode)) for items in tasks.values()])
        row = [
            float(np.mean([np.mean(leave_one_out(items, baselines.make_baseline(b), size, mode)) for items in shared]))
            if shared
            else float("nan")
            for b in baselines.BASELINES
        ]
        if shared:
            totals[mode].append(row)
        cells = " | ".join("-" if np.isnan(v) else f"{v:.3f}" for v in row)
        mean = f"{np.mean(row):.3f}" if shared else "-"
        print(
            f"| {name} | {len(tasks)} ({len(shared)}) | {labelled} | {min(ratios):.2f}-{max(ratios):.2f} | {mode} | "
            f"{trip:.3f} | {cells} | {mean} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
