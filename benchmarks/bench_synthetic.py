"""How varied are the synthetic tasks? Per family: foreground fraction, connected components, and the Dice of two
classical baselines fitted on a support set (universeg_jax.baselines).

    python benchmarks/bench_synthetic.py                          # synthetic_tasks draws + real_synthetic_labels
    python benchmarks/bench_synthetic.py --draws 120 --size 128
    python benchmarks/bench_synthetic.py --figure docs/images/synthetic_families.png

Episodes are made exactly as the builders make examples (same rendering, the same standardisation to uint8), without
writing a dataset: for every task (one label of one draw; one rule of one real image) the first ``--support``
subjects that show the label are the support and the next ``--queries`` the queries. ``intensity`` is the per-pixel
logistic model on brightness features: a task it solves (Dice >= 0.9) is one that a brightness threshold solves, which
teaches a model nothing about reading the support. ``nearest_neighbour`` copies the label of the most similar
support image: it solves tasks whose structure sits at the same place in every subject. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import collections
import io
import time

import numpy as np
from scipy import ndimage

from universeg_datasets import standardize, synthetic_real, synthetic_tasks
from universeg_jax import baselines

TRIVIAL = 0.9  # intensity-baseline Dice at or above which a task counts as solved by brightness


def dice(probabilities: np.ndarray, truth: np.ndarray) -> float:
    """Mean hard Dice (probability >= 0.5) over queries."""
    predicted, truth = probabilities >= 0.5, truth > 0.5
    overlap = (predicted & truth).sum(axis=(1, 2))
    total = predicted.sum(axis=(1, 2)) + truth.sum(axis=(1, 2))
    return float(np.mean(np.where(total == 0, 1.0, 2.0 * overlap / np.maximum(total, 1))))


def score_task(images: np.ndarray, labels: np.ndarray, support: int) -> dict:
    """Figures of one task from ``(N, S, S)`` uint8 images and {0,1} labels; the first ``support`` are the support."""
    x = images[..., None].astype(np.float32) / 255.0
    y = labels[..., None].astype(np.float32)
    queries = slice(support, None)
    return {
        "foreground": float(labels.mean()),
        "components": float(np.mean([ndimage.label(label)[1] for label in labels])),
        "intensity": dice(baselines.IntensityModel()(x[:support], y[:support], x[queries]), labels[queries]),
        "nearest_neighbour": dice(
            baselines.LabelFusion(1, name="nearest_neighbour")(x[:support], y[:support], x[queries]), labels[queries]
        ),
    }


def synthetic_episodes(draws: int, size: int, count: int, seed: int = 0, model_class=None):
    """(family, layout, appearance, images, labels) of every task of the first ``draws`` draws (as the builder
    makes them: every label but a background); ``count`` subjects that show the label (fewer: skipped)."""
    model_class = model_class or synthetic_tasks.DrawModel
    for draw in range(draws):
        model = model_class.sample(seed, draw, 8, size)
        layout = getattr(getattr(model, "layout", None), "family", "noise (v1.2)")
        appearance = getattr(getattr(model, "appearance", None), "family", "intensity (v1.2)")
        examples = collections.defaultdict(list)
        tasks = getattr(model, "tasks", range(model.labels))
        for subject in range(3 * count):
            image, label_map = model.render(subject)
            encoded = standardize.encode_image(image, size)[..., 0]
            for label in tasks:
                if len(examples[label]) < count:
                    mask = standardize.encode_mask(label_map == label, size)[..., 0]
                    if mask.any():
                        examples[label].append((encoded, mask))
            if all(len(examples[label]) >= count for label in tasks):
                break
        for label, pairs in sorted(examples.items()):
            if len(pairs) == count:
                images, labels = (np.stack(a) for a in zip(*pairs))
                yield f"{layout}/{appearance}", layout, appearance, images, labels


def real_episodes(size: int, count: int, seed: int = 0):
    """(rule family, kind, feature, images, labels) of every task of real_synthetic_labels."""
    config = synthetic_real.RealConfig(name=f"size{size}", size=size, seed=seed)
    for name in config.sources:
        tasks = collections.defaultdict(list)
        for _, example in synthetic_real.source_examples(name, config):
            tasks[example["label_name"]].append((example["image"][..., 0], example["label"][..., 0]))
        for label_name, pairs in tasks.items():
            if len(pairs) >= count:
                kind, feature = label_name.split("_")[2:4]
                family = f"{kind}/{feature}" + ("+border" if label_name.endswith("_border") else "")
                images, labels = (np.stack(a) for a in zip(*pairs[:count]))
                yield family, kind, feature, images, labels


def summarise(rows: list[dict], key: str) -> list[str]:
    """A Markdown table of ``rows`` grouped by ``key``: medians of foreground and components (means would hide
    the mix: the labels of one draw always cover 100 % together), mean Dice, share of tasks solved by intensity."""
    groups = collections.defaultdict(list)
    for row in rows:
        groups[row[key]].append(row)
    groups["all"] = rows
    lines = [
        f"| {key} | tasks | median foreground % | median components | intensity Dice | "
        f"solved by intensity (Dice >= {TRIVIAL}) | nearest-neighbour Dice |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, group in sorted(groups.items(), key=lambda item: (item[0] == "all", item[0])):
        column = {
            field: np.array([r[field] for r in group])
            for field in ("foreground", "components", "intensity", "nearest_neighbour")
        }
        lines.append(
            f"| {name} | {len(group)} | {100 * np.median(column['foreground']):.1f} | "
            f"{np.median(column['components']):.1f} | {column['intensity'].mean():.2f} | "
            f"{100 * np.mean(column['intensity'] >= TRIVIAL):.0f} % | {column['nearest_neighbour'].mean():.2f} |"
        )
    return lines


def figure(path: str, size: int, draws: int, subjects: int = 3) -> None:
    """One row per synthetic family (its first draw), then real images with synthetic labels: ``subjects``
    subjects of one task, each as the image and the image with the label in colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, seen = [], set()
    for draw in range(draws):
        model = synthetic_tasks.DrawModel.sample(0, draw, 8, size)
        if model.family in seen:
            continue
        seen.add(model.family)
        label = shown_label(model)
        pairs = []
        for subject in range(4 * subjects):
            image, label_map = model.render(subject)
            if (label_map == label).any():
                pairs.append((standardize.encode_image(image, size)[..., 0], label_map == label))
            if len(pairs) == subjects:
                break
        layout = "same layout, deformed" if not model.independent else "own layout per subject"
        clutter = ", clutter" if model.appearance.clutter else ""
        rows.append((f"{model.family}\n(label {label} of {model.labels}; {layout}{clutter})", pairs))
    order = {family: index for index, family in enumerate(synthetic_tasks.LAYOUTS)}
    rows.sort(key=lambda row: (order[row[0].split("/")[0]], row[0]))
    config = synthetic_real.RealConfig(name=f"size{size}", size=size)
    for name in ("ihc", "retina", "hubble", "gravel"):
        tasks = collections.defaultdict(list)
        for _, example in synthetic_real.source_examples(name, config):
            tasks[example["label_name"]].append((example["image"][..., 0], example["label"][..., 0] > 0))
        label_name, pairs = next(iter(tasks.items()))
        rows.append((f"real: {label_name}", pairs[:: max(len(pairs) // subjects, 1)][:subjects]))
    width, height = 2 * subjects * 1.25 + 2.4, len(rows) * 1.3 + 0.4
    fig, axes = plt.subplots(len(rows), 2 * subjects, figsize=(width, height), squeeze=False)
    for row, (title, pairs) in zip(axes, rows):
        for column, (image, mask) in enumerate(pairs):
            overlay = np.stack([image] * 3, -1).astype(float) / 255.0
            overlay[mask] = 0.45 * overlay[mask] + 0.55 * np.array([1.0, 0.15, 0.1])
            row[2 * column].imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            row[2 * column + 1].imshow(overlay, interpolation="nearest")
        for axis in row:
            axis.set_xticks([])
            axis.set_yticks([])
        row[0].set_ylabel(title, rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(
        f"synthetic_tasks {synthetic_tasks.SyntheticTasks.VERSION}: one task per family (image, label in red; "
        f"{subjects} subjects) and real_synthetic_labels",
        fontsize=9,
        y=1 - 0.12 / height,
    )
    fig.subplots_adjust(left=2.4 / width, right=0.995, top=1 - 0.4 / height, bottom=0.005, wspace=0.04, hspace=0.06)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=80)
    from PIL import Image  # a 128-colour palette: the grid is grey plus one red; the file is 3x smaller

    Image.open(buffer).convert("RGB").quantize(128).save(path, optimize=True)
    print(f"wrote {path}")


def shown_label(model) -> int:
    """The label a figure shows for a draw: the outlined one, else an object or line label, else label 1."""
    if model.appearance.outline >= 0:
        return model.appearance.outline
    if model.layout.objects:
        return model.layout.objects[-1]
    if model.layout.fine:
        return model.layout.fine[0]
    return 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=80, help="synthetic draws (each gives 2 to 8 tasks)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--support", type=int, default=8)
    parser.add_argument("--queries", type=int, default=4)
    parser.add_argument("--no_real", action="store_true", help="skip real_synthetic_labels")
    parser.add_argument("--figure", help="also write the picture grid of the families to this PNG")
    args = parser.parse_args()
    count = args.support + args.queries
    start = time.perf_counter()
    rows = [
        {"family": family, "layout": layout, "appearance": appearance, **score_task(images, labels, args.support)}
        for family, layout, appearance, images, labels in synthetic_episodes(args.draws, args.size, count)
    ]
    print(
        f"synthetic_tasks {synthetic_tasks.SyntheticTasks.VERSION}, {args.draws} draws at {args.size} px, "
        f"support {args.support}, {args.queries} queries ({time.perf_counter() - start:.0f} s)\n"
    )
    for key in ("layout", "appearance", "family"):
        print("\n".join(summarise(rows, key)) + "\n")
    if not args.no_real:
        start = time.perf_counter()
        real = [
            {"rule": family, **score_task(images, labels, args.support)}
            for family, _, _, images, labels in real_episodes(args.size, count)
        ]
        print(
            f"real_synthetic_labels {synthetic_real.RealSyntheticLabels.VERSION} ({time.perf_counter() - start:.0f} s)\n"
        )
        print("\n".join(summarise(real, "rule")) + "\n")
    if args.figure:
        figure(args.figure, args.size, args.draws)


if __name__ == "__main__":
    main()
