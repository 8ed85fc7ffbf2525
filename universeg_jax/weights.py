"""Weights: official PyTorch state_dicts in, the project's own safetensors format in and out, a v1 download cache.

* ``load_official(path)`` reads an official ``.pt`` state_dict (e.g. ``universeg_v1_nf64_ss64_STA.pt``) without
  torch and without executing pickled code: the unpickler only knows the handful of names a plain state_dict uses.
* ``save(model, path)`` / ``load(path)`` use safetensors: raw float32 tensors keyed by the NNX parameter path, the
  architecture stored in the file's metadata, so a file alone rebuilds its model.
* ``pretrained("v1")`` downloads the official release file once into a cache, checks and converts it, and works
  offline afterwards.
"""

from __future__ import annotations

import json
import os
import pickle
import urllib.error
import urllib.request
import zipfile
from collections import OrderedDict
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from universeg_jax.files import atomic_path, cache_dir, sha256
from universeg_jax.model import V1_ENCODER_BLOCKS, UniverSeg

FORMAT_NAME = "universeg-jax"
FORMAT_VERSION = "1"

# ---------------------------------------------------------------------------------------------------------------
# Reading a PyTorch state_dict without torch.

_TORCH_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": None,  # handled below: numpy has no bfloat16 of its own
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str):
        self.name = name


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: a strided view of the storage, copied out."""
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    )
    return np.array(view)


def _rebuild_parameter(data, *_ignored):
    return data


class _StateDictUnpickler(pickle.Unpickler):
    """Accepts only what a plain ``torch.save(model.state_dict())`` contains; anything else is refused."""

    _ALLOWED = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self._archive, self._prefix = archive, prefix

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name in _TORCH_STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}; only plain tensor state_dicts are accepted")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        storage_type, key = pid[1], pid[2]
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unexpected storage type {storage_type!r}")
        raw = self._archive.read(f"{self._prefix}data/{key}")
        if storage_type.name == "BFloat16Storage":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            return bits.view(np.float32)
        return np.frombuffer(raw, dtype=np.dtype(_TORCH_STORAGE_DTYPES[storage_type.name]).newbyteorder("<"))


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``torch.save`` zip archive of a state_dict into numpy arrays, executing no pickled code."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise ValueError(f"{path} is not a PyTorch state_dict archive (torch.save zip format): {err}") from None
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise ValueError(f"{path} is not a PyTorch state_dict archive: expected one data.pkl, found {pickles}")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = f"{prefix}byteorder"
        if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
            raise ValueError(f"{path}: big-endian archives are not supported")
        with archive.open(pickles[0]) as f:
            try:
                state = _StateDictUnpickler(f, archive, prefix).load()
            except (pickle.UnpicklingError, KeyError, EOFError, TypeError, ValueError) as err:
                raise ValueError(f"{path} is not a readable state_dict: {err}") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items()
    ):
        raise ValueError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return dict(state)


# ---------------------------------------------------------------------------------------------------------------
# Official keys <-> NNX parameter paths.


def _official_key(path: tuple) -> str:
    """``('enc_blocks', 0, 'cross', 'conv', 'kernel')`` -> ``'enc_blocks.0.cross.cross_conv.weight'``."""
    *module, leaf = (str(p) for p in path)
    leaf = {"kernel": "weight", "bias": "bias"}[leaf]
    if module[-2:] == ["cross", "conv"]:
        module = module[:-1] + ["cross_conv"]
    elif module[-1] in ("target", "support"):
        module = module + ["vmapped", "conv"]
    elif module == ["out_conv"]:
        module = module + ["conv"]
    return ".".join(module + [leaf])


def _to_hwio(array: np.ndarray) -> np.ndarray:
    """torch conv weights are (out, in, kh, kw); ours are HWIO. Biases pass through."""
    return array.transpose(2, 3, 1, 0) if array.ndim == 4 else array


def _to_oihw(array: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_to_hwio`."""
    return array.transpose(3, 2, 0, 1) if array.ndim == 4 else array


