"""The ``universeg-jax`` command: segment a researcher's own image files with a labelled support set.

    universeg-jax segment --support-images sup/img --support-labels sup/lab --query new/ --out results/ --weights v1

All outputs of a run are written into a hidden staging folder inside ``--out`` and moved into place only when
every query succeeded, so an error leaves no partial results behind.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import warnings
from collections import deque
from pathlib import Path

import numpy as np

from universeg_jax import io
from universeg_jax import preprocess as pp

PROG = "universeg-jax"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="UniverSeg in JAX: segment images of a new task from a few labelled examples, no training.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    seg = commands.add_parser(
        "segment",
        help="segment query images or volumes with a labelled support set",
        description=(
            "Segment every query (PNG, JPEG, BMP, TIFF, or NIfTI image or volume) using support images and their "
            "labels (matched by file name; a label may end in _mask, _label, _seg or _gt). Labels are binary masks "
            "or integer label maps: every non-zero value is segmented as its own structure. Writes one mask per "
            "query in the query's format (PNG for JPEG queries) with the support labels' values, optionally "
            "probability maps, and overlay PNGs under OUT/overlays."
        ),
    )
    files = seg.add_argument_group("files")
    files.add_argument("--support-images", nargs="+", required=True, metavar="PATH",
                       help="support image files or folders (2D images, or NIfTI volumes to take labelled slices from)")
    files.add_argument("--support-labels", nargs="+", required=True, metavar="PATH",
                       help="label files or folders, one per support image, matched by name")
    files.add_argument("--query", nargs="+", required=True, metavar="PATH",
                       help="query image files or folders to segment (3D NIfTI files are segmented slice by slice)")
    files.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    files.add_argument("--overwrite", action="store_true", help="replace outputs that already exist in --out")

    model = seg.add_argument_group("model")
    model.add_argument("--weights", default=None, metavar="v1|PATH",
                       help="'v1' (official weights, downloaded once), a .safetensors or official .pt file, or a "
                            "training run folder holding a .safetensors export; default: the weights shipped "
                            "with the package")
    model.add_argument("--size", nargs=2, type=int, default=None, metavar=("H", "W"),
                       help="model input size (default: the size the weights were trained at, 128 128 for v1); "
                            "images are resized to it and predictions back to each query's native size")
    model.add_argument("--batch-size", type=int, default=4, metavar="B",
                       help="queries (or slices) per forward pass (default: %(default)s); bounds memory")

    task = seg.add_argument_group("prediction")
    task.add_argument("--ensemble", type=int, default=1, metavar="K",
                      help="average the probabilities of K random support subsets (default: %(default)s; K > 1 needs "
                           "--support-size)")
    task.add_argument("--support-size", type=int, default=None, metavar="N",
                      help="support examples per subset (default: all)")
    task.add_argument("--seed", type=int, default=0, metavar="S",
                      help="seed of the random support subsets (default: %(default)s)")
    task.add_argument("--threshold", type=float, default=0.5, metavar="T",
                      help="probability from which a pixel is foreground (default: %(default)s)")
    task.add_argument("--labels", nargs="+", type=int, default=None, metavar="V",
                      help="segment only these label values (default: every non-zero value in the support labels)")

    pre = seg.add_argument_group("preprocessing")
    pre.add_argument("--percentiles", nargs=2, type=float, default=list(pp.DEFAULT_PERCENTILES), metavar=("LO", "HI"),
                     help="intensity percentiles mapped to 0 and 1, per image (per volume for NIfTI volumes) "
                          "(default: %(default)s)")
    pre.add_argument("--window", nargs=2, type=float, default=None, metavar=("LO", "HI"),
                     help="fixed intensity window instead of percentiles, e.g. a CT window in HU: -1000 400")
    pre.add_argument("--axis", type=int, default=2, choices=(0, 1, 2),
                     help="voxel axis along which volumes are sliced, for support and query (default: %(default)s)")
    pre.add_argument("--slices-per-volume", type=int, default=8, metavar="N",
                     help="labelled slices taken from each support volume, spread over the labelled ones "
                          "(default: %(default)s)")

    out = seg.add_argument_group("outputs")
    out.add_argument("--probabilities", action="store_true",
                     help="also write float32 probability maps (<name>_probabilities.tif or .nii.gz)")
    out.add_argument("--no-overlays", action="store_true", help="do not write overlay PNGs")
    out.add_argument("--quiet", action="store_true", help="no progress bar")

    export = commands.add_parser(
        "export",
        help="write a trained model (or any weights) to one .safetensors file",
        description="Export weights that --weights accepts (a training workdir, v1, a .pt or .safetensors file) to "
                    "the project's .safetensors format, recording the image size they were trained at.",
    )
    export.add_argument("--weights", required=True, help="a training workdir, v1, or a weights file")
    export.add_argument("--out", required=True, help="the .safetensors file to write")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    warnings.formatwarning = lambda message, *_args, **_kw: f"{PROG}: warning: {message}\n"
    try:
        if args.command == "segment":
            segment(args)
        elif args.command == "export":
            export(args)
    except (ValueError, TypeError, OSError, RuntimeError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    return 0


def export(args) -> None:
    from universeg_jax import weights
    from universeg_jax.inference import resolve_weights

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out {out} must end in .safetensors")
    model, size = resolve_weights(args.weights)
    weights.save(model, out, image_size=size)
    print(f"wrote {out} (trained at {size[0]}x{size[1]})")


# ---------------------------------------------------------------------------------------------------------------
# segment


def output_paths(query: Path, out: Path, args) -> dict[str, Path]:
    """Where the outputs of one query go: mask, probabilities (optional), overlay (optional)."""
    name = io.stem(query)
    paths = {"mask": out / f"{name}{io.mask_suffix(query)}"}
    if args.probabilities:
        paths["probabilities"] = out / f"{name}_probabilities{'.nii.gz' if io.is_nifti(query) else '.tif'}"
    if not args.no_overlays:
        paths["overlay"] = out / "overlays" / f"{name}.png"
    return paths


def plan_outputs(queries: list[Path], out: Path, args) -> list[dict[str, Path]]:
    """Check the output folder and every target before any work is done."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder")
    names = [io.stem(q) for q in queries]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"several queries share the name(s) {clashes}; their outputs would collide")
    plans = [output_paths(q, out, args) for q in queries]
    existing = [str(p) for plan in plans for p in plan.values() if p.exists()]
    if existing and not args.overwrite:
        shown = ", ".join(existing[:5]) + (" ..." if len(existing) > 5 else "")
        raise FileExistsError(f"{len(existing)} output(s) already exist (pass --overwrite to replace): {shown}")
    return plans


