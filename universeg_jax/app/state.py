"""What the app holds for its one user: support examples, queries, corrections and predictions.

No web code here: :class:`Session` is driven by ``universeg_jax.app.server`` and tested directly. Inference is
``universeg_jax.inference.Segmenter``'s, called the way the ``segment`` command calls it, so that the support set
the app exports gives the same masks on the command line:

* files are read with ``io.read``; a 2D support pair is normalised per image; a NIfTI volume gives
  ``slices_per_volume`` labelled slices along ``axis`` (a plane, or a voxel axis) of the volume reoriented to RAS
  (``Segmenter.volume_support_slices`` with the file's affine, normalised as a whole volume);
* a 2D query is segmented with ``Segmenter.segment``, a volume with ``Segmenter.segment_volume`` (its affine,
  ``axis``); the page shows and paints volumes in that RAS slice order, and masks go back to the file's own;
* the support set is kept in export order: sources (files or volumes) in the order they were added, the slices
  of one volume in slice order; the export names its files ``000_...``, ``001_...`` so that the CLI reads them
  in that order.

Every user-facing failure is an :class:`AppError` (a ``ValueError``) whose message the page shows; an operation
that fails changes nothing.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import shlex
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from universeg_jax import io, overlay
from universeg_jax import preprocess as pp
from universeg_jax.app import render
from universeg_jax.inference import label_map_from

NO_EDIT = 0xFFFF  # an edit layer's "not painted" value (edits are uint16 label values)
MAX_LABEL_VALUE = 0xFFFE
# Extensions the CLI accepts, in the order the page lists them.
ACCEPTED = io.IMAGE_SUFFIXES


class AppError(ValueError):
    """A problem with the user's input or request, shown to them as a message."""


@dataclasses.dataclass(frozen=True)
class Options:
    """Prediction settings of a request (the ``segment`` command's ``--threshold --ensemble --support-size
    --seed``)."""

    threshold: float = 0.5
    ensemble: int = 1
    support_size: int | None = None
    seed: int = 0

    @classmethod
    def parse(cls, params: Mapping) -> Options:
        """From query-string or JSON values; an empty ``support_size`` means all examples."""

        def number(key, kind, default):
            raw = params.get(key)
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                return default
            try:
                value = kind(raw)
            except (TypeError, ValueError):
                raise AppError(f"{key.replace('_', ' ')} must be a number, got {raw!r}") from None
            if kind is int and float(raw) != value:
                raise AppError(f"{key.replace('_', ' ')} must be a whole number, got {raw!r}")
            return value

        threshold = number("threshold", float, 0.5)
        if not 0.0 <= threshold <= 1.0:
            raise AppError(f"threshold must be in [0, 1], got {threshold}")
        ensemble = number("ensemble", int, 1)
        if ensemble < 1:
            raise AppError(f"ensemble must be at least 1, got {ensemble}")
        support_size = number("support_size", int, None)
        if support_size is not None and support_size < 1:
            raise AppError(f"support size must be at least 1 (or empty for all), got {support_size}")
        return cls(threshold, ensemble, support_size, number("seed", int, 0))

    @property
    def key(self) -> tuple:
        """What a prediction's probabilities depend on (the threshold only makes the label map)."""
        return self.ensemble, self.support_size, self.seed

    def kwargs(self) -> dict:
        return dict(ensemble=self.ensemble, support_size=self.support_size, seed=self.seed, threshold=self.threshold)


@dataclasses.dataclass(eq=False)
class Geometry:
    """How a volume file is shown: ``orientation`` to RAS, the canonical ``axis`` slices are taken along, the
    ``canonical`` (RAS-ordered) shape, and the nibabel ``reference`` (affine, header) outputs are written with."""

    orientation: pp.Orientation
    axis: int
    canonical: tuple[int, int, int]
    reference: object

    @classmethod
    def of(cls, loaded, axis) -> Geometry:
        orientation = pp.Orientation.from_affine(loaded.affine)
        shape = orientation.to_canonical(np.empty(squeeze(loaded.array).shape, np.bool_)).shape
        return cls(orientation, orientation.canonical_axis(axis), tuple(shape), loaded.reference)

    def slice(self, array: np.ndarray, index: int) -> np.ndarray:
        """Slice ``index`` of an array whose last three axes are canonical (a view)."""
        return np.moveaxis(array, array.ndim - 3 + self.axis, 0)[index]

    def stored(self, canonical: np.ndarray) -> np.ndarray:
        """A canonical ``(X, Y, Z)`` array in the file's voxel order and shape (trailing singleton axes kept)."""
        return np.ascontiguousarray(self.orientation.from_canonical(canonical)).reshape(self.reference.shape)


