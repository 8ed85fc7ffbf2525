"""Data-driven raw builders: a dataset is a table entry saying where its images and labels are.

A ``Layout`` names files with templates relative to the dataset's folder in the manual dir, e.g.
``"RawData/Training/img/img{case}.nii.gz"``: ``{case}`` is a field (by default any text without ``/``;
``fields`` gives another regular expression), ``*`` a wildcard. Every file matching the image template is one
image; its label templates are filled with the same fields. A label template with ``*`` names all the files
it matches (merged, e.g. one mask per nucleus). A template ending in ``/`` names a folder (a DICOM series,
a folder of label slices), read through the layout's ``reader``/``label_reader``. ``define`` turns a table entry
into a registered TFDS builder whose ``MANUAL_DOWNLOAD_INSTRUCTIONS`` list the same templates; every raw builder is
made by it (a release templates cannot describe gives a function listing its pairs instead).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds

from universeg_datasets import standardize
from universeg_datasets.raw import formats
from universeg_datasets.raw.common import Pair, RawTaskBuilder, manual_instructions

_FIELD = re.compile(r"\{(\w+)\}")
DEFAULT_FIELD = r"[^/]+?"


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where one group of a dataset's images and labels are, and what the labels mean.

    ``image``: a template, or ``{modality: template}`` for one file per modality (stacked as channels; the
    first template finds the images). ``labels``: templates merged into one label map with ``label_values``.
    ``layers``: ``{label name: template}`` of one binary mask per label; a missing layer file means that label
    is absent. ``modality``: a template (e.g. ``"echo_{view}"``) or a function of the fields. ``subject``: a
    template (default: the first field). ``stack``: a field numbering 2D slices stacked into one volume.
    ``unlabelled="skip"`` leaves out images without label files (test sets, healthy images); by default a
    missing label is an error naming it. ``threshold``: labels at or above it are foreground (JPEG masks).
    ``frames``: the last axis is time, labelled frames become views. ``channels``: modality names of the
    channels of one image file (LGG's RGB slices: pre-contrast, FLAIR, post-contrast). ``reader`` / ``label_reader``: wrap each
    image / label path in a ``formats`` source (a DICOM slice order, a MATLAB variable, a contour file).
    """

    image: str | Mapping[str, str]
    labels: tuple[str, ...] = ()
    label_values: Mapping[str, int | None] = dataclasses.field(default_factory=dict)
    layers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    modality: str | Callable[[dict], str] = "image"
    subject: str = ""
    fields: Mapping[str, str] = dataclasses.field(default_factory=dict)
    stack: str = ""
    unlabelled: str = "error"
    threshold: float | None = None
    frames: bool = False
    channels: tuple[str, ...] = ()
    reader: Callable[[Any], Any] | None = None
    label_reader: Callable[[Any], Any] | None = None

    @property
    def templates(self) -> dict[str, str]:
        return dict(self.image) if isinstance(self.image, Mapping) else {"": self.image}

    def pairs(self, root: Path, listing: list[str]) -> list[Pair]:
        """The image/label pairs of this layout among ``listing`` (relative paths of the files under ``root``)."""
        first = next(iter(self.templates.values()))
        pattern = compile_template(first, self.fields)
        matches = [(m.groupdict(), path) for path in listing if (m := pattern.fullmatch(path))]
        if self.stack:
            groups: dict[tuple, list[dict]] = {}
            for fields, _ in matches:
                key = tuple(sorted((k, v) for k, v in fields.items() if k != self.stack))
                groups.setdefault(key, []).append(fields)
            items = [sorted(group, key=lambda f: _number(f[self.stack], root / first)) for group in groups.values()]
        else:
            items = [[fields] for fields, _ in matches]
        pairs = []
        for slices in items:
            pair = self._pair(root, first, slices)
            if pair is not None:
                pairs.append(pair)
        return pairs

    def _pair(self, root: Path, first: str, slices: list[dict]) -> Pair | None:
        fields = slices[0]
        images = {m: [_one(root, fill(t, f), "image") for f in slices] for m, t in self.templates.items()}
        labels = []
        for template in self.labels:
            found = [_expand(root, fill(template, f)) for f in slices]
            if not all(found):
                if self.unlabelled == "skip":
                    return None
                missing = root / fill(template, slices[[bool(p) for p in found].index(False)])
                raise FileNotFoundError(
                    f"label for image {images[next(iter(images))][0]} not found: expected {missing}"
                )
            if self.stack:
                labels.append(formats.Slices(tuple(paths[0] for paths in found)))
            else:
                labels.extend(self._wrap(path, label=True) for path in found[0])
        layers = []
        for name, template in self.layers.items():
            found = _expand(root, fill(template, fields))
            layers.append((name, self._wrap(found[0], label=True) if found else None))
        if not labels and not any(source for _, source in layers):
            if self.unlabelled == "skip" or not (self.labels or self.layers):
                return None
            raise FileNotFoundError(f"no label file for image {images[next(iter(images))][0]}")
        sources = [formats.Slices(tuple(paths)) if self.stack else self._wrap(paths[0]) for paths in images.values()]
        image = sources[0] if len(sources) == 1 else formats.Channels(tuple(sources))
        modalities = self.channels or (tuple(images) if len(images) > 1 else (self._modality(fields),))
        subject = fill(self.subject, fields) if self.subject else next(iter(fields.values()), "image")
        source = str(images[next(iter(images))][0].relative_to(root))
        return Pair(
            subject,
            image,
            tuple(labels),
            modalities,
            self.label_values,
            source=source,
            layers=tuple(layers),
            frames=self.frames,
            threshold=self.threshold,
        )

    def _wrap(self, path: Path, label: bool = False):
        wrap = self.label_reader if label else self.reader
        return wrap(path) if wrap else path

    def _modality(self, fields: dict) -> str:
        name = self.modality(fields) if callable(self.modality) else fill(self.modality, fields)
        return standardize.clean_name(name)  # a task-id component: OCT(FULL) -> OCT_FULL

    def describe(self, folder: str) -> str:
        """One line per file kind, for the download instructions and the docs."""
        lines = [f"  {folder}/{t}" + (f"   ({m})" if m else "") for m, t in self.templates.items()]
        lines += [f"  {folder}/{t}   (label)" for t in self.labels]
        lines += [f"  {folder}/{t}   ({name}, if present)" for name, t in self.layers.items()]
        if self.fields:
            lines.append("  where " + "; ".join(f"{{{k}}} is {v}" for k, v in self.fields.items()))
        return "\n".join(lines)


