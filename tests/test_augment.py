"""Augmentation: the paper's elastic field, one transform for image and labels, mirrored context."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from unet_ref.augment import (DIHEDRAL, Transform, augment, dihedral, dihedral_inverse, displacement_field,
                              identity_transform, random_gray_values, random_transform, sample_positions, vary_gray_values, warp)
from unet_ref.images import mirror_pad
from unet_ref.synthetic import synthetic_sample


def blocks(shape=(96, 80), size=16):
    """Instance labels: a checkerboard of square cells, ids 1.., no membrane."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy // size) * (shape[1] // size + 1) + xx // size + 1).astype(np.int32)


def test_displacement_field_is_the_cubic_spline_of_the_3x3_knots():
    t = random_transform((101, 61), np.random.default_rng(0))
    field = displacement_field(t)
    # oracle: scipy's 2-D cubic spline through the knots, knot i at i * (L - 1) / 2
    yy, xx = np.mgrid[:101, :61]
    for k in range(2):
        expected = ndimage.map_coordinates(t.displacement[k], [yy / 50.0, xx / 30.0], order=3, mode="mirror")
        np.testing.assert_allclose(field[k], expected, atol=1e-9)
        # the interpolant passes through the knot values
        np.testing.assert_allclose(field[k][np.ix_([0, 50, 100], [0, 30, 60])], t.displacement[k], atol=1e-9)
    # a window's field is the same field, cut out
    np.testing.assert_allclose(displacement_field(t, (10, 5), (20, 30)), field[:, 10:30, 5:35], atol=1e-9)
    # a window past the borders continues the mirrored spline (tiles at the image edge)
    yy, xx = np.mgrid[-140:160, -70:130]
    expected = [ndimage.map_coordinates(t.displacement[k], [yy / 50.0, xx / 30.0], order=3, mode="mirror")
                for k in range(2)]
    np.testing.assert_allclose(displacement_field(t, (-140, -70), (300, 200)), expected, atol=1e-9)
    with pytest.raises(TypeError, match="top_left must be two integers"):
        displacement_field(t, (0.5, 0), (4, 4))


def test_knot_displacements_have_the_papers_standard_deviation_of_10_px():
    rng = np.random.default_rng(1)
    knots = np.concatenate([random_transform((64, 64), rng).displacement.ravel() for _ in range(300)])
    assert knots.size == 300 * 18
    assert abs(knots.std() - 10.0) < 0.4 and abs(knots.mean()) < 0.5


def test_thick_sections_are_deformed_isotropically_in_space():
    """spacing (5, 1, 1): the knots move 10 px in the plane and 10 / 5 = 2 sections along z,
    the shift likewise; only ratios of the spacing matter, and no spacing is spacing 1."""
    rng = np.random.default_rng(1)
    draws = [random_transform((16, 64, 64), rng, spacing=(5, 1, 1)) for _ in range(300)]
    knots = np.stack([t.displacement for t in draws])  # (300, 3, 3, 3, 3)
    np.testing.assert_allclose(knots.std(axis=(0, 2, 3, 4)), [2.0, 10.0, 10.0], rtol=0.05)
    shifts = np.array([t.shift for t in draws])
    assert np.all(np.abs(shifts) <= [8 / 5, 8, 8]) and np.abs(shifts[:, 0]).max() > 1.4
    same = [random_transform((16, 64, 64), np.random.default_rng(7), spacing=s) for s in (None, 1.0, (30, 30, 30))]
    assert all(np.array_equal(t.displacement, same[0].displacement) and t.shift == same[0].shift for t in same)
    nm = random_transform((16, 64, 64), np.random.default_rng(7), spacing=(50, 4, 4))  # nm: 12.5 x thicker
    np.testing.assert_allclose(nm.displacement[0], same[0].displacement[0] * 4 / 50)
    np.testing.assert_array_equal(nm.displacement[1:], same[0].displacement[1:])
    with pytest.raises(ValueError, match="spacing"):
        random_transform((16, 64, 64), rng, spacing=(5, 1))


def test_the_training_tiles_deform_with_the_spacing(monkeypatch):
    from unet_ref import pipeline
    from unet_ref.synthetic import synthetic_volumes

    seen = []

    def spy(*args, **options):
        seen.append(options.get("spacing"))
        return random_transform(*args, **options)

    monkeypatch.setattr(pipeline, "random_transform", spy)
    images, labels = synthetic_volumes(1, shape=(16, 48, 48), seed=0)
    pipeline.TileSampler(images, labels, (20, 44, 44), 1, pool_sizes=((1, 2, 2),), spacing=(4, 1, 1)).sample(0)
    assert seen == [(4.0, 1.0, 1.0)]


