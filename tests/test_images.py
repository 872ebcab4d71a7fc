"""The intensity rule: every image as float32 in [0, 1], read as its values mean or refused."""
import numpy as np
import pytest

from unet_ref.images import normalize_image, parse_normalize


def test_uint8_and_uint16_are_scaled_by_their_dtype_and_floats_in_0_1_pass_unchanged():
    image8 = np.array([[0, 51, 255]], np.uint8)
    assert np.array_equal(normalize_image(image8), image8 / np.float32(255))
    assert np.array_equal(normalize_image(image8.astype(np.uint16) * 257), normalize_image(image8))
    x = np.array([[0.0, 0.25, 1.0]], np.float32)
    assert normalize_image(x) is x  # a normalised image is not changed by a second call


@pytest.mark.parametrize("image, hint", [
    (np.array([[0, 255]], np.int64), "range:0,255"),  # divided by 2**63 - 1 it would be black
    (np.array([[0, 200]], np.int32), "range:0,255"),
    (np.array([[0, 4095]], np.uint32), "range:0,4095"),
    (np.array([[0.0, 255.0]], np.float32), "range:0,255"),  # a float TIFF holding 8-bit values
    (np.array([[-1.0, 0.5]], np.float64), "percentile"),  # negative floats
    (np.array([[0.0, 1.5]], np.float32), "percentile"),
])
def test_other_dtypes_and_floats_outside_0_1_are_refused_with_the_rule_that_reads_them(image, hint):
    with pytest.raises(ValueError, match=f"img is {image.dtype} .* --normalize {hint} "):
        normalize_image(image, "img")
    read = normalize_image(image, "img", normalize=hint)  # the hinted rule reads the same array
    assert read.dtype == np.float32 and read.min() == 0 and 0 < read.max() <= 1


def test_range_maps_min_and_max_to_0_and_1_like_the_dtype_rule_for_8_bit_values():
    image = np.random.default_rng(0).integers(0, 256, (20, 30))
    assert np.array_equal(normalize_image(image, normalize="range:0,255"), normalize_image(image.astype(np.uint8)))
    camera = (image * 16).astype(np.uint16)  # 12 bits in a uint16
    assert normalize_image(camera).max() <= 0.07  # what "dtype" makes of it
    assert np.allclose(normalize_image(camera, normalize="range:0,4095"), camera / 4095, atol=1e-6)


def test_percentile_maps_each_images_percentiles_to_0_and_1_clipped():
    camera = np.random.default_rng(1).normal(800, 100, (64, 64)).clip(0, 4095).astype(np.uint16)
    low, high = np.percentile(camera, [1, 99.8])  # the oracle: numpy's percentiles, then a line
    expected = np.clip((camera - low) / (high - low), 0, 1)
    assert np.allclose(normalize_image(camera, normalize="percentile"), expected, atol=1e-5)
    assert np.allclose(normalize_image(camera, normalize=("percentile", 2, 98)),
                       np.clip((camera - np.percentile(camera, 2)) / np.ptp(np.percentile(camera, [2, 98])), 0, 1),
                       atol=1e-5)
    assert normalize_image(np.full((3, 3), 7, np.int64), normalize="percentile").max() == 0  # constant: no NaN


def test_rules_are_parsed_and_checked_with_one_line_errors():
    assert parse_normalize("dtype") == ("dtype",)
    assert parse_normalize("percentile:2, 99") == ("percentile", 2.0, 99.0)
    for bad in ("minmax", "percentile:99,2", "range:5,5", "range:a,b", "percentile:1,101"):
        with pytest.raises(ValueError, match="normalize must be"):
            parse_normalize(bad)