def _flat_params(model: UniverSeg) -> dict[tuple, nnx.Param]:
    return {tuple(path): var for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def _infer_blocks(state: dict[str, np.ndarray], prefix: str) -> list[tuple[int, int]]:
    blocks, i = [], 0
    while f"{prefix}.{i}.cross.cross_conv.weight" in state and f"{prefix}.{i}.target.vmapped.conv.weight" in state:
        cross = state[f"{prefix}.{i}.cross.cross_conv.weight"].shape[0]
        conv = state[f"{prefix}.{i}.target.vmapped.conv.weight"].shape[0]
        blocks.append((int(cross), int(conv)))
        i += 1
    return blocks


def _spec(blocks):
    """Pairs with equal halves collapse to ints, as the official constructor writes them."""
    return [c if c == v else [c, v] for c, v in blocks]


def load_official(path, encoder_blocks=None, decoder_blocks=None) -> UniverSeg:
    """Build a UniverSeg from an official PyTorch state_dict file (architecture read off its shapes unless given)."""
    return from_official_state_dict(read_torch_state_dict(path), encoder_blocks, decoder_blocks, source=str(path))


def from_official_state_dict(state, encoder_blocks=None, decoder_blocks=None, *, source="state_dict") -> UniverSeg:
    """Build a UniverSeg from official-layout arrays; missing, unexpected or mis-shaped keys are listed in one error."""
    if encoder_blocks is None:
        encoder_blocks = _spec(_infer_blocks(state, "enc_blocks"))
        if not encoder_blocks:
            raise ValueError(f"{source}: no 'enc_blocks.0.cross.cross_conv.weight' key; not a UniverSeg state_dict")
        decoder_blocks = _spec(_infer_blocks(state, "dec_blocks")) or None
    model = UniverSeg(encoder_blocks, decoder_blocks, rngs=nnx.Rngs(0))
    params = _flat_params(model)
    expected = {_official_key(p): p for p in params}

    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{k}: file {tuple(state[k].shape)}, expected {_torch_shape(params[p])}"
        for k, p in expected.items()
        if k in state and tuple(state[k].shape) != _torch_shape(params[p])
    ]
    problems = []
    if missing:
        problems.append("missing keys: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected keys: " + ", ".join(unexpected))
    if wrong_shape:
        problems.append("wrongly shaped keys: " + "; ".join(wrong_shape))
    if problems:
        raise ValueError(
            f"{source} does not match UniverSeg(encoder_blocks={encoder_blocks}, "
            f"decoder_blocks={decoder_blocks}): " + " | ".join(problems)
        )
    for key, p in expected.items():
        value = _to_hwio(np.asarray(state[key])).astype(np.float32)
        if not np.isfinite(value).all():
            raise ValueError(f"{source}: {key} contains NaN or inf")
        params[p][...] = jnp.asarray(value)
    return model


def official_state_dict(model: UniverSeg) -> dict[str, np.ndarray]:
    """The model's parameters under the official PyTorch keys and layouts (e.g. to load into the official code)."""
    return {
        _official_key(p): np.ascontiguousarray(_to_oihw(np.asarray(v[...]))) for p, v in _flat_params(model).items()
    }