def test_identity_window_mirrors_like_the_overlap_tile_predictor():
    image = np.random.default_rng(2).random((23, 17)).astype(np.float32)
    t = Transform(np.zeros((2, 3, 3)), (23, 17))
    # a window reaching 30 px past every border: the predictor's mirror padding (np.pad reflect)
    padded = mirror_pad(image, (30, 30), (30, 30))
    assert np.array_equal(warp(image, t, order=0, top_left=(-30, -30), size=padded.shape), padded)
    np.testing.assert_allclose(warp(image, t, order=3, top_left=(-30, -30), size=padded.shape), padded, atol=1e-5)
    thin = np.arange(5, dtype=np.int32)[None]  # (1, 5): a single row mirrors onto itself
    t = Transform(np.zeros((2, 3, 3)), (1, 5))
    assert np.array_equal(warp(thin, t, order=0, top_left=(-7, -9), size=(15, 23)), mirror_pad(thin, (7, 9), (7, 9)))


@pytest.mark.parametrize("rot90, flip", [(1, False), (2, True), (3, True), (0, True)])
def test_flips_and_rotations_permute_the_warped_tile(rot90, flip):
    labels = blocks()
    t = random_transform(labels.shape, np.random.default_rng(3))
    plain = warp(labels, Transform(t.displacement, t.image_shape, t.shift, 0, False), order=0)
    expected = np.rot90(plain, rot90)
    expected = expected[:, ::-1] if flip else expected
    assert np.array_equal(warp(labels, Transform(t.displacement, t.image_shape, t.shift, rot90, flip), order=0),
                          expected)


@pytest.mark.parametrize("seed", range(4))
def test_image_and_labels_stay_aligned(seed):
    # an image that is a function of the labels, warped with cubic splines, must still be
    # that function of the nearest-neighbour-warped labels away from cell borders
    labels = blocks((128, 128), 24)
    lut = np.random.default_rng(seed).uniform(0.1, 0.9, labels.max() + 1).astype(np.float32)
    rng = np.random.default_rng(seed)
    warped_image, warped_labels = augment(lut[labels], labels, rng, gray_values=False)
    edges = ndimage.morphological_gradient(warped_labels, size=9) > 0  # within 4 px of a border
    edges[:4], edges[-4:], edges[:, :4], edges[:, -4:] = True, True, True, True  # borders beyond the tile
    assert np.mean(~edges) > 0.3
    np.testing.assert_allclose(warped_image[~edges], lut[warped_labels][~edges], atol=0.01)


@pytest.mark.parametrize("seed", range(3))
def test_warped_labels_hold_only_ids_of_the_input(seed):
    _, _, labels = synthetic_sample(96, seed=seed)
    rng = np.random.default_rng(seed)
    for dtype in (np.int32, np.uint16, np.uint8):
        warped = augment(np.zeros(labels.shape), (labels % 200).astype(dtype), rng)[1]
        assert warped.dtype == dtype and set(np.unique(warped)) <= set(np.unique(labels % 200))
    mask = warp(labels > 0, random_transform(labels.shape, rng), order=0)
    assert mask.dtype == bool


def test_multichannel_images_warp_each_channel_alike():
    image = np.random.default_rng(5).random((40, 50, 3))
    t = random_transform((40, 50), np.random.default_rng(6))
    out = warp(image, t, order=3)
    assert out.shape == (50, 40, 3) if t.rot90 % 2 else out.shape == (40, 50, 3)
    np.testing.assert_allclose(out[..., 1], warp(image[..., 1], t, order=3), atol=1e-6)


def test_gray_value_variation_is_monotonic_and_stays_in_range():
    image = np.linspace(0, 1, 200, dtype=np.float32).reshape(10, 20)
    rng = np.random.default_rng(7)
    for _ in range(20):
        gray = random_gray_values(rng)
        assert 0.77 < gray[0] < 1.29 and 0.85 <= gray[1] <= 1.15 and abs(gray[2]) <= 0.08  # exp(+-0.25), 1 +- 0.15
        out = vary_gray_values(image, gray)
        assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
        assert np.all(np.diff(out.ravel()) >= 0)
    np.testing.assert_allclose(vary_gray_values(image, (2.0, 1.0, 0.0)), image**2, rtol=1e-6)  # gamma alone
    expected = np.clip((image - image.mean()) * 0.5 + image.mean() + 0.1, 0, 1)  # contrast around the mean, brightness
    np.testing.assert_allclose(vary_gray_values(image, (1.0, 0.5, 0.1)), expected, atol=1e-6)


def test_same_generator_seed_gives_the_same_augmentation():
    image, _, labels = synthetic_sample(64, seed=1)
    a = augment(image, labels, np.random.default_rng(8))
    b = augment(image, labels, np.random.default_rng(8))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def identity(shape):
    return identity_transform(shape)