@dataclasses.dataclass(eq=False)
class Source:
    """What the export writes as one image/label pair: an uploaded 2D pair (``"pair"``), a 2D query with the
    user's mask (``"mask"``), or a volume (``"volume"``, from an upload or a query) whose examples are slices."""

    kind: str
    image_path: Path
    label_path: Path | None = None  # "pair": the uploaded label file
    geometry: Geometry | None = None  # "volume"


@dataclasses.dataclass(eq=False)
class Example:
    """One 2D support example: ``image`` (H, W) float32 in [0, 1] (normalised as the CLI does), ``label`` (H, W)
    integer label map; ``index`` is its slice for a volume source."""

    id: int
    name: str
    image: np.ndarray
    label: np.ndarray
    source: Source
    index: int = 0
    origin: str = "upload"  # or "correction"
    query: int | None = None  # the query a correction came from
    thumbnail: tuple | None = None  # (legend, data URL), made when first shown


@dataclasses.dataclass(eq=False)
class Query:
    """An uploaded query image or volume. ``array``: as read (what the CLI segments: 2D, or a volume in its stored
    order); ``display``: (H, W), or the volume in RAS order (X, Y, Z), in [0, 1]; ``edits``: per slice, the user's
    painted label values (``NO_EDIT`` where unpainted); ``added``: slice -> id of the support example made from it.
    Slices, edits and predictions of a volume are in RAS order (``geometry``)."""

    id: int
    name: str
    path: Path
    array: np.ndarray
    display: np.ndarray
    reference: object = None
    geometry: Geometry | None = None
    edits: dict = dataclasses.field(default_factory=dict)
    added: dict = dataclasses.field(default_factory=dict)
    source: Source | None = None
    cache: tuple | None = None  # (key, probabilities (L, ...) in display order, label values)

    @property
    def volume(self) -> bool:
        return self.display.ndim == 3


def safe_name(name: str) -> str:
    """A file name from an upload, without folders; refuses empty and dot names."""
    base = Path(str(name).replace("\\", "/")).name.strip()
    if base in ("", ".", ".."):
        raise AppError(f"bad file name {name!r}")
    return base


