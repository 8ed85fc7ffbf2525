"""Preprocessing: grayscale, intensity normalisation, resizing of images and labels, validation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from universeg_jax import preprocess as pp


def test_to_grayscale_shapes_and_dtypes():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    gray = pp.to_grayscale(rgb)
    assert gray.shape == (5, 7) and gray.dtype == np.float32
    expected = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    np.testing.assert_allclose(gray, expected, rtol=1e-5)
    rgba = np.concatenate([rgb, np.zeros((5, 7, 1), np.uint8)], -1)
    np.testing.assert_array_equal(pp.to_grayscale(rgba), gray)  # alpha ignored
    np.testing.assert_array_equal(pp.to_grayscale(rgb[..., :1]), rgb[..., 0].astype(np.float32))
    assert pp.to_grayscale(np.ones((3, 3), bool)).dtype == np.float32
    assert pp.to_grayscale(np.ones((3, 3), np.uint16) * 60000).max() == 60000


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (np.zeros((4, 4, 2)), ValueError, r"\(H, W, 3\)"),
        (np.zeros((2, 4, 4, 1)), ValueError, "must have shape"),
        (np.zeros((0, 4)), ValueError, "empty"),
        (np.array([[1.0, np.nan]]), ValueError, "NaN"),
        (np.zeros((4, 4), complex), TypeError, "real dtype"),
        (np.array([["a", "b"]]), TypeError, "real dtype"),
    ],
)
def test_to_grayscale_rejects_bad_input(bad, error, match):
    with pytest.raises(error, match=match):
        pp.to_grayscale(bad, name="query")


def test_error_names_the_argument():
    with pytest.raises(ValueError, match="support_images\\[2\\]"):
        pp.to_grayscale(np.zeros((4, 4, 5)), name="support_images[2]")


def test_normalize_percentiles_clip_outliers():
    x = np.linspace(0, 1000, 10001).astype(np.float32)
    x[0] = -1e6  # a cold pixel
    x[-1] = 1e6  # a hot pixel
    y = pp.normalize_intensity(x)
    assert y.dtype == np.float32 and y.min() == 0.0 and y.max() == 1.0
    # The middle value lands near the middle (the outliers did not squash the range).
    assert abs(y[5000] - 0.5) < 0.01


def test_normalize_constant_image_gives_zeros():
    for value in (0, 7, -3.5):
        y = pp.normalize_intensity(np.full((6, 6), value, np.float32))
        assert np.isfinite(y).all() and (y == 0).all()
    y = pp.normalize_intensity(np.full((6, 6), 5.0), window=(0, 10))
    np.testing.assert_allclose(y, 0.5)


def test_normalize_sparse_image_falls_back_to_min_max():
    x = np.zeros((100, 100), np.float32)
    x[0, 0] = 9.0  # fewer than 0.5% non-zero pixels: the 99.5th percentile is 0
    y = pp.normalize_intensity(x)
    assert y[0, 0] == 1.0 and y[1, 1] == 0.0


def test_normalize_ct_window():
    hu = np.array([-2000, -1000, -300, 400, 3000], np.float32)
    y = pp.normalize_intensity(hu, window=(-1000, 400))
    np.testing.assert_allclose(y, [0, 0, 0.5, 1, 1], atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"window": (5, 5)}, "window"),
        ({"window": (1,)}, "window"),
        ({"percentiles": (99, 1)}, "percentiles"),
        ({"percentiles": (-1, 50)}, r"\[0, 100\]"),
        ({"window": (0, float("nan"))}, "window"),
    ],
)
def test_normalize_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pp.normalize_intensity(np.arange(9.0).reshape(3, 3), **kwargs)


def test_resize_area_averages_blocks():
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    y = pp.resize_image(x, (2, 2), "area")
    expected = x.reshape(2, 2, 2, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(y, expected)


def test_resize_bilinear_enlarging_interpolates_linearly():
    x = np.array([[0.0, 1.0]], np.float32)
    y = pp.resize_image(x, (1, 4), "bilinear")
    np.testing.assert_allclose(y[0], [0.0, 0.25, 0.75, 1.0])


@settings(max_examples=30, deadline=None)
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    oh=st.integers(1, 40),
    ow=st.integers(1, 40),
    method=st.sampled_from(pp.IMAGE_METHODS),
)
def test_resize_keeps_range_and_constants(h, w, oh, ow, method):
    rng = np.random.default_rng(h * 41 + w)
    x = rng.random((h, w)).astype(np.float32)
    y = pp.resize_image(x, (oh, ow), method)
    assert y.shape == (oh, ow) and y.dtype == np.float32
    assert y.min() >= x.min() - 1e-6 and y.max() <= x.max() + 1e-6
    np.testing.assert_allclose(pp.resize_image(np.full((h, w), 0.3), (oh, ow), method), 0.3, rtol=1e-5)


def test_resize_stack_matches_per_slice():
    rng = np.random.default_rng(1)
    stack = rng.random((3, 20, 12))
    y = pp.resize_image(stack, (8, 9), "bilinear")
    assert y.shape == (3, 8, 9)
    np.testing.assert_allclose(y[1], pp.resize_image(stack[1], (8, 9), "bilinear"), rtol=1e-6)


@pytest.mark.parametrize("size", [(0, 4), (4,), (2.5, 3), "ab", None])
def test_resize_rejects_bad_size(size):
    with pytest.raises(ValueError, match="size"):
        pp.resize_image(np.zeros((4, 4)), size)


def test_resize_rejects_bad_method():
    with pytest.raises(ValueError, match="method"):
        pp.resize_image(np.zeros((4, 4)), (2, 2), "cubic")
    with pytest.raises(ValueError, match="method"):
        pp.resize_label(np.zeros((4, 4)), (2, 2), "bilinear")


def test_resize_label_nearest_and_area():
    label = np.zeros((8, 8), np.uint8)
    label[:, :3] = 255  # 3 of 8 columns
    nearest = pp.resize_label(label, (2, 2), "nearest")
    area = pp.resize_label(label, (2, 2), "area")
    assert nearest.dtype == area.dtype == np.float32
    assert set(np.unique(nearest)) <= {0.0, 1.0} and set(np.unique(area)) <= {0.0, 1.0}
    # Left half is 3/4 foreground: area keeps it; the nearest sample at column 2 is foreground too.
    np.testing.assert_array_equal(area, [[1, 0], [1, 0]])
    np.testing.assert_array_equal(nearest, [[1, 0], [1, 0]])
    thin = np.zeros((8, 8))
    thin[:, 1] = 1  # a quarter of the left half: area drops it
    np.testing.assert_array_equal(pp.resize_label(thin, (2, 2), "area"), 0)
    big = pp.resize_label(label, (16, 16), "nearest")
    np.testing.assert_array_equal(big[:, :6], 1)
    np.testing.assert_array_equal(big[:, 6:], 0)


def test_standardize_example_any_size_and_dtype():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 65535, (512, 384), dtype=np.uint16)
    label = np.zeros((512, 384), np.int32)
    label[100:300, 50:200] = 7
    img, lab = pp.standardize_example(image, label)
    assert img.shape == lab.shape == (128, 128, 1)
    assert img.dtype == lab.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0
    assert set(np.unique(lab)) == {0.0, 1.0}
    np.testing.assert_array_equal(lab[25:75, 17:66, 0], 1)  # rows /4, columns /3
    assert lab.sum() == pytest.approx(50 * 50, rel=0.02)
    img64, _ = pp.standardize_example(image, label, size=(64, 32))
    assert img64.shape == (64, 32, 1)


def test_standardize_example_label_channels():
    image = np.random.default_rng(3).random((10, 12, 3))
    label_rgb = np.zeros((10, 12, 3), np.uint8)
    label_rgb[2:5] = 255
    _, lab = pp.standardize_example(image, label_rgb, size=(10, 12))
    np.testing.assert_array_equal(lab[2:5], 1)
    colour = label_rgb.copy()
    colour[0, 0] = (1, 2, 3)
    with pytest.raises(ValueError, match="colour"):
        pp.standardize_example(image, colour)


def test_standardize_example_shape_mismatch():
    with pytest.raises(ValueError, match="does not match"):
        pp.standardize_example(np.zeros((10, 12)), np.zeros((12, 10)))
