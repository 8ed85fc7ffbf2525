"""Files: listing, pairing by name, reading with clear errors, atomic writes, NIfTI affine/header, overlays."""

import gzip
import os

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from universeg_jax import io, overlay


def test_suffix_and_stem():
    assert io.suffix("a/b/Scan.NII.GZ") == ".nii.gz" and io.stem("a/b/Scan.NII.GZ") == "Scan"
    assert io.suffix("x.tiff") == ".tiff" and io.stem("x.y.png") == "x.y"
    assert io.mask_suffix("photo.jpg") == ".png" and io.mask_suffix("s.nii") == ".nii"


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_list_images_files_and_folders(tmp_path):
    for name in ("b.png", "a.nii.gz", "notes.txt", "c.TIF"):
        touch(tmp_path / "d" / name)
    found = io.list_images([tmp_path / "d"], "--query")
    assert [p.name for p in found] == ["a.nii.gz", "b.png", "c.TIF"]
    with pytest.raises(FileNotFoundError, match="--query: .*nope does not exist"):
        io.list_images([tmp_path / "nope"], "--query")
    with pytest.raises(ValueError, match="not a supported image"):
        io.list_images([tmp_path / "d" / "notes.txt"], "--query")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        io.list_images(tmp_path / "empty", "--support-images")


def test_pairing_by_name(tmp_path):
    images = [touch(tmp_path / "i" / n) for n in ("c1.tif", "c2.png", "c3.nii.gz")]
    labels = [touch(tmp_path / "l" / n) for n in ("c1.png", "c2_mask.png", "c3_seg.nii.gz")]
    pairs = io.pair_images_labels(images, labels[::-1])
    assert [(i.name, l.name) for i, l in pairs] == [
        ("c1.tif", "c1.png"),
        ("c2.png", "c2_mask.png"),
        ("c3.nii.gz", "c3_seg.nii.gz"),
    ]
    with pytest.raises(ValueError, match=r"support images without a label: \[.*c3.nii.gz"):
        io.pair_images_labels(images, labels[:2])
    with pytest.raises(ValueError, match=r"support labels without an image: \[.*c3_seg.nii.gz"):
        io.pair_images_labels(images[:2], labels)
    with pytest.raises(ValueError, match="matches several files"):
        io.pair_images_labels(images[:1], [labels[0], touch(tmp_path / "l" / "c1_label.png")])


@pytest.mark.parametrize(
    "name, array",
    [
        ("u8.png", np.arange(12, dtype=np.uint8).reshape(3, 4)),
        ("u16.png", (np.arange(12, dtype=np.uint16) * 5000).reshape(3, 4)),
        ("rgb.png", np.arange(36, dtype=np.uint8).reshape(3, 4, 3)),
        ("u8.bmp", np.arange(12, dtype=np.uint8).reshape(3, 4)),
        ("f32.tif", np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)),
        ("pages.tiff", np.linspace(0, 1, 24, dtype=np.float32).reshape(2, 3, 4)),
    ],
)
def test_write_read_round_trip(tmp_path, name, array):
    path = io.write_array(tmp_path / name, array)
    back = io.read_image(path) if name != "pages.tiff" else tifffile.imread(path)
    np.testing.assert_array_equal(back, array)
    assert back.dtype == array.dtype
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not the private mode of temporary files


def test_nifti_round_trip_keeps_affine_and_header(tmp_path):
    affine = np.array([[-1.5, 0, 0, 84], [0, 1.5, 0, -102.5], [0, 0, 2.0, -138], [0, 0, 0, 1]])
    volume = np.random.default_rng(0).random((5, 6, 7, 1)).astype(np.float32)
    source = nib.Nifti1Image(volume, affine)
    source.header.set_xyzt_units("mm", "sec")
    nib.save(source, tmp_path / "in.nii.gz")
    reference = io.load_nifti(tmp_path / "in.nii.gz")
    mask = (io.read_image(tmp_path / "in.nii.gz") > 0.5).astype(np.uint8)
    io.write_array(tmp_path / "out.nii.gz", mask, reference=reference)
    out = nib.load(tmp_path / "out.nii.gz")
    assert out.shape == volume.shape and out.get_data_dtype() == np.uint8
    np.testing.assert_allclose(out.affine, affine)
    assert out.header.get_xyzt_units() == ("mm", "sec")
    np.testing.assert_array_equal(np.asanyarray(out.dataobj), mask)
    with pytest.raises(ValueError, match="needs the reference"):
        io.write_array(tmp_path / "x.nii", mask)