class Session:
    """The app's state. ``workdir`` keeps copies of the uploaded files (the export copies them from there)."""

    def __init__(self, segmenter, workdir, *, axis="axial", slices_per_volume: int = 8, weights: str | None = None):
        """``weights``: what the app was started with (``--weights``; None for the shipped model), for the
        command in the downloaded support set's README."""
        axis = pp.parse_axis(axis)
        if slices_per_volume < 1:
            raise ValueError(f"slices_per_volume must be positive, got {slices_per_volume!r}")
        self.segmenter = segmenter
        self.workdir = Path(workdir)
        self.axis = axis
        self.slices_per_volume = int(slices_per_volume)
        self.weights = weights
        self.examples: list[Example] = []
        self.sources: list[Source] = []
        self.queries: dict[int, Query] = {}
        self.version = 0  # grows with every change of the support set
        self._next_id = 1
        self._uploads = 0
        self._support_cache: tuple | None = None

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def public(self, message) -> str:
        """``message`` as the page may show it: without the paths of the work folder."""
        return _short(message, self.workdir)

    # -- uploads -------------------------------------------------------------------------------------------------

    def save_upload(self, name: str, data: bytes) -> Path:
        """Keep an uploaded file in the work folder, under its own name (each upload in its own folder)."""
        name = safe_name(name)
        self._uploads += 1
        folder = self.workdir / "uploads" / str(self._uploads)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_bytes(data)
        return path

    @staticmethod
    def _check_suffixes(paths: Sequence[Path], what: str) -> None:
        bad = [p.name for p in paths if io.suffix(p) not in ACCEPTED]
        if bad:
            raise AppError(f"{what}: {', '.join(bad)} not a supported file ({', '.join(ACCEPTED)})")

    # -- the support set -----------------------------------------------------------------------------------------

    def ordered(self, examples: Sequence[Example] | None = None) -> list[Example]:
        """Examples in export order: by source (in the order sources were added), then by slice."""
        examples = self.examples if examples is None else examples
        rank = {id(s): k for k, s in enumerate(self.sources)}
        return sorted(examples, key=lambda e: (rank.get(id(e.source), len(rank)), e.index))

    def _prepare(self, examples: Sequence[Example]):
        """A ``Support`` of these examples (in export order), or an AppError naming what is wrong."""
        if not examples:
            raise AppError("the support set is empty: add labelled examples first")
        examples = self.ordered(examples)
        try:
            geometries = {
                e.source.image_path.name: e.source.geometry.orientation
                for e in examples
                if e.source.geometry is not None
            }
            return self.segmenter.prepare_support(
                [e.image for e in examples],
                [e.label for e in examples],
                normalize=False,
                names=[e.name for e in examples],
                geometries=list(geometries.items()),
            )
        except (ValueError, TypeError) as err:
            raise AppError(str(err)) from None

    def support(self):
        """The prepared support set of the current examples (cached until they change)."""
        if self._support_cache is None or self._support_cache[0] != self.version:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # shown when the examples were added
                self._support_cache = (self.version, self._prepare(self.examples))
        return self._support_cache[1]

    def _commit(
        self,
        new_examples: Sequence[Example],
        new_sources: Sequence[Source] = (),
        replaced: Mapping[int, Example] | None = None,
    ) -> None:
        """Check that the support set with these changes can be prepared, then apply them (all or nothing)."""
        replaced = dict(replaced or {})
        candidate = [replaced.get(e.id, e) for e in self.examples] + list(new_examples)
        sources = self.sources + [s for s in new_sources if s not in self.sources]
        saved = self.sources
        self.sources = sources  # ordered() ranks by the candidate sources
        try:
            self._prepare(candidate)
        except AppError:
            self.sources = saved
            raise
        self.examples = candidate
        self.version += 1

    def add_support(self, images: Sequence[Path], labels: Sequence[Path]) -> int:
        """Add uploaded image/label files (paired by name as the CLI pairs them; one image with one label pair
        whatever their names). NIfTI volumes give labelled slices. Returns how many examples were added."""
        images, labels = [Path(p) for p in images], [Path(p) for p in labels]
        if not images and not labels:
            raise AppError("choose support image files and their label files")
        if not images:
            raise AppError(
                f"{len(labels)} label file(s) but no image: every label needs its image "
                f"({', '.join(p.name for p in labels)})"
            )
        if not labels:
            raise AppError(
                f"{len(images)} image(s) but no label file: every support image needs its label "
                f"({', '.join(p.name for p in images)})"
            )
        self._check_suffixes(images, "support images")
        self._check_suffixes(labels, "support labels")
        if len(images) == 1 and len(labels) == 1:
            pairs = [(images[0], labels[0])]
        else:
            try:
                pairs = io.pair_images_labels(images, labels)
            except ValueError as err:
                raise AppError(_short(err, self.workdir)) from None
            pairs = [(Path(i), Path(l)) for i, l in pairs]
        examples, sources = [], []
        for image_path, label_path in pairs:
            new, source = self._read_pair(image_path, label_path)
            examples += new
            sources.append(source)
        self._commit(examples, sources)
        return len(examples)

    def _read_pair(self, image_path: Path, label_path: Path) -> tuple[list[Example], Source]:
        try:
            image, label = io.read_support_pair(image_path, label_path)
        except (ValueError, OSError) as err:
            raise AppError(_short(err, self.workdir)) from None
        try:
            if image.volume:
                geometry = Geometry.of(image, self.axis)
                source = Source("volume", image_path, geometry=geometry)
                slices, slice_labels, indices = self.segmenter.volume_support_slices(
                    image.array,
                    label,
                    axis=self.axis,
                    affine=image.affine,
                    count=self.slices_per_volume,
                    name=image_path.name,
                )
                return [
                    Example(
                        self._new_id(),
                        f"{image_path.name} slice {k}",
                        np.asarray(im, np.float32),
                        check_label(lab, label_path.name),
                        source,
                        k,
                    )
                    for im, lab, k in zip(slices, slice_labels, indices)
                ], source
            gray = self.segmenter.normalize(pp.to_grayscale(image.array, name=image_path.name), name=image_path.name)
            lab = check_label(pp.label_to_2d(label, name=label_path.name), label_path.name)
        except (ValueError, TypeError) as err:
            raise AppError(f"{image_path.name}: {_short(err, self.workdir)}") from None
        if not lab.any():
            raise AppError(
                f"the label of {image_path.name} ({label_path.name}) has no foreground: a support example "
                "must show the structure"
            )
        source = Source("pair", image_path, label_path)
        return [Example(self._new_id(), image_path.name, gray, lab, source)], source

    def _read(self, path: Path, what: str):
        """``io.read`` of one uploaded file (as the CLI reads it), errors without the work folder's path."""
        try:
            (loaded,) = io.read(path, what=what)
        except (ValueError, OSError) as err:
            raise AppError(_short(err, self.workdir)) from None
        return loaded

    def remove_example(self, example_id: int) -> None:
        example = self._example(example_id)
        self.examples = [e for e in self.examples if e is not example]
        if not any(e.source is example.source for e in self.examples):
            self.sources = [s for s in self.sources if s is not example.source]
        for query in self.queries.values():
            query.added = {k: v for k, v in query.added.items() if v != example_id}
            if query.source is example.source and example.source not in self.sources:
                query.source = None
        self.version += 1

    def _example(self, example_id: int) -> Example:
        for example in self.examples:
            if example.id == example_id:
                return example
        raise AppError(f"there is no support example {example_id} (it may have been removed already)")

    def label_values(self) -> tuple[int, ...]:
        """Every label value of the support set and of the user's painting, sorted: the legend."""
        values: set[int] = set()
        for example in self.examples:
            values.update(int(v) for v in np.unique(example.label) if v)
        for query in self.queries.values():
            for edit in query.edits.values():
                values.update(int(v) for v in np.unique(edit) if v and v != NO_EDIT)
        return tuple(sorted(values))

    def colours(self) -> dict[int, np.ndarray]:
        return overlay.colour_of(self.label_values())

    # -- queries -------------------------------------------------------------------------------------------------

    def add_queries(self, paths: Sequence[Path]) -> list[int]:
        """Add query images or volumes (all or none); returns their ids."""
        paths = [Path(p) for p in paths]
        if not paths:
            raise AppError("choose query image files")
        self._check_suffixes(paths, "queries")
        queries = []
        for path in paths:
            loaded = self._read(path, "image")
            try:
                if loaded.volume:
                    geometry = Geometry.of(loaded, self.axis)
                    canonical = geometry.orientation.to_canonical(squeeze(loaded.array))
                    display = self.segmenter.normalize(canonical, name=path.name)
                else:
                    geometry = None
                    display = self.segmenter.normalize(pp.to_grayscale(flat(loaded), name=path.name), name=path.name)
            except (ValueError, TypeError) as err:
                raise AppError(f"{path.name}: {_short(err, self.workdir)}") from None
            queries.append(Query(self._new_id(), path.name, path, loaded.array, display, loaded.reference, geometry))
        for query in queries:
            self.queries[query.id] = query
        return [q.id for q in queries]

    def remove_query(self, query_id: int) -> None:
        """Forget a query; support examples made from it stay."""
        del self.queries[self.query(query_id).id]

    def query(self, query_id: int) -> Query:
        try:
            return self.queries[int(query_id)]
        except (KeyError, ValueError, TypeError):
            raise AppError(f"there is no query {query_id} (it may have been removed)") from None

    def _slice_index(self, query: Query, index) -> int:
        if not query.volume:
            return 0
        n = query.display.shape[query.geometry.axis]
        try:
            index = int(index)
        except (TypeError, ValueError):
            raise AppError(f"slice must be a number, got {index!r}") from None
        if not 0 <= index < n:
            raise AppError(f"slice {index} is outside {query.name} (0 to {n - 1}, {pp.axis_label(self.axis)})")
        return index

    @staticmethod
    def _screen(query: Query, array: np.ndarray, back: bool = False) -> np.ndarray:
        """A volume slice (last two axes, RAS order) as the page shows it, turned a quarter so that the second
        axis runs up the screen (axial: anterior up, patient's right on the right; coronal and sagittal: superior
        up); ``back``: from the page's orientation to the slice's. 2D images as they are."""
        if not query.volume:
            return array
        return np.rot90(array, -1 if back else 1, axes=(-2, -1))

    @staticmethod
    def _take(query: Query, array: np.ndarray, index: int) -> np.ndarray:
        """Slice ``index`` of an array whose last three axes are the query volume's in display order (a view, so
        that writing to it writes to ``array``); a 2D query's arrays as they are."""
        return query.geometry.slice(array, index) if query.volume else array

    def result(self, query: Query, options: Options) -> tuple[np.ndarray, tuple[int, ...]]:
        """The query's probabilities ``(L, ...)`` in display order (RAS for volumes) and their label values, with
        the current support set (cached per support version and options)."""
        key = (self.version,) + options.key
        if query.cache is not None and query.cache[0] == key:
            return query.cache[1:]
        support = self.support()
        kwargs = options.kwargs()
        try:
            if query.volume:
                result = self.segmenter.segment_volume(
                    query.array,
                    support,
                    axis=self.axis,
                    affine=query.geometry.reference.affine,
                    name=query.name,
                    **kwargs,
                )
                stored = result.probabilities.reshape((len(result.probabilities),) + squeeze(query.array).shape)
                probabilities = np.moveaxis(query.geometry.orientation.to_canonical(np.moveaxis(stored, 0, -1)), -1, 0)
            else:
                result = self.segmenter.segment([flat(query)], support=support, **kwargs)[0]
                probabilities = result.probabilities
        except (ValueError, TypeError) as err:
            raise AppError(str(err)) from None
        query.cache = (key, np.ascontiguousarray(probabilities), tuple(result.label_values))
        return query.cache[1:]

    def prediction(self, query: Query, options: Options, index: int | None = None) -> np.ndarray:
        """The label map at ``options.threshold`` (one slice, or the whole query), before the user's edits;
        zeros when the support set is empty (so that a first example can be painted by hand)."""
        shape = query.display.shape if index is None else self._take(query, query.display, index).shape
        if not self.examples:
            return np.zeros(shape, np.uint16)
        probabilities, values = self.result(query, options)
        if index is not None:
            probabilities = self._take(query, probabilities, index)
        return label_map_from(probabilities, values, options.threshold)

    def corrected(self, query: Query, options: Options, index: int | None = None) -> np.ndarray:
        """The prediction with the user's edits painted over it (one slice, or the whole query)."""
        labels = self.prediction(query, options, index).astype(np.uint32)
        slices = query.edits.items() if index is None else [(index, query.edits.get(index))]
        for k, edit in slices:
            if edit is None:
                continue
            target = labels if not query.volume or index is not None else self._take(query, labels, k)
            painted = edit != NO_EDIT
            target[painted] = edit[painted]  # a view of labels
        dtype = np.uint8 if labels.max(initial=0) <= 255 else np.uint16
        return labels.astype(dtype)

    def set_edits(self, query_id: int, index, data: str | bytes | None) -> None:
        """Store the painted layer of one slice: base64 of little-endian uint16 values, ``NO_EDIT`` unpainted;
        empty or all-unpainted clears it."""
        query = self.query(query_id)
        index = self._slice_index(query, index)
        shape = self._screen(query, self._take(query, query.display, index)).shape
        if not data:
            query.edits.pop(index, None)
            return
        try:
            raw = base64.b64decode(data, validate=True) if isinstance(data, str) else bytes(data)
        except (ValueError, TypeError):
            raise AppError("the painted mask is not valid base64") from None
        if len(raw) != 2 * shape[0] * shape[1]:
            raise AppError(f"the painted mask has {len(raw) // 2} pixels, the slice has {shape[0]}x{shape[1]}")
        edit = np.ascontiguousarray(self._screen(query, np.frombuffer(raw, "<u2").reshape(shape), back=True), np.uint16)
        if (edit == NO_EDIT).all():
            query.edits.pop(index, None)
        else:
            query.edits[index] = edit

    def add_correction(self, query_id: int, index, options: Options) -> int:
        """The in-context loop: the query (slice) with the user's corrections joins the support set. Adding the
        same slice again replaces its example. Returns the example id."""
        query = self.query(query_id)
        index = self._slice_index(query, index)
        label = self.corrected(query, options, index)
        if not label.any():
            raise AppError(f"nothing to add: the mask of {query.name} is empty (paint the structure first)")
        name = f"{query.name} slice {index}" if query.volume else query.name
        if query.volume:
            canonical = np.zeros(query.display.shape, label.dtype)
            query.geometry.slice(canonical, index)[...] = label
            try:
                images, _, _ = self.segmenter.volume_support_slices(
                    query.array,
                    query.geometry.stored(canonical),
                    axis=self.axis,
                    affine=query.geometry.reference.affine,
                    indices=[index],
                    name=query.name,
                )
            except (ValueError, TypeError) as err:
                raise AppError(str(err)) from None
            image = np.asarray(images[0], np.float32)
        else:
            image = self.segmenter.normalize(pp.to_grayscale(flat(query), name=query.name), name=query.name)
        source = query.source
        if source is None:
            source = (
                Source("volume", query.path, geometry=query.geometry) if query.volume else Source("mask", query.path)
            )
        previous = query.added.get(index)
        if previous is not None:
            old = self._example(previous)
            example = dataclasses.replace(old, image=image, label=label, thumbnail=None)
            self._commit([], [source], replaced={old.id: example})
        else:
            example = Example(
                self._new_id(), f"{name} (corrected)", image, label, source, index, "correction", query.id
            )
            self._commit([example], [source])
        query.source = source
        query.added[index] = example.id
        return example.id

    # -- files ---------------------------------------------------------------------------------------------------

    def mask_file(self, query_id: int, options: Options, folder: Path) -> Path:
        """The query's mask (prediction + corrections) in its own format and voxel order, named as the CLI names it
        (NIfTI keeps the query's affine and header)."""
        query = self.query(query_id)
        labels = self.corrected(query, options)
        path = Path(folder) / f"{io.stem(query.path)}{io.mask_suffix(query.path)}"
        if query.volume:
            labels = query.geometry.stored(labels)
        elif query.reference is not None:
            labels = labels.reshape(np.shape(query.array))  # a 2D NIfTI keeps its (H, W, 1)
        elif io.suffix(path) == ".bmp" and labels.dtype != np.uint8:
            path = path.with_suffix(".png")  # BMP holds 8 bits
        return io.write_array(path, labels, reference=query.reference)

    def probability_file(self, query_id: int, options: Options, folder: Path) -> Path:
        """Float32 probabilities as the CLI's ``--probabilities`` writes them (one label: the query's shape; several:
        one TIFF page per label, or a last NIfTI axis of labels)."""
        query = self.query(query_id)
        probabilities, _ = self.result(query, options)
        probabilities = probabilities.astype(np.float32)
        nifti = query.reference is not None
        if query.volume:
            probabilities = np.stack([query.geometry.stored(p) for p in probabilities])
        shape = np.shape(query.array) if nifti else probabilities.shape[1:]
        if len(probabilities) == 1:
            data = probabilities[0].reshape(shape)
        elif nifti:
            data = np.moveaxis(probabilities, 0, -1).reshape(shape + (len(probabilities),))
        else:
            data = probabilities
        path = Path(folder) / f"{io.stem(query.path)}_probabilities{'.nii.gz' if nifti else '.tif'}"
        return io.write_array(path, data, reference=query.reference)

    def export_support(self, folder: Path) -> Path:
        """Write the support set as ``folder/images`` + ``folder/labels`` (paired by name) and a ``README.txt`` with
        the ``universeg-jax segment`` command that uses it as the app does."""
        if not self.examples:
            raise AppError("the support set is empty: there is nothing to download")
        folder = Path(folder)
        images, labels = folder / "images", folder / "labels"
        images.mkdir(parents=True)
        labels.mkdir()
        most_slices = 0
        for order, source in enumerate(self.sources):
            members = self.ordered([e for e in self.examples if e.source is source])
            stem = f"{order:03d}_{_clean(io.stem(source.image_path))}"
            kind = io.suffix(source.image_path)
            shutil.copyfile(source.image_path, images / f"{stem}{kind}")
            if source.kind == "pair":
                shutil.copyfile(source.label_path, labels / f"{stem}{io.suffix(source.label_path)}")
            elif source.kind == "mask":
                label = members[0].label
                io.write_array(labels / f"{stem}.png", label.astype(np.uint8 if label.max() <= 255 else np.uint16))
            else:
                geometry = source.geometry
                volume = np.zeros(
                    geometry.canonical, np.uint8 if max(int(e.label.max()) for e in members) <= 255 else np.uint16
                )
                for e in members:
                    geometry.slice(volume, e.index)[...] = e.label
                io.write_array(labels / f"{stem}{kind}", geometry.stored(volume), reference=geometry.reference)
                most_slices = max(most_slices, len(members))
        volume_options = f" --axis {self.axis} --slices-per-volume {most_slices}" if most_slices else ""
        weights = f" --weights {shlex.quote(self.weights)}" if self.weights else ""  # else the shipped model
        size = " ".join(map(str, self.segmenter.size))
        (folder / "README.txt").write_text(
            "Support set saved by the universeg-jax app: images/ and labels/ pair up by file name.\n"
            f"{len(self.examples)} examples, label values {list(self.label_values_of_support())}.\n\n"
            "Segment new images with it, as the app does (same weights and model size):\n\n"
            f"    universeg-jax segment --support-images images --support-labels labels{volume_options} \\\n"
            f"        --query QUERY_FILES_OR_FOLDER --out results{weights} --size {size}\n\n"
            "Volumes carry labels only on the slices the app used as support, so the command picks the same ones.\n"
        )
        return folder

    def label_values_of_support(self) -> tuple[int, ...]:
        values: set[int] = set()
        for example in self.examples:
            values.update(int(v) for v in np.unique(example.label) if v)
        return tuple(sorted(values))

    # -- what the page shows -------------------------------------------------------------------------------------

    def state(self) -> dict:
        """Support examples (with thumbnails), legend, queries and settings, as JSON-ready values."""
        colours = self.colours()
        legend_key = tuple(colours)
        examples = []
        for e in self.ordered():
            if e.thumbnail is None or e.thumbnail[0] != legend_key:
                turn = 1 if e.source.kind == "volume" else 0  # volume slices as the page shows them (_screen)
                e.thumbnail = (legend_key, render.thumbnail(np.rot90(e.image, turn), np.rot90(e.label, turn), colours))
            examples.append(
                {
                    "id": e.id,
                    "name": e.name,
                    "origin": e.origin,
                    "shape": list(e.label.shape),
                    "labels": [int(v) for v in np.unique(e.label) if v],
                    "thumbnail": e.thumbnail[1],
                }
            )
        queries = [
            {
                "id": q.id,
                "name": q.name,
                "volume": q.volume,
                "shape": list(q.display.shape),
                "slices": int(q.display.shape[q.geometry.axis]) if q.volume else 1,
                "added": sorted(int(k) for k in q.added),
                "edited": sorted(int(k) for k in q.edits),
            }
            for q in self.queries.values()
        ]
        return {
            "version": self.version,
            "support": {
                "count": len(self.examples),
                "examples": examples,
                "label_values": list(self.label_values_of_support()),
            },
            "legend": [
                {"value": v, "name": overlay.label_name(v, tuple(colours)), "colour": render.hex_colour(c)}
                for v, c in colours.items()
            ],
            "queries": queries,
            "settings": {
                "axis": pp.axis_label(self.axis),
                "slices_per_volume": self.slices_per_volume,
                "model_size": list(self.segmenter.size),
                "accepted": list(ACCEPTED),
            },
        }

    def view(self, query_id: int, index, options: Options, probability_label=None) -> dict:
        """One slice of a query for the page: picture, probability map, predicted labels and the user's edits
        (base64 uint16). If the prediction fails (e.g. no support yet), ``error`` says why and the picture is
        still there."""
        query = self.query(query_id)
        index = self._slice_index(query, index)
        image = self._screen(query, self._take(query, query.display, index))
        h, w = image.shape
        out = {
            "query": query.id,
            "name": query.name,
            "slice": index,
            "width": w,
            "height": h,
            "image": render.data_url(render.gray(image)),
            "version": self.version,
            "support_count": len(self.examples),
            "probability": None,
            "prediction": None,
            "error": None,
            "labels": [],
            "edits": _b64(self._screen(query, query.edits[index])) if index in query.edits else None,
            "added": index in query.added,
        }
        if not self.examples:
            out["error"] = "no support set yet: add labelled examples (or paint this image and add it to the support)"
            return out
        try:
            probabilities, values = self.result(query, options)
            prediction = self.prediction(query, options, index)
        except AppError as err:
            out["error"] = str(err)
            return out
        probabilities = self._screen(query, self._take(query, probabilities, index))
        prediction = self._screen(query, prediction)
        values = list(values)
        if probability_label in (None, "", "max"):
            shown = probabilities.max(axis=0)
        else:
            try:
                shown = probabilities[values.index(int(probability_label))]
            except (ValueError, TypeError):
                raise AppError(f"label {probability_label!r} is not a support label ({values})") from None
        out.update(
            probability=render.data_url(render.heat(shown)),
            prediction=_b64(prediction.astype(np.uint16)),
            labels=[
                {"value": int(v), "name": overlay.label_name(v, values), "pixels": int((prediction == v).sum())}
                for v in values
            ],
        )
        return out


