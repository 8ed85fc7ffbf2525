"""Segment a researcher's own images: ``Segmenter`` wraps a UniverSeg model for arrays of any size and dtype.

    seg = Segmenter.from_weights("v1")                       # or Segmenter(model)
    support = seg.prepare_support(images, labels)            # preprocessed once, reused for every query
    results = seg.segment(queries, support=support, ensemble=4, support_size=16, seed=0)
    results[0].probabilities   # (L, H, W) float32 per-label foreground probability at the query's size
    results[0].label_map       # (H, W) label values of the support labels, 0 = background

* Preprocessing (``universeg_jax.preprocess``, the code the dataset builders use): grayscale, percentile (or CT
  window) normalisation to [0, 1], resize to the model size (``resize="stretch"``, or ``"pad"`` to a square
  first); probabilities are brought back to each query's native size.
* Labels: binary masks, or integer label maps; every non-zero value is its own one-vs-rest task.
* Weights: ``from_weights`` takes what ``universeg_jax.trained.load`` does (``"v1"``, a file, a run directory).
* Support size: by default at most the size the weights were trained with (64 for v1); a larger support is split
  into ensemble members that together use every example once. ``ensemble`` / ``support_size`` choose explicitly.
* Batching: every (label, ensemble member) support set and a chunk of queries run in one forward pass, as many as
  ``memory_budget`` allows; the first block's query-independent support work is computed once per support set
  (``UniverSeg.encode_support``) and reused for every query.
* Volumes: ``segment_volume`` reorients a volume with an affine to RAS, segments it slice by slice along an
  anatomical axis (``"axial"``...) or a voxel axis, normalises it as a whole (``preprocess.NORMALIZATION_SCOPE``)
  and returns the result in the volume's own voxel order; ``volume_support_slices`` picks labelled slices.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from universeg_jax import preprocess as pp
from universeg_jax.model import UniverSeg
from universeg_jax.trained import DEFAULT_SUPPORT_SIZE
from universeg_jax.trained import load as load_trained

MAX_LABELS = 512
# Memory one forward pass may use, in bytes (Segmenter(memory_budget=...), --memory-budget).
DEFAULT_MEMORY_BUDGET = 2 * 1024**3
# Peak bytes per (query, support set) pair and support example = this x 4 bytes x the features of every level
# (measured for v1 at 128x128: about 13 MB; docs/inference.md).
MEMORY_FACTOR = 1.2


# ---------------------------------------------------------------------------------------------------------------
# Support sets and results.


@dataclasses.dataclass(frozen=True)
class Support:
    """A preprocessed support set at the model size; build it with ``Segmenter.prepare_support``.

    ``images``: ``(N, h, w)`` float32 in [0, 1]; ``masks``: ``(L, N, h, w)`` float32 in {0, 1}, one binary
    task per entry of ``label_values``; ``names`` identify the examples in messages; ``geometries``: for examples
    cut from volumes, ``(source name, preprocess.Orientation)`` pairs (queries of another orientation or spacing
    are warned about); ``resize``: how the examples were fitted to the model size.
    """

    images: np.ndarray
    masks: np.ndarray
    label_values: tuple[int, ...]
    names: tuple[str, ...]
    geometries: tuple = ()
    resize: str = "stretch"

    def __len__(self) -> int:
        return len(self.images)


@dataclasses.dataclass(frozen=True)
class Segmentation:
    """The prediction for one query image or volume, at its native size.

    ``probabilities``: ``(L, *shape)`` float32, the foreground probability of each label (one-vs-rest);
    ``label_map``: ``shape``, the most probable label value where its probability reaches ``threshold``,
    else 0 (background); ``label_values``: the label value of each probability channel.
    """

    probabilities: np.ndarray
    label_map: np.ndarray
    label_values: tuple[int, ...]
    threshold: float


def label_map_from(probabilities: np.ndarray, label_values: Sequence[int], threshold: float) -> np.ndarray:
    """Argmax over labels with background where the best probability is below ``threshold``."""
    values = np.asarray(label_values)
    dtype = np.uint8 if values.max() <= 255 else np.uint16 if values.max() <= 65535 else np.int32
    best = probabilities.argmax(axis=0)
    chosen = np.take_along_axis(probabilities, best[None], axis=0)[0]
    return np.where(chosen >= threshold, values.astype(dtype)[best], 0).astype(dtype)


def find_label_values(labels: Sequence[np.ndarray], names: Sequence[str]) -> tuple[int, ...]:
    """The sorted non-zero values over all label maps (binary masks give one value)."""
    values: set[int] = set()
    for label, name in zip(labels, names):
        if label.dtype.kind == "f" and not np.array_equal(label, np.round(label)):
            raise ValueError(
                f"{name} has non-integer values: a label must be a binary mask or an integer label map "
                "(threshold soft or lossy masks first)"
            )
        if label.min() < 0:
            raise ValueError(f"{name} has negative values; label values must be >= 0")
        values.update(int(v) for v in np.unique(label) if v != 0)
        if len(values) > MAX_LABELS:
            raise ValueError(f"support labels have more than {MAX_LABELS} distinct values: not a label map")
    return tuple(sorted(values))


def _as_volume(x, name: str) -> np.ndarray:
    """A 3D array; trailing singleton axes (e.g. NIfTI's 4th) are dropped."""
    arr = np.asarray(x)
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise ValueError(f"{name} must be a 3D volume, got shape {np.shape(x)}")
    return arr


def _orientation(affine) -> pp.Orientation:
    return pp.Orientation.canonical() if affine is None else pp.Orientation.from_affine(affine)


@dataclasses.dataclass(frozen=True)
class _Group:
    """Support sets of one size run together: ``images``/``masks`` ``(g, S, h, w, 1)``; ``sets`` (label index,
    member index) of each (padding repeats the last set)."""

    images: np.ndarray
    masks: np.ndarray
    sets: tuple[tuple[int, int], ...]


def support_members(n: int, size: int, count: int, seed: int) -> list[np.ndarray]:
    """``count`` subsets of ``size`` distinct examples of ``range(n)``, drawn from successive seeded permutations:
    every example is used once before any is used again (a member that straddles two permutations takes the next
    examples it does not hold yet)."""
    rng = np.random.default_rng(seed)
    pool: deque = deque()
    members = []
    for _ in range(count):
        member: list[int] = []
        while len(member) < size:
            if not pool:
                pool.extend(int(i) for i in rng.permutation(n))
            for k, candidate in enumerate(pool):
                if candidate not in member:
                    member.append(candidate)
                    del pool[k]
                    break
            else:
                pool.extend(int(i) for i in rng.permutation(n))
        members.append(np.sort(np.array(member, np.int64)))
    return members


def split_support(n: int, parts: int, seed: int) -> list[np.ndarray]:
    """A seeded partition of ``range(n)`` into ``parts`` members whose sizes differ by at most one."""
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, parts)]


