"""The ``universeg-jax`` command: segment a researcher's own image files with a labelled support set.

    universeg-jax segment --support-images sup/img --support-labels sup/lab --query new/ --out results/ --weights v1

All outputs of a run are written into a hidden staging folder inside ``--out`` and moved into place only when
every query succeeded, so an error, Ctrl+C or SIGTERM leaves ``--out`` as it was (a staging folder left by a killed
run is removed by the next run into that folder). Every input file is read once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import warnings
from collections import deque
from pathlib import Path

import numpy as np

from universeg_jax import io, overlay
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
            "Segment every query (PNG, JPEG, BMP, TIFF, NIfTI image or volume, or a folder holding a DICOM series) "
            "using support images and their labels (matched by file name; a label may end in _mask, _label, _seg or "
            "_gt; a DICOM series' label is a NIfTI file or a DICOM SEG named after its folder). Labels are binary "
            "masks or integer label maps: every non-zero value is segmented as its own structure. Writes one mask "
            "per query in the query's format (PNG for JPEG queries, NIfTI with the series geometry for DICOM) with "
            "the support labels' values, optionally probability maps, DICOM SEG objects and overlay PNGs under "
            "OUT/overlays."
        ),
    )
    files = seg.add_argument_group("files")
    files.add_argument(
        "--support-images",
        nargs="+",
        required=True,
        metavar="PATH",
        help="support image files or folders (2D images, NIfTI volumes or DICOM series folders to take "
        "labelled slices from)",
    )
    files.add_argument(
        "--support-labels",
        nargs="+",
        required=True,
        metavar="PATH",
        help="label files or folders, one per support image, matched by name",
    )
    files.add_argument(
        "--query",
        nargs="+",
        required=True,
        metavar="PATH",
        help="query image files or folders to segment (3D NIfTI files and DICOM series are segmented slice by slice)",
    )
    files.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    files.add_argument("--overwrite", action="store_true", help="replace outputs that already exist in --out")

    model = seg.add_argument_group("model")
    add_model_options(model)
    model.add_argument(
        "--batch-size",
        type=int,
        default=8,
        metavar="B",
        help="at most this many queries (or slices) per forward pass (default: %(default)s)",
    )
    model.add_argument(
        "--memory-budget",
        type=float,
        default=2.0,
        metavar="GB",
        help="memory one forward pass may use; every label and ensemble member of a chunk of queries "
        "runs in one pass when it fits (default: %(default)s)",
    )

    task = seg.add_argument_group("prediction")
    task.add_argument(
        "--ensemble",
        type=int,
        default=1,
        metavar="K",
        help="average the probabilities of K random support subsets (default: %(default)s; K > 1 needs "
        "--support-size or a support larger than the weights' support size)",
    )
    task.add_argument(
        "--support-size",
        type=int,
        default=None,
        metavar="N",
        help="support examples per subset (default: all of them up to the support size the weights "
        "were trained with, 64 for v1; a larger support is split into ensemble members that "
        "together use every example once)",
    )
    task.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seed of the random support subsets (default: %(default)s)"
    )
    task.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        metavar="T",
        help="probability from which a pixel is foreground (default: %(default)s)",
    )
    task.add_argument(
        "--labels",
        nargs="+",
        type=int,
        default=None,
        metavar="V",
        help="segment only these label values (default: every non-zero value in the support labels)",
    )

    pre = seg.add_argument_group("preprocessing")
    pre.add_argument(
        "--percentiles",
        nargs=2,
        type=float,
        default=list(pp.DEFAULT_PERCENTILES),
        metavar=("LO", "HI"),
        help="intensity percentiles mapped to 0 and 1, per image (per volume for NIfTI volumes) (default: %(default)s)",
    )
    pre.add_argument(
        "--window",
        nargs=2,
        type=float,
        default=None,
        metavar=("LO", "HI"),
        help="fixed intensity window instead of percentiles, e.g. a CT window in HU: -1000 400",
    )
    add_volume_options(pre)
    pre.add_argument(
        "--resize",
        choices=pp.RESIZE_MODES,
        default=None,
        help="fit images to the model size by stretching them, or by padding them to a square with "
        "their edge values (cropped back after); default: how the weights were trained "
        "(stretch for v1)",
    )

    out = seg.add_argument_group("outputs")
    out.add_argument(
        "--probabilities",
        action="store_true",
        help="also write float32 probability maps (<name>_probabilities.tif or .nii.gz)",
    )
    out.add_argument(
        "--dicom-seg",
        action="store_true",
        help="for DICOM queries, also write a DICOM SEG object referencing the series (<name>_seg.dcm)",
    )
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

    from universeg_jax import app  # the `app` subcommand: a local web app (web packages imported when it starts)

    app.add_parser(commands)
    return parser


def add_model_options(group) -> None:
    """``--weights`` and ``--size``: the options of the ``segment`` and ``app`` commands that choose the model."""
    group.add_argument(
        "--weights",
        default=None,
        metavar="v1|PATH",
        help="'v1' (official weights, downloaded once), a .safetensors or official .pt file, a "
        "training run folder (python -m universeg_jax.main --workdir=DIR: its latest checkpoint) "
        "or a folder holding one .safetensors export; default: the weights shipped with the "
        "package",
    )
    group.add_argument(
        "--size",
        nargs=2,
        type=int,
        default=None,
        metavar=("H", "W"),
        help="model input size (default: the size the weights were trained at, 128 128 for v1); "
        "images are resized to it and predictions back to each image's native size",
    )


def add_volume_options(group) -> None:
    """``--axis`` and ``--slices-per-volume``: how the ``segment`` and ``app`` commands cut volumes into slices."""
    group.add_argument(
        "--axis",
        type=pp.parse_axis,
        default="axial",
        metavar="{sagittal,coronal,axial,0,1,2}",
        help="plane of the slices volumes are cut into, for support and query, after reorienting "
        "every volume to RAS; or a voxel axis of each file (default: %(default)s)",
    )
    group.add_argument(
        "--slices-per-volume",
        type=int,
        default=8,
        metavar="N",
        help="labelled slices taken from each support volume, spread over the labelled ones (default: %(default)s)",
    )


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl+C's KeyboardInterrupt so that the same clean-up runs."""

    signum = signal.SIGTERM