def flat(loaded, array=None) -> np.ndarray:
    """A 2D file's array (``loaded.array``, or ``array`` read beside it) as the CLI uses it: a 2D NIfTI's
    ``(H, W, 1)`` as ``(H, W)``."""
    array = loaded.array if array is None else np.asarray(array)
    return array.reshape(array.shape[:2]) if loaded.reference is not None else array


def squeeze(array) -> np.ndarray:
    """An array without trailing singleton axes beyond the third (NIfTI ``(X, Y, Z, 1)`` -> ``(X, Y, Z)``)."""
    array = np.asanyarray(array)
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return np.asarray(array)


def check_label(label: np.ndarray, name: str) -> np.ndarray:
    """An integer label map the page can paint (values 0 to ``MAX_LABEL_VALUE``)."""
    label = np.asarray(label)
    if label.dtype.kind == "f" and not np.array_equal(label, np.round(label)):
        raise AppError(f"{name} has non-integer values: a label must be a binary mask or an integer label map")
    if label.size and (label.min() < 0 or label.max() > MAX_LABEL_VALUE):
        raise AppError(f"{name} has values outside 0-{MAX_LABEL_VALUE}")
    return label.astype(np.uint16 if label.max(initial=0) > 255 else np.uint8)


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, "<u2").tobytes()).decode("ascii")


def _clean(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem) or "image"


def _short(err, workdir: Path) -> str:
    """A message without the work folder's path: uploads by their file names (the user knows their files by
    name), anything else in the folder as "…"."""
    text = re.sub(re.escape(str(workdir)) + r"/uploads/\d+/", "", str(err))
    return text.replace(str(workdir), "…")