def test_is_volume(tmp_path):
    for shape, expected in (((5, 6, 7, 1), True), ((5, 6, 7), True), ((5, 6), False), ((5, 6, 1), False)):
        nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4)), tmp_path / "v.nii")
        assert io.is_volume(tmp_path / "v.nii") is expected
    (tmp_path / "bad.nii").write_bytes(b"nope")
    with pytest.raises(ValueError, match="bad.nii"):
        io.is_volume(tmp_path / "bad.nii")


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "mask.png"
    target.write_bytes(b"previous result")
    with pytest.raises(Exception):
        io.write_array(target, np.zeros((3, 4, 5, 6)))  # Pillow cannot store a 4D array
    assert target.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["mask.png"]
    with pytest.raises(ValueError, match="unsupported extension"):
        io.write_array(tmp_path / "mask.gif", np.zeros((3, 4), np.uint8))
    assert not (tmp_path / "mask.gif").exists()


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        io.read_image(tmp_path / "missing.png")
    for name in ("bad.png", "bad.tif", "bad.jpg", "bad.nii.gz"):
        (tmp_path / name).write_bytes(b"\x89garbage that is not an image")
        with pytest.raises(ValueError, match=f"cannot read .*{name}"):
            io.read_image(tmp_path / name)
    truncated = tmp_path / "cut.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.eye(4)), truncated)
    truncated.write_bytes(truncated.read_bytes()[:-40])
    with pytest.raises(ValueError, match="cut.nii.gz"):
        io.read_image(truncated)
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((5, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="NIfTI"):
        io.read_image(tmp_path / "stack.tif")


def palette_png(path, colours):
    """A palette PNG whose pixels are the palette indices 0..len(colours)-1 in turn."""
    image = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4) % len(colours), mode="P")
    image.putpalette([c for colour in colours for c in colour])
    image.save(path)
    return path


def test_palette_images_read_as_grey_levels_for_inference(tmp_path):
    grey = palette_png(tmp_path / "grey.png", [(0, 0, 0), (7, 7, 7), (255, 255, 255)])
    np.testing.assert_array_equal(io.read_image(grey), np.array([0, 7, 255] * 4, np.uint8).reshape(3, 4))
    colour = palette_png(tmp_path / "colour.png", [(0, 0, 0), (255, 0, 0), (0, 0, 255)])
    image = io.read_image(colour)
    assert image.shape == (3, 4) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, np.asarray(Image.open(colour).convert("L")))
    assert len(np.unique(image)) == 3 and image.min() == 0  # red and blue stay two labels
    (label,) = io.read(colour, what="label")
    np.testing.assert_array_equal(label.array, image)


def test_read_2d_image_modes_gzip_and_errors(tmp_path):
    bilevel = tmp_path / "bilevel.png"
    Image.fromarray(np.eye(3, dtype=bool)).save(bilevel)
    assert Image.open(bilevel).mode == "1"
    np.testing.assert_array_equal(io.read_2d_image(bilevel), np.eye(3, dtype=np.uint8) * 255)
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (4, 3), (0, 255, 255, 0)).save(cmyk)  # red
    array = io.read_2d_image(cmyk)
    assert array.shape == (3, 4, 3) and (array[..., 0] > 200).all() and (array[..., 1:] < 60).all()
    gz = tmp_path / "u8.png.gz"
    gz.write_bytes(
        gzip.compress(io.write_array(tmp_path / "u8.png", np.arange(12, dtype=np.uint8).reshape(3, 4)).read_bytes())
    )
    np.testing.assert_array_equal(io.read_2d_image(gz), np.arange(12).reshape(3, 4))
    with pytest.raises(FileNotFoundError, match="missing.png"):
        io.read_2d_image(tmp_path / "missing.png")
    (tmp_path / "bad.gif").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read image file .*bad.gif"):
        io.read_2d_image(tmp_path / "bad.gif")


def test_jpeg_label_is_thresholded_with_a_warning(tmp_path):
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 255
    Image.fromarray(mask).save(tmp_path / "m.jpg", quality=70)
    with pytest.warns(UserWarning, match="lossy"):
        label = io.read_label(tmp_path / "m.jpg")
    assert label.dtype == bool and label[8, 8] and not label[0, 0]


def test_overlay_picture():
    rng = np.random.default_rng(0)
    query = rng.random((100, 50))
    label_map = np.zeros((100, 50), np.uint8)
    label_map[20:60, 10:40] = 3
    label_map[70:90, 10:40] = 7
    support = [rng.random((32, 32))] * 3
    masks = [np.pad(np.full((10, 10), 3), 11), np.pad(np.full((10, 10), 7), 11), np.zeros((32, 32))]
    picture = overlay.overlay(query, label_map, (3, 7), support, masks, width=400)
    assert picture.dtype == np.uint8 and picture.shape[1] == 400 and picture.shape[2] == 3
    colours = {tuple(c) for c in picture.reshape(-1, 3)}
    assert tuple(overlay.PALETTE[0]) in colours and tuple(overlay.PALETTE[1]) in colours  # outlines and legend swatches
    # Labels are told apart in the support row too: both colours appear below the query row.
    support_row = picture[picture.shape[0] // 2 :].reshape(-1, 3)
    assert {tuple(overlay.PALETTE[0]), tuple(overlay.PALETTE[1])} <= {tuple(c) for c in support_row}
    # No blank area: every column of the picture holds image content in the query row.
    top = picture[overlay.TITLE_HEIGHT : overlay.TITLE_HEIGHT + 20]
    assert (top != overlay.BACKGROUND).any(axis=(0, 2)).mean() > 0.95
    slices = overlay.overlay([query, query[:50]], [label_map, label_map[:50]], (3, 7), titles=["a", "b"], width=400)
    assert slices.shape[1] == 400
    with pytest.raises(ValueError, match="2 queries but 1"):
        overlay.overlay([query, query], [label_map], (3, 7))