def segment(args) -> None:
    from universeg_jax.inference import Segmenter

    pairs = io.pair_images_labels(
        io.list_images(args.support_images, "--support-images"), io.list_images(args.support_labels, "--support-labels")
    )
    queries = io.list_images(args.query, "--query")
    out = Path(args.out)
    plans = plan_outputs(queries, out, args)

    segmenter = Segmenter.from_weights(
        args.weights, size=args.size, batch_size=args.batch_size, percentiles=args.percentiles, window=args.window
    )
    support = read_support(segmenter, pairs, args)
    options = dict(ensemble=args.ensemble, support_size=args.support_size, seed=args.seed, threshold=args.threshold)

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".universeg-jax-", dir=out))
    try:
        is_vol = [io.is_nifti(q) and io.is_volume(q) for q in queries]
        images = [(q, plan) for q, plan, v in zip(queries, plans, is_vol) if not v]
        write_images(segmenter, support, images, staging, out, options, args)
        for query, plan, v in zip(queries, plans, is_vol):
            if v:
                write_volume(segmenter, support, query, _staged(plan, staging, out), options, args)
        for plan in plans:  # every query succeeded: move the outputs into place
            for staged, target in zip(_staged(plan, staging, out).values(), plan.values()):
                target.parent.mkdir(parents=True, exist_ok=True)
                staged.replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not any(out.iterdir()):
            out.rmdir()
    print(f"{PROG}: segmented {len(queries)} quer{'y' if len(queries) == 1 else 'ies'} into {out}", file=sys.stderr)


def _staged(plan: dict[str, Path], staging: Path, out: Path) -> dict[str, Path]:
    """The staging-folder counterparts of a query's output paths."""
    staged = {k: staging / p.relative_to(out) for k, p in plan.items()}
    for p in staged.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    return staged