def _torch_shape(param: nnx.Param) -> tuple:
    """The torch shape of one of our parameters (for error messages)."""
    shape = param.shape
    return (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else tuple(shape)


# ---------------------------------------------------------------------------------------------------------------
# The project's own format.


def save(
    model: UniverSeg,
    path,
    *,
    image_size: tuple[int, int] | None = None,
    support_size: int | None = None,
    resize: str | None = None,
) -> Path:
    """Save parameters and architecture to one safetensors file, atomically (temporary file, then rename).

    How the model was trained, recorded so that inference follows it: ``image_size`` (H, W) it resizes to,
    ``support_size`` (the default support size, larger supports become ensemble members) and ``resize``
    (``stretch`` or ``pad``).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"path {path} is a directory; give a file name such as model.safetensors")
    tensors = {".".join(map(str, p)): np.asarray(v[...], np.float32) for p, v in _flat_params(model).items()}
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "encoder_blocks": json.dumps(_spec(model.encoder_blocks)),
        "decoder_blocks": json.dumps(_spec(model.decoder_blocks)),
    }
    if image_size is not None:
        metadata["image_size"] = json.dumps([int(n) for n in image_size])
    if support_size is not None:
        if int(support_size) < 1:
            raise ValueError(f"support_size must be >= 1, got {support_size}")
        metadata["support_size"] = json.dumps(int(support_size))
    if resize is not None:
        metadata["resize"] = str(resize)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def read_metadata(path) -> dict[str, str]:
    """The metadata header of a safetensors file (architecture and format)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n <= 0 or n > 100_000_000:
                raise ValueError("bad header length")
            header = json.loads(f.read(n))
    except FileNotFoundError:
        raise FileNotFoundError(f"weights file not found: {path}") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a universeg-jax safetensors file: {err}") from None
    return header.get("__metadata__", {}) or {}


def trained_image_size(path) -> tuple[int, int] | None:
    """The (H, W) recorded by :func:`save`, or None when the file does not say."""
    size = read_metadata(path).get("image_size")
    return tuple(json.loads(size)) if size else None


def load(path, dtype=jnp.float32) -> UniverSeg:
    """Load a model written by :func:`save`."""
    path = Path(path)
    metadata = read_metadata(path)
    if metadata.get("format") != FORMAT_NAME:
        raise ValueError(f"{path} is not a universeg-jax weights file (metadata format={metadata.get('format')!r})")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported format version {metadata.get('format_version')!r}")
    model = UniverSeg(
        json.loads(metadata["encoder_blocks"]),
        json.loads(metadata["decoder_blocks"]) or None,
        dtype=dtype,
        rngs=nnx.Rngs(0),
    )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is corrupt: {err}") from None
    params = _flat_params(model)
    expected = {".".join(map(str, p)): p for p in params}
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    wrong = [k for k in set(expected) & set(tensors) if tensors[k].shape != params[expected[k]].shape]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{path} does not match its architecture: missing {missing}, unexpected {unexpected}, "
            f"wrongly shaped {sorted(wrong)}"
        )
    for key, p in expected.items():
        params[p][...] = jnp.asarray(tensors[key])
    return model


# ---------------------------------------------------------------------------------------------------------------
# Official release weights, downloaded once.

PRETRAINED = {
    "v1": {
        "url": "https://github.com/JJGO/UniverSeg/releases/download/weights/universeg_v1_nf64_ss64_STA.pt",
        "filename": "universeg_v1_nf64_ss64_STA.pt",
        "encoder_blocks": list(V1_ENCODER_BLOCKS),
        "parameters": 1_182_785,
        "license": "OpenRAIL++-M (research use); see the official UniverSeg repository",
    },
}


def _download(url: str, target: Path, timeout: float) -> None:
    """Stream ``url`` to ``target`` through a temporary file so a broken transfer leaves nothing behind."""
    from tqdm.auto import tqdm

    with atomic_path(target) as tmp:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, disable=None) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        if total is not None and tmp.stat().st_size != total:
            raise OSError(f"incomplete download: {tmp.stat().st_size} of {total} bytes")


class DownloadError(ConnectionError, RuntimeError):
    """Weights that could not be downloaded: a connection problem (an OSError, which the commands report in one
    line), and a RuntimeError as before."""


def pretrained(name: str = "v1", *, url: str | None = None, timeout: float = 60.0, dtype=jnp.float32) -> UniverSeg:
    """The official weights ``name``, converted; downloads the release file into :func:`cache_dir` on first use.

    ``url`` (or ``$UNIVERSEG_JAX_V1_URL`` for v1) overrides the release address, e.g. for a mirror.
    """
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained weights {name!r}; available: {sorted(PRETRAINED)}")
    entry = PRETRAINED[name]
    cache = cache_dir()
    converted = cache / f"{name}.safetensors"
    if converted.is_file():
        return load(converted, dtype=dtype)
    raw = cache / entry["filename"]
    url = url or os.environ.get(f"UNIVERSEG_JAX_{name.upper()}_URL") or entry["url"]
    if not raw.is_file():
        try:
            _download(url, raw, timeout)
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            raise DownloadError(
                f"could not download the {name} weights from {url} ({err}). Download "
                f"{entry['filename']} by hand and put it at {raw} (or set UNIVERSEG_JAX_CACHE), then call again."
            ) from None
    try:
        model = load_official(raw, encoder_blocks=entry["encoder_blocks"])
    except ValueError as err:
        raise ValueError(f"{raw} is not the official {name} weights file ({err}); delete it and try again") from None
    save(model, converted)
    (cache / f"{name}.sha256").write_text(f"{sha256(raw)}  {entry['filename']}\n")
    return load(converted, dtype=dtype)
