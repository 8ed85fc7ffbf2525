"""Segment a researcher's own images: ``Segmenter`` wraps a UniverSeg model for arrays of any size and dtype.

    seg = Segmenter.from_weights("v1")                       # or Segmenter(model)
    support = seg.prepare_support(images, labels)            # preprocessed once, reused for every query
    results = seg.segment(queries, support=support, ensemble=4, support_size=16, seed=0)
    results[0].probabilities   # (L, H, W) float32 per-label foreground probability at the query's size
    results[0].label_map       # (H, W) label values of the support labels, 0 = background

* Preprocessing (``universeg_jax.preprocess``): grayscale, percentile (or CT window) normalisation to [0, 1],
  resize to the model size; probabilities are resized back to each query's native size.
* Labels: binary masks, or integer label maps; every non-zero value is its own one-vs-rest task.
* Ensembling: probabilities averaged over ``ensemble`` random support subsets of ``support_size`` (seeded).
* Queries are processed in chunks of at most ``batch_size`` against one shared support set (support batch 1,
  broadcast by the model); chunks are padded to a power of two, so a handful of shapes are compiled.
* Volumes: ``segment_volume`` segments slice by slice along an axis; ``volume_support_slices`` picks labelled
  slices from volumes for the support set. Volumes are normalised as a whole, not slice by slice.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from universeg_jax import preprocess as pp
from universeg_jax.model import UniverSeg

DEFAULT_WEIGHTS = Path(__file__).parent / "assets" / "default.safetensors"
MAX_LABELS = 512


# ---------------------------------------------------------------------------------------------------------------
# Weights.


def load_model(weights: str | Path | None = None) -> UniverSeg:
    """The model for ``weights`` (see :func:`resolve_weights`)."""
    return resolve_weights(weights)[0]


def resolve_weights(weights: str | Path | None = None) -> tuple[UniverSeg, tuple[int, int]]:
    """The model for ``weights`` and the image size it was trained at.

    * ``"v1"``: the official weights (downloaded once; 128x128);
    * ``*.safetensors``: written by ``universeg_jax.weights.save`` (architecture and size in the file);
    * ``*.pt`` / ``*.pth``: an official PyTorch state_dict (assumed 128x128);
    * a training workdir (``config.json`` + ``checkpoints/``): its latest checkpoint, at its ``data.size``;
    * another directory: the single ``*.safetensors`` export inside it;
    * ``None``: the model shipped at ``universeg_jax/assets/default.safetensors``.
    """
    from universeg_jax import weights as W

    if weights is None:
        if not DEFAULT_WEIGHTS.is_file():
            raise FileNotFoundError(
                "no default weights are shipped with this installation "
                f"({DEFAULT_WEIGHTS} is missing). Choose weights: --weights v1 on the command line (weights='v1' "
                "in Python) for the official UniverSeg weights (downloaded once), or the path of a .safetensors "
                "file, an official .pt file or a training run directory."
            )
        return _from_safetensors(DEFAULT_WEIGHTS)
    if str(weights) in W.PRETRAINED:
        return W.pretrained(str(weights)), pp.DEFAULT_SIZE
    path = Path(weights)
    if path.is_dir():
        if (path / "checkpoints").is_dir() and (path / "config.json").is_file():
            from universeg_jax import checkpoint  # orbax only when a training run is loaded

            size = json.loads((path / "config.json").read_text())["data"]["size"]
            return checkpoint.load_model(path), (size, size)
        return _from_safetensors(_single_export(path))
    if not path.exists():
        raise FileNotFoundError(
            f"weights {str(weights)!r} is neither a known name ({', '.join(sorted(W.PRETRAINED))}) nor an "
            "existing file or directory"
        )
    if path.suffix in (".pt", ".pth"):
        return W.load_official(path), pp.DEFAULT_SIZE
    if path.suffix == ".safetensors":
        return _from_safetensors(path)
    raise ValueError(f"weights file {path} must end in .safetensors, .pt or .pth")


def _from_safetensors(path: Path) -> tuple[UniverSeg, tuple[int, int]]:
    from universeg_jax import weights as W

    return W.load(path), W.trained_image_size(path) or pp.DEFAULT_SIZE


def _single_export(directory: Path) -> Path:
    """The one ``*.safetensors`` file in a directory (searched recursively, e.g. a training run's export)."""
    found = sorted(directory.rglob("*.safetensors"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise FileNotFoundError(
            f"weights directory {directory} contains no .safetensors export. Export the trained model with "
            "universeg_jax.weights.save(model, 'model.safetensors') and pass that file or its directory."
        )
    names = ", ".join(str(p.relative_to(directory)) for p in found)
    raise ValueError(f"weights directory {directory} contains several .safetensors files ({names}); pass one")


# ---------------------------------------------------------------------------------------------------------------
# Support sets and results.


@dataclasses.dataclass(frozen=True)
class Support:
    """A preprocessed support set at the model size; build it with ``Segmenter.prepare_support``.

    ``images``: ``(N, h, w)`` float32 in [0, 1]; ``masks``: ``(L, N, h, w)`` float32 in {0, 1}, one binary
    task per entry of ``label_values``; ``names`` identify the examples in messages.
    """

    images: np.ndarray
    masks: np.ndarray
    label_values: tuple[int, ...]
    names: tuple[str, ...]

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


def _check_axis(axis: int, ndim: int) -> int:
    if not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        raise ValueError(f"axis must be an integer in [{-ndim}, {ndim}), got {axis!r}")
    return int(axis) % ndim


# ---------------------------------------------------------------------------------------------------------------
# The segmenter.


class Segmenter:
    """Preprocess, batch, ensemble and resize around one model.

    ``size``: the model input size (v1 was trained at 128x128); ``batch_size``: the most queries in one forward
    pass (bounds memory); ``percentiles`` / ``window``: intensity normalisation (``window`` for CT, in HU).
    """

    def __init__(
        self,
        model: UniverSeg,
        *,
        size: Sequence[int] = pp.DEFAULT_SIZE,
        batch_size: int = 4,
        percentiles: Sequence[float] = pp.DEFAULT_PERCENTILES,
        window: Sequence[float] | None = None,
    ):
        if not isinstance(model, UniverSeg):
            raise TypeError(f"model must be a UniverSeg, got {type(model).__name__}")
        self.size = pp.check_size(size)
        factor = 2 ** (model.levels - 1)
        if self.size[0] % factor or self.size[1] % factor:
            raise ValueError(f"size {self.size} must be a multiple of {factor} for this model")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = int(batch_size)
        # Validate the normalisation options now rather than at the first query.
        pp.normalize_intensity(np.zeros((1, 1)), percentiles=percentiles, window=window)
        self.percentiles, self.window = tuple(percentiles), window
        graphdef, self._params = nnx.split(model)

        def probabilities(params, query, support_images, support_labels):
            logits = nnx.merge(graphdef, params)(query, support_images, support_labels)
            return jax.nn.sigmoid(logits[..., 0])

        self._forward = jax.jit(probabilities)

    @classmethod
    def from_weights(cls, weights: str | Path | None = None, *, size: Sequence[int] | None = None, **kwargs):
        """A Segmenter for ``weights`` (see :func:`resolve_weights`), at the size they were trained at unless
        ``size`` is given."""
        model, trained_size = resolve_weights(weights)
        return cls(model, size=size or trained_size, **kwargs)

    # -- support ---------------------------------------------------------------------------------------------

    def normalize(self, image, *, name: str = "image") -> np.ndarray:
        """Intensities of an image or volume mapped to [0, 1] with this Segmenter's percentiles or window."""
        return pp.normalize_intensity(image, percentiles=self.percentiles, window=self.window, name=name)

    def volume_support_slices(
        self, volume, label, *, axis: int = -1, count: int | None = 8, indices: Sequence[int] | None = None
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
        """Labelled 2D slices of a volume for a support set: ``(images, labels, slice indices)``.

        The volume is normalised as a whole (as ``segment_volume`` does). Slices are taken along ``axis``:
        ``indices`` if given, else ``count`` slices spread evenly over those whose label has foreground
        (``count=None``: all of them), so a partly labelled volume contributes only its labelled slices.
        Pass the images and labels to ``prepare_support(..., normalize=False)``.
        """
        vol = _as_volume(volume, "volume")
        lab = _as_volume(label, "label")
        if lab.shape != vol.shape:
            raise ValueError(f"label shape {lab.shape} does not match volume shape {vol.shape}")
        axis = _check_axis(axis, vol.ndim)
        vol = np.moveaxis(self.normalize(vol, name="volume"), axis, 0)
        lab = np.moveaxis(lab, axis, 0)
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
    ) -> Support:
        """Preprocess support image/label pairs of any size once.

        ``labels``: binary masks or integer label maps matching each image's height and width; every non-zero
        value becomes a task unless ``label_values`` selects some. ``normalize=False`` takes images already in
        [0, 1] (e.g. from :meth:`volume_support_slices`). Warns about examples with no foreground and fails if
        a label has no foreground in any example.
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
            grays.append(pp.resize_image(gray, self.size, "area", name=name))
            maps.append(lab)

        found = find_label_values(maps, names)
        if label_values is None:
            label_values = found
        label_values = tuple(int(v) for v in label_values)
        if not label_values:
            raise ValueError("every support label is empty (no foreground): there is nothing to segment")
        masks = np.stack(
            [np.stack([pp.resize_label(m == v, self.size, "area", name=n) for m, n in zip(maps, names)])
             for v in label_values]
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
        return Support(np.stack(grays), masks, label_values, tuple(names))

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

        ``ensemble``: number of random support subsets whose probabilities are averaged; ``support_size``:
        examples per subset (default all; must be smaller than the support when ``ensemble > 1``); ``seed``
        makes the subsets reproducible; ``threshold``: probability for the label map.
        """
        shape = np.shape(queries) if isinstance(queries, np.ndarray) else None
        if shape is not None and (len(shape) == 2 or (len(shape) == 3 and shape[-1] in (3, 4))):
            raise ValueError(f"queries must be a list of images; got one array of shape {queries.shape} (use [image])")
        sets = self._support_sets(support, ensemble, support_size, seed)
        threshold = _check_threshold(threshold)
        chunk: list[np.ndarray] = []
        for i, query in enumerate(queries):
            chunk.append(pp.to_grayscale(query, name=f"queries[{i}]"))
            if len(chunk) == self.batch_size:
                yield from self._segment_chunk(chunk, sets, support.label_values, threshold, i + 1 - len(chunk))
                chunk = []
        if chunk:
            yield from self._segment_chunk(chunk, sets, support.label_values, threshold, i + 1 - len(chunk))

    def _segment_chunk(self, grays, sets, label_values, threshold, first):
        inputs = np.stack([
            pp.standardize_image(g, self.size, percentiles=self.percentiles, window=self.window,
                                 name=f"queries[{first + j}]")
            for j, g in enumerate(grays)
        ])
        probs = self._predict(inputs, sets)  # (L, b, h, w)
        for j, gray in enumerate(grays):
            native = pp.resize_image(probs[:, j], gray.shape, "bilinear")
            yield Segmentation(native, label_map_from(native, label_values, threshold), label_values, threshold)

    def segment_volume(
        self,
        volume,
        support: Support,
        *,
        axis: int = -1,
        ensemble: int = 1,
        support_size: int | None = None,
        seed: int = 0,
        threshold: float = 0.5,
        progress: bool = False,
    ) -> Segmentation:
        """Segment a 3D volume slice by slice along ``axis``; the result has the volume's shape.

        The volume is normalised as a whole (percentiles or window over all voxels), so slices keep their
        relative intensities; build the support with :meth:`volume_support_slices` for the same convention.
        Trailing singleton axes (NIfTI ``(X, Y, Z, 1)``) are accepted and kept in the output shape.
        """
        shape = np.shape(volume)
        vol = _as_volume(volume, "volume")
        axis = _check_axis(axis, vol.ndim)
        sets = self._support_sets(support, ensemble, support_size, seed)
        threshold = _check_threshold(threshold)
        slices = np.moveaxis(self.normalize(vol, name="volume"), axis, 0)
        out = np.empty((len(support.label_values),) + slices.shape, np.float32)
        starts = range(0, len(slices), self.batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="slices", unit="batch")
        for start in starts:
            batch = slices[start : start + self.batch_size]
            probs = self._predict(pp.resize_image(batch, self.size, "area"), sets)
            out[:, start : start + len(batch)] = pp.resize_image(probs, batch.shape[1:], "bilinear")
        out = np.moveaxis(out, 1, axis + 1).reshape((len(out),) + shape)
        return Segmentation(out, label_map_from(out, support.label_values, threshold), support.label_values, threshold)

    # -- the model -------------------------------------------------------------------------------------------

    def _support_sets(self, support: Support, ensemble: int, support_size: int | None, seed: int):
        """Per label, the ensemble's support subsets as device arrays ``(1, S, h, w, 1)``, built once per call."""
        if not isinstance(support, Support):
            raise TypeError(f"support must be a Support from prepare_support, got {type(support).__name__}")
        if support.images.shape[1:] != self.size:
            raise ValueError(f"support was prepared at {support.images.shape[1:]}, this Segmenter uses {self.size}")
        n = len(support)
        if not isinstance(ensemble, (int, np.integer)) or ensemble < 1:
            raise ValueError(f"ensemble must be a positive integer, got {ensemble!r}")
        size = n if support_size is None else support_size
        if not isinstance(size, (int, np.integer)) or not 1 <= size <= n:
            raise ValueError(f"support_size must be an integer in [1, {n}] (the support has {n} examples), "
                             f"got {size!r}")
        if ensemble > 1 and size == n:
            raise ValueError(
                f"ensemble={ensemble} needs support_size smaller than the support ({n} examples): "
                "every subset would be the whole support and give the same prediction"
            )
        rng = np.random.default_rng(seed)
        if size == n:
            subsets = [np.arange(n)]
        else:
            subsets = [np.sort(rng.choice(n, size, replace=False)) for _ in range(ensemble)]
        images = [jnp.asarray(support.images[idx][None, ..., None]) for idx in subsets]
        return [[(img, jnp.asarray(masks[idx][None, ..., None])) for img, idx in zip(images, subsets)]
                for masks in support.masks]

    def _predict(self, batch: np.ndarray, sets) -> np.ndarray:
        """Ensemble-averaged probabilities ``(L, b, h, w)`` for a batch ``(b, h, w)`` of preprocessed images."""
        b = len(batch)
        padded = min(self.batch_size, 1 << (b - 1).bit_length())  # few distinct shapes -> few compilations
        query = np.zeros((padded,) + self.size + (1,), np.float32)
        query[:b, ..., 0] = batch
        query = jnp.asarray(query)
        out = []
        for members in sets:
            total = sum(self._forward(self._params, query, img, lab) for img, lab in members)
            out.append(np.asarray(total / len(members))[:b])
        return np.stack(out)


def _check_threshold(threshold) -> float:
    if not isinstance(threshold, (int, float, np.floating)) or not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
    return float(threshold)