def read_support(segmenter, pairs, args):
    """Read and preprocess the support pairs once: 2D images as they are, volumes as labelled slices."""
    images, labels, names = [], [], []
    for image_path, label_path in pairs:
        image, label = io.read_image(image_path), io.read_label(label_path)
        if np.shape(image)[:2] != np.shape(label)[:2]:
            raise ValueError(
                f"support image {image_path} has shape {np.shape(image)} but its label {label_path} has shape "
                f"{np.shape(label)}"
            )
        if io.is_nifti(image_path) and io.is_volume(image_path):
            slices, slice_labels, indices = segmenter.volume_support_slices(
                image, label, axis=args.axis, count=args.slices_per_volume
            )
            images += slices
            labels += slice_labels
            names += [f"{image_path.name}[axis {args.axis} slice {i}]" for i in indices]
        else:
            images.append(segmenter.normalize(pp.to_grayscale(image, name=str(image_path)), name=str(image_path)))
            labels.append(label)
            names.append(image_path.name)
    return segmenter.prepare_support(images, labels, label_values=args.labels, normalize=False, names=names)


def _progress(total: int, args, unit: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, disable=True if args.quiet else None, desc=PROG)


def _support_for_overlay(support):
    """Support images and binary (any label) masks at model size, for the overlay thumbnails."""
    return list(support.images), list(support.masks.any(axis=0))


def probability_array(probabilities: np.ndarray, shape: tuple, nifti: bool) -> np.ndarray:
    """Probabilities ``(L, ...)`` for a file: the query's ``shape`` for one label; with several labels, a last
    axis of labels for NIfTI and one TIFF page per label otherwise."""
    probabilities = probabilities.astype(np.float32)
    if len(probabilities) == 1:
        return probabilities[0].reshape(shape)
    if nifti:
        return np.moveaxis(probabilities, 0, -1).reshape(shape + (len(probabilities),))
    return probabilities


def write_images(segmenter, support, items, staging: Path, out: Path, options, args) -> None:
    """Segment 2D queries in batches, reading files lazily, and write their outputs into the staging folder."""
    pending: deque = deque()

    def arrays():
        for query, plan in items:
            array = io.read_image(query)
            pending.append((query, plan, array))
            yield array

    thumbs = _support_for_overlay(support)
    with _progress(len(items), args, "image") as bar:
        for result in segmenter.iter_segment(arrays(), support, **options):
            query, plan, array = pending.popleft()
            staged = _staged(plan, staging, out)
            reference = io.load_nifti(query) if io.is_nifti(query) else None
            shape = array.shape if reference is not None else result.label_map.shape  # NIfTI keeps (H, W, 1)
            io.write_array(staged["mask"], result.label_map.reshape(shape), reference=reference)
            if "probabilities" in staged:
                probs = probability_array(result.probabilities, shape, reference is not None)
                io.write_array(staged["probabilities"], probs, reference=reference)
            if "overlay" in staged:
                io.write_array(staged["overlay"], io.overlay(array, result.label_map, result.label_values, *thumbs))
            bar.update(1)


def write_volume(segmenter, support, query: Path, staged: dict[str, Path], options, args) -> None:
    """Segment one NIfTI volume slice by slice; the mask keeps the input's shape, affine and header."""
    reference = io.load_nifti(query)
    volume = np.asanyarray(reference.dataobj)
    result = segmenter.segment_volume(volume, support, axis=args.axis, progress=not args.quiet, **options)
    io.write_array(staged["mask"], result.label_map, reference=reference)
    if "probabilities" in staged:
        probs = probability_array(result.probabilities, volume.shape, nifti=True)
        io.write_array(staged["probabilities"], probs, reference=reference)
    if "overlay" in staged:
        volume3d = volume.reshape(volume.shape[:3])  # drop trailing singleton axes
        label3d = result.label_map.reshape(volume3d.shape)
        index = best_slice(label3d, args.axis)
        picture = io.overlay(
            np.take(volume3d, index, axis=args.axis),
            np.take(label3d, index, axis=args.axis),
            result.label_values,
            *_support_for_overlay(support),
        )
        io.write_array(staged["overlay"], picture)


def best_slice(label_map: np.ndarray, axis: int) -> int:
    """The slice along ``axis`` with the most predicted foreground (the middle one if there is none)."""
    other = tuple(a for a in range(label_map.ndim) if a != axis)
    area = (label_map != 0).sum(axis=other)
    return int(area.argmax()) if area.any() else label_map.shape[axis] // 2


if __name__ == "__main__":
    sys.exit(main())