# ---------------------------------------------------------------------------------------------------------------
# The segmenter.


class Segmenter:
    """Preprocess, batch, ensemble and resize around one model.

    ``size``: the model input size (v1 was trained at 128x128); ``batch_size``: the most queries in one forward
    pass (and read at a time by :meth:`iter_segment`); ``memory_budget``: bytes one forward pass may use, which
    bounds how many (query, support set) pairs run together; ``percentiles`` / ``window``: intensity normalisation
    (``window`` for CT, in HU); ``support_size``: the support size the weights were trained with (the default
    support size); ``resize``: ``"stretch"`` or ``"pad"`` (to a square with the edge values, cropped back after);
    the default is the builders' ``preprocess.RESIZE_MODE``, so inputs are fitted as the training examples were.
    """

    def __init__(
        self,
        model: UniverSeg,
        *,
        size: Sequence[int] = pp.DEFAULT_SIZE,
        batch_size: int = 8,
        percentiles: Sequence[float] = pp.DEFAULT_PERCENTILES,
        window: Sequence[float] | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        support_size: int = DEFAULT_SUPPORT_SIZE,
        resize: str = pp.RESIZE_MODE,
    ):
        if not isinstance(model, UniverSeg):
            raise TypeError(f"model must be a UniverSeg, got {type(model).__name__}")
        self.size = pp.check_size(size)
        factor = 2 ** (model.levels - 1)
        if self.size[0] % factor or self.size[1] % factor:
            raise ValueError(f"size {self.size} must be a multiple of {factor} for this model")
        for name, value in (
            ("batch_size", batch_size),
            ("support_size", support_size),
            ("memory_budget", memory_budget),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.batch_size, self.trained_support_size = int(batch_size), int(support_size)
        self.memory_budget = int(memory_budget)
        self.resize = pp.check_resize_mode(resize)
        # Validate the normalisation options now rather than at the first query.
        pp.normalize_intensity(np.zeros((1, 1)), percentiles=percentiles, window=window)
        self.percentiles, self.window = tuple(percentiles), window
        levels = [(self.size[0] >> i) * (self.size[1] >> i) * sum(spec) for i, spec in enumerate(model.encoder_blocks)]
        self.pair_bytes = int(MEMORY_FACTOR * 4 * sum(levels))
        self._encoded_bytes = 4 * levels[0]  # per support example of a set: the first block's support features
        graphdef, self._params = nnx.split(model)

        def encode(params, support_images, support_labels):
            return nnx.merge(graphdef, params).encode_support(support_images, support_labels)

        def segment_encoded(params, query, encoded):
            return jax.nn.sigmoid(nnx.merge(graphdef, params).segment_encoded(query, encoded)[..., 0])

        self._encode = jax.jit(encode)
        self._segment_encoded = jax.jit(segment_encoded)

    @classmethod
    def from_weights(
        cls,
        weights: str | Path | None = None,
        *,
        size: Sequence[int] | None = None,
        resize: str | None = None,
        **kwargs,
    ):
        """A Segmenter for ``weights`` (see ``universeg_jax.trained``), at the size, support size and resize mode
        they were trained with unless given."""
        model, trained = load_trained(weights)
        kwargs.setdefault("support_size", trained.support_size)
        return cls(model, size=size or trained.size, resize=resize or trained.resize, **kwargs)

    # -- support ---------------------------------------------------------------------------------------------

    def normalize(self, image, *, name: str = "image") -> np.ndarray:
        """Intensities of an image (or a whole volume) mapped to [0, 1] with this Segmenter's percentiles or window."""
        return pp.normalize_intensity(image, percentiles=self.percentiles, window=self.window, name=name)

    def _canonical(self, volume, affine, axis, name: str):
        """``(canonical float32 volume, its Orientation, canonical axis, stored shape)``."""
        shape = np.shape(volume)
        vol = _as_volume(volume, name)
        orientation = _orientation(affine)
        canonical = orientation.to_canonical(np.asarray(vol, np.float32))
        return canonical, orientation, orientation.canonical_axis(axis), shape

    def _volume_range(self, canonical: np.ndarray, name: str):
        if self.window is None and pp.NORMALIZATION_SCOPE == "volume":
            return pp.intensity_range(canonical, self.percentiles, name=name)
        return None

    def _standardize(self, slices: np.ndarray, volume_range, name: str) -> np.ndarray:
        """Model inputs for raw slices of one volume: ``preprocess.standardize_slices``, as the builders do."""
        return pp.standardize_slices(
            slices,
            self.size,
            percentiles=self.percentiles,
            window=self.window,
            volume_range=volume_range,
            resize=self.resize,
            name=name,
        )

    def standardize_volume(self, volume, *, axis="axial", affine=None, name: str = "volume") -> np.ndarray:
        """The model inputs ``(n, h, w)`` for every slice of a volume along ``axis`` (canonical RAS order when an
        ``affine`` is given): the same arrays the dataset builders store (as ``round(255 * x)``) for its slices."""
        canonical, _, axis, _ = self._canonical(volume, affine, axis, name)
        return self._standardize(pp.volume_slices(canonical, axis), self._volume_range(canonical, name), name)

    def volume_support_slices(
        self,
        volume,
        label,
        *,
        axis="axial",
        affine=None,
        count: int | None = 8,
        indices: Sequence[int] | None = None,
        name: str = "volume",
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
        """Labelled 2D slices of a volume for a support set: ``(images, labels, slice indices)``.

        With an ``affine`` the volume and label are first reoriented to RAS; ``axis`` is a plane (``"sagittal"``,
        ``"coronal"``, ``"axial"``) or a voxel axis of the stored array (0, 1, 2); indices count along the
        canonical axis. The volume is normalised as a whole (as ``segment_volume`` and the dataset builders do).
        ``indices`` if given, else ``count`` slices spread evenly over those whose label has foreground
        (``count=None``: all of them), so a partly labelled volume contributes only its labelled slices.
        Pass the images and labels to ``prepare_support(..., normalize=False)``.
        """
        lab = _as_volume(label, "label")
        if lab.shape != _as_volume(volume, name).shape:
            raise ValueError(f"label shape {lab.shape} does not match volume shape {_as_volume(volume, name).shape}")
        canonical, orientation, axis, _ = self._canonical(volume, affine, axis, name)
        vol = pp.normalize_slices(
            pp.volume_slices(canonical, axis),
            percentiles=self.percentiles,
            window=self.window,
            volume_range=self._volume_range(canonical, name),
            name=name,
        )
        lab = pp.volume_slices(orientation.to_canonical(lab), axis)
        if indices is None:
            labelled = np.flatnonzero(lab.reshape(len(lab), -1).any(axis=1))
            if len(labelled) == 0:
                raise ValueError("label has no foreground in any slice: nothing to use as support")
            if count is not None:
                if not isinstance(count, (int, np.integer)) or count < 1:
                    raise ValueError(f"count must be a positive integer or None, got {count!r}")
                # Centres of `count` equal parts of the labelled range: avoids its tiny first and last slices.
                picks = ((np.arange(count) + 0.5) * len(labelled) / count).astype(int)
                labelled = labelled[np.unique(picks)]
            indices = labelled
        indices = [int(i) for i in indices]
        bad = [i for i in indices if not 0 <= i < len(vol)]
        if bad or not indices:
            raise ValueError(f"indices must be non-empty slice numbers in [0, {len(vol)}) along axis {axis}, got {bad}")
        return [vol[i] for i in indices], [lab[i] for i in indices], indices

    def prepare_support(
        self,
        images: Sequence,
        labels: Sequence,
        *,
        label_values: Sequence[int] | None = None,
        normalize: bool = True,
        names: Sequence[str] | None = None,
        geometries: Sequence | None = None,
    ) -> Support:
        """Preprocess support image/label pairs of any size once.

        ``labels``: binary masks or integer label maps matching each image's height and width; every non-zero
        value becomes a task unless ``label_values`` selects some. ``normalize=False`` takes images already in
        [0, 1] (e.g. from :meth:`volume_support_slices`). ``geometries``: ``(source name, Orientation)`` of the
        volumes the examples were cut from (see :class:`Support`). Warns about examples with no foreground and
        fails if a label has no foreground in any example.
        """
        images, labels = list(images), list(labels)
        if len(images) != len(labels):
            raise ValueError(f"got {len(images)} support images but {len(labels)} support labels; they must pair up")
        if not images:
            raise ValueError("the support set is empty: give at least one image/label pair")
        names = list(names) if names is not None else [f"support[{i}]" for i in range(len(images))]
        if len(names) != len(images):
            raise ValueError(f"names has {len(names)} entries for {len(images)} support examples")

        grays, maps = [], []
        for image, label, name in zip(images, labels, names):
            gray = pp.to_grayscale(image, name=f"{name} image")
            lab = pp.label_to_2d(label, name=f"{name} label")
            if lab.shape != gray.shape:
                raise ValueError(f"{name}: label shape {lab.shape} does not match image shape {gray.shape}")
            if normalize:
                gray = self.normalize(gray, name=name)
            elif gray.min() < 0 or gray.max() > 1:
                raise ValueError(f"{name} image must be in [0, 1] when normalize=False")
            grays.append(pp.fit_image(gray, self.size, self.resize, "area", name=name))
            maps.append(lab)

        found = find_label_values(maps, names)
        if label_values is None:
            label_values = found
        label_values = tuple(int(v) for v in label_values)
        if not label_values:
            raise ValueError("every support label is empty (no foreground): there is nothing to segment")
        masks = np.stack(
            [
                np.stack([pp.fit_label(m == v, self.size, self.resize, "area", name=n) for m, n in zip(maps, names)])
                for v in label_values
            ]
        )
        for value, per_label in zip(label_values, masks):
            if not per_label.any():
                raise ValueError(
                    f"label {value} has no foreground in any support example at {self.size[0]}x{self.size[1]} "
                    f"(labels found: {list(found)})"
                )
        empty = [n for n, m in zip(names, masks.any(axis=(0, 2, 3))) if not m]
        if empty:
            warnings.warn(f"support examples with no foreground: {', '.join(empty)}", UserWarning, stacklevel=2)
        return Support(np.stack(grays), masks, label_values, tuple(names), tuple(geometries or ()), self.resize)

    # -- queries ---------------------------------------------------------------------------------------------

    def segment(
        self,
        queries: Iterable,
        support_images: Sequence | None = None,
        support_labels: Sequence | None = None,
        *,
        support: Support | None = None,
        **options,
    ) -> list[Segmentation]:
        """Segment 2D query images of any size; the support is given as arrays or as a prepared ``support``.

        ``options``: ``ensemble``, ``support_size``, ``seed``, ``threshold`` (see :meth:`iter_segment`).
        """
        if support is None:
            if support_images is None or support_labels is None:
                raise ValueError("give support_images and support_labels, or a prepared support")
            support = self.prepare_support(support_images, support_labels)
        elif support_images is not None or support_labels is not None:
            raise ValueError("give either support_images/support_labels or support, not both")
        return list(self.iter_segment(queries, support, **options))

    def iter_segment(
        self,
        queries: Iterable,
        support: Support,
        *,
        ensemble: int = 1,
        support_size: int | None = None,
        seed: int = 0,
        threshold: float = 0.5,
    ) -> Iterator[Segmentation]:
        """Yield one :class:`Segmentation` per query, reading ``queries`` lazily in chunks of ``batch_size``.

        ``ensemble``: number of support subsets whose probabilities are averaged; ``support_size``: examples per
        subset (default: all of them, or at most the trained support size, see :meth:`members`); ``seed`` makes
        the subsets reproducible; ``threshold``: probability for the label map.
        """
        shape = np.shape(queries) if isinstance(queries, np.ndarray) else None
        if shape is not None and (len(shape) == 2 or (len(shape) == 3 and shape[-1] in (3, 4))):
            raise ValueError(f"queries must be a list of images; got one array of shape {queries.shape} (use [image])")
        plan = self._plan(support, ensemble, support_size, seed)
        threshold = _check_threshold(threshold)
        chunk: list[np.ndarray] = []
        i = -1
        for i, query in enumerate(queries):
            chunk.append(pp.to_grayscale(query, name=f"queries[{i}]"))
            if len(chunk) == self.batch_size:
                yield from self._segment_chunk(chunk, plan, support.label_values, threshold, i + 1 - len(chunk))
                chunk = []
        if chunk:
            yield from self._segment_chunk(chunk, plan, support.label_values, threshold, i + 1 - len(chunk))

    def _segment_chunk(self, grays, plan, label_values, threshold, first):
        inputs = np.stack(
            [
                pp.fit_image(
                    self.normalize(g, name=f"queries[{first + j}]"),
                    self.size,
                    self.resize,
                    "area",
                    name=f"queries[{first + j}]",
                )
                for j, g in enumerate(grays)
            ]
        )
        probs = self._predict(inputs, plan)  # (L, b, h, w)
        for j, gray in enumerate(grays):
            native = pp.unfit(probs[:, j], gray.shape, self.resize)
            yield Segmentation(native, label_map_from(native, label_values, threshold), label_values, threshold)

    def segment_volume(
        self,
        volume,
        support: Support,
        *,
        axis="axial",
        affine=None,
        name: str = "volume",
        ensemble: int = 1,
        support_size: int | None = None,
        seed: int = 0,
        threshold: float = 0.5,
        progress: bool = False,
    ) -> Segmentation:
        """Segment a 3D volume slice by slice; the result has the volume's shape and voxel order.

        ``affine`` (e.g. a NIfTI's): the volume is reoriented to RAS first and ``axis`` may name a plane
        (``"sagittal"``, ``"coronal"``, ``"axial"``) or a stored voxel axis (0, 1, 2); without one the array is taken
        as RAS-ordered. A query whose orientation or voxel spacing differs from a support volume's gets a warning
        naming both. The volume is normalised as a whole (percentiles or window over all voxels), as the dataset
        builders normalise theirs. Trailing singleton axes (NIfTI ``(X, Y, Z, 1)``) are kept in the output shape.
        """
        canonical, orientation, axis, shape = self._canonical(volume, affine, axis, name)
        if affine is not None:
            pp.warn_geometry(orientation, name, support.geometries)
        plan = self._plan(support, ensemble, support_size, seed)
        threshold = _check_threshold(threshold)
        slices, volume_range = pp.volume_slices(canonical, axis), self._volume_range(canonical, name)
        out = np.empty((len(support.label_values),) + slices.shape, np.float32)
        # Chunks of batch_size slices reuse the encoded support sets when they fit the budget; otherwise the whole
        # volume goes in one call, so that each support set is encoded once.
        step = self.batch_size if self._encoding_bytes(plan) <= self.memory_budget // 4 else len(slices)
        starts = range(0, len(slices), step)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="slices", unit="batch")
        for start in starts:
            batch = slices[start : start + step]
            probs = self._predict(self._standardize(batch, volume_range, name), plan)
            out[:, start : start + len(batch)] = pp.unfit(probs, batch.shape[1:], self.resize)
        out = np.moveaxis(out, 1, axis + 1)  # (L, X, Y, Z) in RAS order
        out = np.moveaxis(orientation.from_canonical(np.moveaxis(out, 0, -1)), -1, 0)
        out = np.ascontiguousarray(out).reshape((len(out),) + shape)
        return Segmentation(out, label_map_from(out, support.label_values, threshold), support.label_values, threshold)

    # -- support sets and the model --------------------------------------------------------------------------

    def members(self, n: int, ensemble: int = 1, support_size: int | None = None, seed: int = 0) -> list[np.ndarray]:
        """The support subsets (indices into ``n`` examples) whose predictions are averaged.

        * ``support_size`` given: ``ensemble`` subsets of that size, drawn so that every example is used once
          before any is used again (:func:`support_members`);
        * not given, at most the trained support size: one member with every example;
        * not given, more examples than the weights were trained with: with ``ensemble=1`` a seeded partition
          into the fewest members of at most that size (every example used exactly once; a message says so), with
          ``ensemble=K`` K subsets of the trained size.
        """
        if isinstance(ensemble, bool) or not isinstance(ensemble, (int, np.integer)) or ensemble < 1:
            raise ValueError(f"ensemble must be a positive integer, got {ensemble!r}")
        trained = self.trained_support_size
        if support_size is None:
            if n <= trained:
                if ensemble > 1:
                    raise ValueError(
                        f"ensemble={ensemble} needs support_size smaller than the support ({n} examples): "
                        "every subset would be the whole support and give the same prediction"
                    )
                return [np.arange(n)]
            if ensemble == 1:
                parts = math.ceil(n / trained)
                members = split_support(n, parts, seed)
                sizes = sorted({len(m) for m in members})
                warnings.warn(
                    f"the support has {n} examples, more than the {trained} the weights were trained with: it is "
                    f"split into {parts} ensemble members of {'-'.join(map(str, sizes))} examples that together use "
                    "every example once (pass support_size / --support-size to choose)",
                    UserWarning,
                    stacklevel=3,
                )
                return members
            return support_members(n, trained, ensemble, seed)
        if (
            isinstance(support_size, bool)
            or not isinstance(support_size, (int, np.integer))
            or not 1 <= support_size <= n
        ):
            raise ValueError(
                f"support_size must be an integer in [1, {n}] (the support has {n} examples), got {support_size!r}"
            )
        if ensemble > 1 and support_size == n:
            raise ValueError(
                f"ensemble={ensemble} needs support_size smaller than the support ({n} examples): "
                "every subset would be the whole support and give the same prediction"
            )
        if support_size == n:
            return [np.arange(n)]
        return support_members(n, int(support_size), ensemble, seed)

    def _plan(self, support: Support, ensemble: int, support_size: int | None, seed: int) -> dict:
        """Group every (label, member) support set by size into passes that fit the memory budget."""
        if not isinstance(support, Support):
            raise TypeError(f"support must be a Support from prepare_support, got {type(support).__name__}")
        if support.images.shape[1:] != self.size:
            raise ValueError(f"support was prepared at {support.images.shape[1:]}, this Segmenter uses {self.size}")
        if support.resize != self.resize:
            raise ValueError(
                f"support was prepared with resize={support.resize!r}, this Segmenter uses {self.resize!r}"
            )
        members = self.members(len(support), ensemble, support_size, seed)
        by_size: dict[int, list[tuple[int, int]]] = {}
        for k, member in enumerate(members):
            for label in range(len(support.label_values)):
                by_size.setdefault(len(member), []).append((label, k))
        groups = []
        for size, sets in sorted(by_size.items()):
            pairs = max(1, self.memory_budget // (size * self.pair_bytes))  # (query, set) pairs per pass
            per_pass = max(1, min(len(sets), pairs))
            per_pass = 1 << (per_pass.bit_length() - 1) if per_pass < len(sets) else per_pass  # few shapes
            queries = max(1, min(self.batch_size, pairs // per_pass))
            for start in range(0, len(sets), per_pass):
                chosen = sets[start : start + per_pass]
                padded = chosen + [chosen[-1]] * (per_pass - len(chosen)) if len(sets) > per_pass else chosen
                images = np.stack([support.images[members[k]] for _, k in padded])[..., None]
                masks = np.stack([support.masks[label][members[k]] for label, k in padded])[..., None]
                groups.append((_Group(images, masks, tuple(chosen)), queries))
        return {"groups": groups, "members": len(members), "labels": len(support.label_values), "encoded": {}}

    def _predict(self, batch: np.ndarray, plan: dict) -> np.ndarray:
        """Ensemble-averaged probabilities ``(L, b, h, w)`` for a batch ``(b, h, w)`` of preprocessed images."""
        b = len(batch)
        total = np.zeros((plan["labels"], b) + self.size, np.float32)
        cache = plan["encoded"]
        for index, (group, queries) in enumerate(plan["groups"]):
            encoded = cache.get(index)
            if encoded is None:
                encoded = self._encode(self._params, jnp.asarray(group.images), jnp.asarray(group.masks))
                if self._encoding_bytes(plan) <= self.memory_budget // 4:  # small: keep for the next chunks
                    cache[index] = encoded
            for start in range(0, b, queries):
                part = batch[start : start + queries]
                n = len(part)
                padded = min(queries, 1 << (n - 1).bit_length())  # few distinct shapes -> few compilations
                query = np.zeros((padded,) + self.size + (1,), np.float32)
                query[:n, ..., 0] = part
                probs = np.asarray(self._segment_encoded(self._params, jnp.asarray(query), encoded))
                for j, (label, _) in enumerate(group.sets):
                    total[label, start : start + n] += probs[j, :n]
        return total / plan["members"]

    def _encoding_bytes(self, plan: dict) -> int:
        """Device memory of every group's encoding (first-block support features)."""
        return sum(g.images.shape[0] * g.images.shape[1] * self._encoded_bytes for g, _ in plan["groups"])


def _check_threshold(threshold) -> float:
    if not isinstance(threshold, (int, float, np.floating)) or not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
    return float(threshold)