@st.composite
def sampling_cases(draw):
    """An image (H, W, C) or a volume (D, H, W, C) and positions (ndim, *size) inside, near
    and far outside it, including whole and half-way samples (the rounding and mirroring
    edge cases)."""
    ndim = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.integers(1, 24 if ndim == 2 else 10)) for _ in range(ndim))
    channels = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    image = rng.random((*shape, channels))
    size = tuple(draw(st.integers(1, 12 if ndim == 2 else 6)) for _ in range(ndim))
    reach = draw(st.sampled_from([1.0, 3.0, 1e4]))
    positions = rng.uniform(-reach, reach, (ndim, *size)) * np.array(shape).reshape(ndim, *(1,) * ndim)
    snap = draw(st.sampled_from([None, 1.0, 0.5]))  # whole or half-way positions
    if snap is not None:
        positions = np.round(positions / snap) * snap
    return image, positions


@settings(max_examples=300, deadline=None)
@given(sampling_cases())
def test_nearest_kernel_rounds_half_to_even_and_mirrors(case):
    # the written-out rule: round (numpy's rint), then reflect the integer index into
    # [0, L) with period 2 (L - 1), as np.pad(mode="reflect") does
    image, positions = case
    labels = (image[..., 0] * 1e6).astype(np.int64)

    def mirror(index, length):
        if length == 1:
            return np.zeros_like(index)
        index = np.abs(index) % (2 * (length - 1))
        return np.where(index >= length, 2 * (length - 1) - index, index)

    index = tuple(mirror(np.rint(x).astype(np.int64), n) for x, n in zip(positions, labels.shape))
    ours = warp(labels, identity(labels.shape), order=0, positions=positions)
    np.testing.assert_array_equal(ours, labels[index])
    multichannel = warp(image, identity(labels.shape), order=0, positions=positions)  # float, channels
    np.testing.assert_array_equal(multichannel, image[index])


@pytest.mark.parametrize("shape, top_left, size", [((50, 30), (-7, 4), (70, 20)),
                                                  ((21, 17, 13), (-5, 0, 3), (31, 17, 16))])
@pytest.mark.parametrize("elastic", [True, False])
def test_sample_positions_are_index_plus_shift_plus_the_displacement_field(shape, top_left, size, elastic):
    t = random_transform(shape, np.random.default_rng(4))
    index = np.indices(size) + np.reshape(top_left, (-1,) + (1,) * len(size))
    expected = index + np.reshape(t.shift, (-1,) + (1,) * len(size))
    if elastic:
        expected = expected + displacement_field(t, top_left, size)
    np.testing.assert_allclose(sample_positions(t, top_left, size, elastic), expected, rtol=0, atol=1e-12)


def test_bool_masks_warp_as_masks_or_as_0_1_images():
    mask = blocks() % 2 == 0
    t = random_transform(mask.shape, np.random.default_rng(3), flips=False)
    nearest = warp(mask, t, order=0)
    assert nearest.dtype == bool and np.array_equal(nearest, warp(mask.astype(np.uint8), t, order=0) == 1)
    cubic = warp(mask, t, order=3)
    assert cubic.dtype == np.float32 and cubic.shape == mask.shape
    np.testing.assert_array_equal(cubic, warp(mask.astype(np.float32), t, order=3))


@pytest.mark.parametrize("shape", [(8, 8), (4, 8, 8)])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_positions_are_rejected(shape, bad):
    positions = np.zeros((len(shape), 3, 4, 4)[-len(shape) - 1:])
    positions[(-1,) + (1,) * len(shape)] = bad
    for order in (0, 1, 3):
        with pytest.raises(ValueError, match="positions must be a finite"):
            warp(np.zeros(shape), identity(shape), order=order, positions=positions)
    with pytest.raises(ValueError, match="image_shape must be"):
        random_transform((2, 2, 2, 2), np.random.default_rng())


@pytest.mark.parametrize("shape", [(5, 6), (3, 5, 6)])
def test_empty_windows_and_channels_give_empty_results_and_complex_images_an_error(shape):
    t = random_transform(shape, np.random.default_rng(0), flips=False)
    empty = (0,) + shape[1:]
    for order in (0, 1, 3):
        assert warp(np.zeros(shape), t, order=order, top_left=(0,) * len(shape), size=empty).shape == empty
        assert warp(np.zeros((*shape, 0)), t, order=order).shape == (*shape, 0)
    assert sample_positions(t, (0,) * len(shape), empty).shape == (len(shape), *empty)
    with pytest.raises(TypeError, match="must be real"):
        warp(np.zeros(shape, complex), t, order=3)  # not the real part, silently