def compile_template(template: str, fields: Mapping[str, str] = {}) -> re.Pattern:
    """Regular expression of a template: ``{name}`` a named field (repeats must match the same text)."""
    parts, seen, position = [], set(), 0
    for match in _FIELD.finditer(template):
        parts.append(_literal(template[position : match.start()]))
        name = match.group(1)
        parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>{fields.get(name, DEFAULT_FIELD)})")
        seen.add(name)
        position = match.end()
    parts.append(_literal(template[position:]))
    return re.compile("".join(parts))


def _literal(text: str) -> str:
    return re.escape(text).replace(r"\*", "[^/]*")


def fill(template: str, fields: Mapping[str, str]) -> str:
    return _FIELD.sub(lambda m: fields[m.group(1)], template)


def _expand(root: Path, relative: str) -> list[Path]:
    """The files a filled template names: itself if it exists, or every match of its wildcards."""
    folder = relative.endswith("/")  # a template ending in '/' names a folder (a DICOM series, slice files)
    exists = Path.is_dir if folder else Path.is_file
    if "*" not in relative:
        path = root / relative
        return [path] if exists(path) else []
    return sorted(p for p in root.glob(relative.rstrip("/")) if exists(p) and not p.name.startswith("._"))


def _one(root: Path, relative: str, what: str) -> Path:
    """The one file a filled template names (wildcards must match exactly one)."""
    found = _expand(root, relative)
    if len(found) != 1:
        raise FileNotFoundError(
            f"{what} {root / relative} not found"
            if not found
            else f"{what} {root / relative} matches {len(found)} files: {[str(p) for p in found[:4]]}"
        )
    return found[0]


def _number(text: str, where: Path) -> int:
    try:
        return int(text)
    except ValueError as err:
        raise ValueError(f"slice number {text!r} in {where} is not an integer") from err


def list_files(root: Path) -> list[str]:
    """Every file under ``root`` as a relative POSIX path, and every folder with a trailing '/', sorted,
    without hidden or macOS '._' files."""
    files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]
    folders = {parent.as_posix() + "/" for f in files for parent in Path(f).parents if parent != Path(".")}
    return sorted(files + list(folders))


class LayoutBuilder(RawTaskBuilder, skip_registration=True):
    """The class ``define`` makes: its files are found by ``LAYOUTS``, unless ``define`` was given ``pairs``."""

    LAYOUTS: tuple[Layout, ...] = ()

    @classmethod
    def _pairs(cls, root: Path) -> list[Pair]:
        listing = list_files(root)
        return [pair for layout in cls.LAYOUTS for pair in layout.pairs(root, listing)]


def define(
    namespace: dict,
    name: str,
    *,
    folder: str,
    url: str,
    layouts=(),
    pairs: Callable[[Path], list[Pair]] | None = None,
    source_metadata: Callable[[Path], dict] | None = None,
    volumetric: bool = False,
    note: str = "",
    doc: str = "",
    layout_text: str = "",
    release_notes: dict[str, str] | None = None,
) -> type:
    """Create and register the builder ``name`` in module ``namespace`` (its ``globals()``): every raw builder is
    one call of this, a row of its module's table.

    The builder finds its files through ``layouts``; a release that templates cannot describe (files holding many
    examples, labels that are not files, a choice of annotators) gives instead ``pairs(root) -> [Pair]``, which only
    lists files (``build raw --list`` calls it). ``layout_text`` replaces the template lines of the download
    instructions (example file names; a builder with ``pairs`` needs it). ``source_metadata(root)``: what the build
    records about the files it found, in metadata.json. A dataset released as stacks of 2D slices (a layout with
    ``stack``) is cut along the stacking axis only: its other axes are not images of the release (LGG's 20-odd
    slices would give 256x20 views). ``release_notes``: ``{version: note}``, the last one the builder's version
    (default 1.0.0).
    """
    text = layout_text or "\n".join(layout.describe(folder) for layout in layouts)
    attributes = {
        "name": name,
        "__module__": namespace["__name__"],
        "__doc__": doc,
        "RAW_FOLDER": folder,
        "VOLUMETRIC": volumetric,
        "HOMEPAGE": url,
        "LAYOUTS": tuple(layouts),
        "MANUAL_DOWNLOAD_INSTRUCTIONS": manual_instructions(url, text, note),
    }
    if pairs is not None:
        attributes["_pairs"] = staticmethod(pairs)
    if source_metadata is not None:
        attributes["_source_metadata"] = staticmethod(source_metadata)
    if any(layout.stack for layout in layouts):
        attributes["AXES"] = (formats.STACK_AXIS,)
    if release_notes:
        attributes["RELEASE_NOTES"] = release_notes
        attributes["VERSION"] = tfds.core.Version(list(release_notes)[-1])
    cls = type("".join(part.capitalize() for part in name.split("_")), (LayoutBuilder,), attributes)
    namespace[cls.__name__] = cls
    return cls