def _terminate(signum, frame):
    raise Terminated()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    formatwarning = warnings.formatwarning  # warnings print as one line each, like errors, while the command runs
    warnings.formatwarning = lambda message, *_args, **_kw: f"{PROG}: warning: {message}\n"
    main_thread = threading.current_thread() is threading.main_thread()
    sigterm = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return _run(args)
    finally:
        warnings.formatwarning = formatwarning
        if main_thread:
            signal.signal(signal.SIGTERM, sigterm)


def _run(args) -> int:
    try:
        check_options(args)
        if args.command == "segment":
            segment(args)
        elif args.command == "export":
            export(args)
        elif args.command == "app":
            from universeg_jax import app

            app.main(args)
    except (ValueError, TypeError, OSError, RuntimeError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # Ctrl+C, or SIGTERM through _terminate
        signum = getattr(interrupt, "signum", signal.SIGINT)
        outcome = getattr(interrupt, "outcome", None)
        print(
            f"{PROG}: interrupted by {signal.Signals(signum).name}" + (f"; {outcome}" if outcome else ""),
            file=sys.stderr,
        )
        return 128 + signum
    return 0


def check_options(args) -> None:
    """Option values a user can get wrong, checked before anything is read or loaded (a model takes seconds)."""
    given = vars(args)
    for option in ("batch_size", "ensemble", "support_size", "slices_per_volume"):
        if given.get(option) is not None and given[option] < 1:
            raise ValueError(f"--{option.replace('_', '-')} must be a positive integer, got {given[option]}")
    if given.get("size") is not None and min(given["size"]) < 1:
        raise ValueError(f"--size must be two positive integers, got {' '.join(map(str, given['size']))}")
    if "memory_budget" in given and not given["memory_budget"] > 0:
        raise ValueError(f"--memory-budget must be a positive number of GB, got {given['memory_budget']}")
    if "threshold" in given and not 0 <= given["threshold"] <= 1:
        raise ValueError(f"--threshold must be a probability in [0, 1], got {given['threshold']}")
    if "percentiles" in given and not 0 <= given["percentiles"][0] < given["percentiles"][1] <= 100:
        raise ValueError(f"--percentiles must be LO < HI in [0, 100], got {' '.join(map(str, given['percentiles']))}")
    if given.get("window") is not None and not given["window"][0] < given["window"][1]:
        raise ValueError(f"--window must be LO < HI, got {' '.join(map(str, given['window']))}")
    if given.get("labels") is not None and min(given["labels"]) < 1:
        raise ValueError(f"--labels must be label values >= 1 (0 is the background), got {given['labels']}")


def export(args) -> None:
    from universeg_jax import trained as trained_weights
    from universeg_jax import weights

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out {out} must end in .safetensors")
    model, trained = trained_weights.load(args.weights)
    weights.save(model, out, image_size=trained.size, support_size=trained.support_size, resize=trained.resize)
    print(
        f"wrote {out} (trained at {trained.size[0]}x{trained.size[1]}, support {trained.support_size}, "
        f"{trained.resize})"
    )


# ---------------------------------------------------------------------------------------------------------------
# segment


def output_paths(name: str, source: Path, out: Path, args, dicom: bool = False) -> dict[str, Path]:
    """Where the outputs of one query go: mask, probabilities, DICOM SEG and overlay (the last three optional)."""
    nifti = dicom or io.is_nifti(source)
    paths = {"mask": out / f"{name}{'.nii.gz' if dicom else io.mask_suffix(source)}"}
    if args.probabilities:
        paths["probabilities"] = out / f"{name}_probabilities{'.nii.gz' if nifti else '.tif'}"
    if dicom and args.dicom_seg:
        paths["seg"] = out / f"{name}_seg.dcm"
    if not args.no_overlays:
        paths["overlay"] = out / "overlays" / f"{name}.png"
    return paths


def plan_outputs(items: list, out: Path, args) -> list[dict[str, Path]]:
    """Check the output folder and every target before any work is done. ``items``: ``(name, path, loaded)``."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder")
    names = [name for name, _, _ in items]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"several queries share the name(s) {clashes}; their outputs would collide")
    plans = [output_paths(name, path, out, args, dicom=path.is_dir()) for name, path, _ in items]
    existing = [str(p) for plan in plans for p in plan.values() if p.exists()]
    if existing and not args.overwrite:
        shown = ", ".join(existing[:5]) + (" ..." if len(existing) > 5 else "")
        raise FileExistsError(f"{len(existing)} output(s) already exist (pass --overwrite to replace): {shown}")
    return plans


def query_items(paths: list[Path]) -> list[tuple[str, Path, object]]:
    """``(output name, path, loaded or None)`` per query: DICOM folders are read now (one entry per series), files
    later, once each."""
    items = []
    for path in paths:
        if path.is_dir():
            items += [(loaded.name, path, loaded) for loaded in io.read(path, what="--query")]
        else:
            items.append((io.stem(path), path, None))
    return items


def segment(args) -> None:
    from universeg_jax.inference import Segmenter

    pairs = io.pair_images_labels(
        io.list_images(args.support_images, "--support-images"), io.list_images(args.support_labels, "--support-labels")
    )
    items = query_items(io.list_images(args.query, "--query"))
    out = Path(args.out)
    plans = plan_outputs(items, out, args)

    segmenter = Segmenter.from_weights(
        args.weights,
        size=args.size,
        batch_size=args.batch_size,
        percentiles=args.percentiles,
        window=args.window,
        memory_budget=int(args.memory_budget * 1024**3),
        resize=args.resize,
    )
    support = read_support(segmenter, pairs, args)
    options = dict(ensemble=args.ensemble, support_size=args.support_size, seed=args.seed, threshold=args.threshold)
    segmenter.members(len(support), args.ensemble, args.support_size, args.seed)  # option errors (and the split
    # message) before any output is written

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{_owner()}-", dir=out))
    moved = False
    try:
        images = []
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="the support has .* split into")  # said once above
            for (name, path, loaded), plan in zip(items, plans):
                if loaded is None and (io.is_nifti(path)):
                    (loaded,) = io.read(path, what="image")
                if loaded is not None and loaded.volume:
                    write_volume(segmenter, support, loaded, _staged(plan, staging, out), options, args)
                else:
                    images.append((path, plan, loaded))
            write_images(segmenter, support, images, staging, out, options, args)
        with _signals_deferred():  # every query succeeded: move the outputs into place, all of them
            for plan in plans:
                for staged, target in zip(_staged(plan, staging, out).values(), plan.values()):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    staged.replace(target)
            moved = True
    except KeyboardInterrupt as interrupt:
        interrupt.outcome = f"every output is in {out}" if moved else f"{out} is as it was"
        raise
    finally:
        with _signals_deferred():
            shutil.rmtree(staging, ignore_errors=True)
            if created and not any(out.iterdir()):
                out.rmdir()
    print(f"{PROG}: segmented {len(items)} quer{'y' if len(items) == 1 else 'ies'} into {out}", file=sys.stderr)


STAGING_PREFIX = ".universeg-jax-"


def _owner() -> str:
    """This process as ``host-pid``, the part of a staging folder's name that tells whether its run is alive."""
    host = "".join(c if c.isalnum() else "_" for c in socket.gethostname())
    return f"{host}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_staging(out: Path) -> None:
    """Remove staging folders that runs on this machine left in ``out`` when they were killed (SIGKILL, power
    loss). A folder of a live run, or of a run on another machine, is left alone."""
    host = _owner().rsplit("-", 1)[0]
    for folder in out.glob(f"{STAGING_PREFIX}{host}-*"):
        pid = folder.name[len(f"{STAGING_PREFIX}{host}-") :].split("-", 1)[0]
        if folder.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT and SIGTERM back while outputs are moved into place, so that a run is never half moved; a
    signal that came meanwhile is delivered after."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _staged(plan: dict[str, Path], staging: Path, out: Path) -> dict[str, Path]:
    """The staging-folder counterparts of a query's output paths."""
    staged = {k: staging / p.relative_to(out) for k, p in plan.items()}
    for p in staged.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    return staged


def read_support(segmenter, pairs, args):
    """Read (once) and preprocess the support pairs: 2D images as they are, volumes as labelled slices."""
    images, labels, names, geometries = [], [], [], []
    for image_path, label_path in pairs:
        image, label = io.read_support_pair(image_path, label_path)
        if image.volume:
            slices, slice_labels, indices = segmenter.volume_support_slices(
                image.array,
                label,
                axis=args.axis,
                affine=image.affine,
                count=args.slices_per_volume,
                name=image.name,
            )
            images += slices
            labels += slice_labels
            names += [f"{image.name}[{pp.axis_label(args.axis)} slice {i}]" for i in indices]
            geometries.append((image.name, pp.Orientation.from_affine(image.affine)))
        else:
            images.append(segmenter.normalize(pp.to_grayscale(image.array, name=str(image_path)), name=str(image_path)))
            labels.append(label)
            names.append(image_path.name)
    return segmenter.prepare_support(
        images, labels, label_values=args.labels, normalize=False, names=names, geometries=geometries
    )


def _progress(total: int, args, unit: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, disable=True if args.quiet else None, desc=PROG)


def _support_for_overlay(support):
    """Support images and label maps (values of the support labels) at model size, for the overlay thumbnails."""
    values = np.asarray(support.label_values)
    masks = support.masks  # (L, N, h, w)
    maps = np.where(masks.any(axis=0), values[masks.argmax(axis=0)], 0)
    return list(support.images), list(maps)


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
    """Segment 2D queries in batches, reading each file once and lazily, and write their outputs into staging."""
    pending: deque = deque()

    def arrays():
        for query, plan, loaded in items:
            if loaded is None:
                (loaded,) = io.read(query, what="image")
            array = loaded.array
            if loaded.reference is not None:
                array = array.reshape(array.shape[:2])  # 2D NIfTI: (H, W) or (H, W, 1)
            pending.append((plan, loaded))
            yield array

    thumbs = _support_for_overlay(support)
    with _progress(len(items), args, "image") as bar:
        for result in segmenter.iter_segment(arrays(), support, **options):
            plan, loaded = pending.popleft()
            staged = _staged(plan, staging, out)
            reference = loaded.reference
            shape = loaded.array.shape if reference is not None else result.label_map.shape  # NIfTI keeps (H, W, 1)
            io.write_array(staged["mask"], result.label_map.reshape(shape), reference=reference)
            if "probabilities" in staged:
                probs = probability_array(result.probabilities, shape, reference is not None)
                io.write_array(staged["probabilities"], probs, reference=reference)
            if "overlay" in staged:
                query = loaded.array if reference is None else loaded.array.reshape(result.label_map.shape)
                picture = overlay.overlay(query, result.label_map, result.label_values, *thumbs)
                io.write_array(staged["overlay"], picture)
            bar.update(1)


def write_volume(segmenter, support, loaded, staged: dict[str, Path], options, args) -> None:
    """Segment one volume (NIfTI or DICOM series) slice by slice; the mask keeps the input's shape, affine and
    header (a DICOM series: its geometry)."""
    volume = loaded.array
    result = segmenter.segment_volume(
        volume, support, axis=args.axis, affine=loaded.affine, name=loaded.name, progress=not args.quiet, **options
    )
    io.write_array(staged["mask"], result.label_map, reference=loaded.reference)
    if "probabilities" in staged:
        probs = probability_array(result.probabilities, volume.shape, nifti=True)
        io.write_array(staged["probabilities"], probs, reference=loaded.reference)
    if "seg" in staged:
        from universeg_jax import dicom
        from universeg_jax.files import atomic_path

        with atomic_path(staged["seg"]) as tmp:
            dicom.write_seg(staged["seg"], loaded.series, result.label_map, result.label_values, tmp_path=tmp)
    if "overlay" in staged:
        orientation = pp.Orientation.from_affine(loaded.affine)
        axis = orientation.canonical_axis(args.axis)
        volume3d = orientation.to_canonical(volume.reshape(volume.shape[:3]))
        label3d = orientation.to_canonical(result.label_map.reshape(volume.shape[:3]))
        indices = best_slices(label3d, axis)
        picture = overlay.overlay(
            [np.take(volume3d, i, axis=axis) for i in indices],
            [np.take(label3d, i, axis=axis) for i in indices],
            result.label_values,
            *_support_for_overlay(support),
            titles=[f"{pp.axis_label(args.axis)} slice {i}" for i in indices],  # the file is named after the volume
        )
        io.write_array(staged["overlay"], picture)


def best_slices(label_map: np.ndarray, axis: int, count: int = 3) -> list[int]:
    """The ``count`` slices along ``axis`` with the most predicted foreground, in slice order (the middle slice
    if there is no foreground)."""
    other = tuple(a for a in range(label_map.ndim) if a != axis)
    area = (label_map != 0).sum(axis=other)
    if not area.any():
        return [label_map.shape[axis] // 2]
    ranked = [int(i) for i in np.argsort(-area, kind="stable")[:count] if area[i] > 0]
    return sorted(ranked)


if __name__ == "__main__":
    sys.exit(main())