def test_bad_input_raises_clear_errors():
    labels = blocks()
    with pytest.raises(TypeError, match="rng"):
        random_transform(labels.shape, 0)
    with pytest.raises(ValueError, match="grid"):
        random_transform(labels.shape, np.random.default_rng(), grid=1)
    with pytest.raises(ValueError, match="labels must be"):
        augment(np.zeros((10, 10)), labels, np.random.default_rng())
    with pytest.raises(TypeError, match="labels must be an integer"):
        augment(np.zeros(labels.shape), labels.astype(float), np.random.default_rng())
    with pytest.raises(ValueError, match="array must be"):
        warp(np.zeros((5, 5)), random_transform(labels.shape, np.random.default_rng()), order=0)


def test_augmentation_figure_is_written_atomically(tmp_path):
    from unet_ref.plots import plot_augmentation, plot_synthetic_vs_isbi

    image, mask, labels = synthetic_sample(64, seed=0)
    path = plot_augmentation(image, labels, 1, tmp_path / "figures" / "augment.png")
    other = plot_synthetic_vs_isbi(tmp_path / "figures" / "data.png", image, mask, size=64)
    assert path.read_bytes()[:8] == other.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["augment.png", "data.png"]  # no temp files left


# --- the same code on volumes (D, H, W): scipy's N-D splines and the written-out rules ---


def test_3d_displacement_field_is_the_cubic_spline_of_the_3x3x3_knots():
    t = random_transform((21, 17, 13), np.random.default_rng(0))
    assert t.displacement.shape == (3, 3, 3, 3) and len(t.shift) == 3
    zz, yy, xx = np.mgrid[-5:26, :17, 3:19]  # a window that leaves the volume on two axes
    field = displacement_field(t, (-5, 0, 3), zz.shape)
    for k in range(3):
        expected = ndimage.map_coordinates(t.displacement[k], [zz / 10.0, yy / 8.0, xx / 6.0], order=3, mode="mirror")
        np.testing.assert_allclose(field[k], expected, atol=1e-9)


@pytest.mark.parametrize("channels", [None, 2])
def test_3d_warp_samples_like_scipy_and_rotates_only_in_plane(channels):
    rng = np.random.default_rng(2)
    shape = (9, 14, 11)
    image = rng.random(shape if channels is None else (*shape, channels))
    labels = rng.integers(0, 50, shape)
    t = random_transform(shape, rng, sigma=3.0)
    t = Transform(t.displacement, t.image_shape, t.shift, rot90=1, flip=True)
    positions = np.asarray([p for p in np.mgrid[-2:7, 3:17, -4:9]], float) + rng.uniform(-0.5, 0.5, (3, 9, 14, 13))
    warped = warp(image, t, order=3, positions=positions)
    planes = [image] if channels is None else [image[..., c] for c in range(channels)]
    expected = [ndimage.map_coordinates(p, positions, order=3, mode="mirror") for p in planes]
    expected = expected[0] if channels is None else np.stack(expected, axis=-1)
    # the tile turns in its (H, W) plane: D stays first
    np.testing.assert_allclose(dihedral_inverse(warped, 1, True, axes=(1, 2)), expected, atol=1e-5)
    assert warped.shape[:3] == (9, 13, 14)
    # nearest: round half to even, then reflect (the 2-D kernel's rule), per axis
    def mirror(index, length):
        index = np.abs(index) % (2 * (length - 1))
        return np.where(index >= length, 2 * (length - 1) - index, index)

    index = [mirror(np.rint(p).astype(int), n) for p, n in zip(positions, shape)]
    nearest = warp(labels, t, order=0, positions=positions)
    np.testing.assert_array_equal(dihedral_inverse(nearest, 1, True, axes=(1, 2)), labels[tuple(index)])


def test_3d_augment_warps_image_and_labels_alike():
    labels = np.kron(np.arange(27).reshape(3, 3, 3), np.ones((6, 6, 6), int))  # (18, 18, 18) blocks
    image, warped = augment(labels.astype(np.uint8) * 9, labels, np.random.default_rng(1), gray_values=False)
    assert image.shape == warped.shape == labels.shape
    # the image was made from the labels, so the warped image is the warped labels (to spline error)
    inside = ndimage.binary_erosion(warped == ndimage.grey_erosion(warped, 3), iterations=2)
    np.testing.assert_allclose(image[inside] * 255, warped[inside] * 9.0, atol=1.0)


def test_the_eight_symmetries_are_distinct_and_undone_by_their_inverse():
    square = np.arange(16).reshape(4, 4)
    seen = {dihedral(square, k, f).tobytes() for k, f in DIHEDRAL}
    assert len(seen) == 8
    volume = np.arange(2 * 3 * 3 * 2).reshape(2, 3, 3, 2)  # (D, H, W, C)
    for k, f in DIHEDRAL:
        turned = dihedral(volume, k, f, axes=(1, 2))
        assert np.array_equal(turned[0], dihedral(volume[0], k, f))  # slice by slice, D untouched
        assert np.array_equal(dihedral_inverse(turned, k, f, axes=(1, 2)), volume)
