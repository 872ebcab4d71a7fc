"""The size arithmetic of the valid-convolution U-Net (unet_ref.sizes)."""
import pytest

from unet_ref.sizes import input_size_for_output, is_valid_input_size, margin, output_size, valid_input_size


def brute_force_output(n, depth):
    """Walk the network layer by layer, as the paper's Figure 1 does (independent oracle)."""
    sizes = []
    for _ in range(depth):
        n = n - 2 - 2
        sizes.append(n)
        if n <= 0 or n % 2:
            return None
        n = n // 2
    n = n - 2 - 2
    if n <= 0:
        return None
    for _ in range(depth):
        n = n * 2 - 2 - 2
        if n <= 0:
            return None
    return n


def test_paper_configuration_572_to_388():
    assert output_size(572, depth=4) == 388
    assert margin(4) == 92
    assert input_size_for_output(388, depth=4) == 572


@pytest.mark.parametrize("depth", [0, 1, 2, 3, 4, 5])
def test_output_size_matches_layer_by_layer_walk(depth):
    for n in range(1, 900):
        expected = brute_force_output(n, depth)
        assert is_valid_input_size(n, depth) == (expected is not None)
        if expected is None:
            with pytest.raises(ValueError, match="nearest valid input sizes"):
                output_size(n, depth)
        else:
            assert output_size(n, depth) == expected


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_valid_input_size_is_smallest_valid_at_or_above(depth):
    for n in range(1, 600):
        v = valid_input_size(n, depth)
        assert v >= n and brute_force_output(v, depth) is not None
        assert all(brute_force_output(k, depth) is None for k in range(n, v))


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_input_size_for_output_is_the_smallest_input_covering_the_output(depth):
    for out in range(1, 300):
        n = input_size_for_output(out, depth)
        assert output_size(n, depth) >= out
        assert all(brute_force_output(k, depth) is None or brute_force_output(k, depth) < out for k in range(1, n))


def test_invalid_size_error_names_neighbours():
    with pytest.raises(ValueError, match="556 or 572"):
        output_size(570, depth=4)
    with pytest.raises(ValueError, match="188 \\(the smallest valid size\\)"):
        output_size(100, depth=4)


@pytest.mark.parametrize("bad", [0, -4, 1.5, "572", None, True])
def test_bad_arguments_raise_clear_errors(bad):
    with pytest.raises((TypeError, ValueError), match="input_size"):
        output_size(bad)


@pytest.mark.parametrize("depth", range(0, 9))
def test_closed_forms_agree_with_the_walk(depth):
    valid = [n for n in range(1, 12 * 2**depth + 3 * 2**depth) if brute_force_output(n, depth) is not None]
    assert valid[0] == valid_input_size(1, depth) and all(b - a == 2**depth for a, b in zip(valid, valid[1:]))
    for n in range(1, valid[-1] + 1, max(1, 2**depth // 4)):
        assert valid_input_size(n, depth) == min(v for v in valid if v >= n)
    assert margin(depth) == (valid[0] - brute_force_output(valid[0], depth)) // 2


def test_deep_networks_get_answers_at_once_and_depth_is_bounded():
    # a loop over candidate sizes took 1.3 s here and never returned for depth 30
    assert valid_input_size(1, depth=18) == 12 * 2**18 - 4
    with pytest.raises(ValueError, match=f"nearest valid input sizes are {12 * 2**30 - 4} "):
        output_size(100, depth=30)
    assert output_size(12 * 2**59 - 4, depth=59) == 4  # the smallest input gives 4 px, as 188 -> 4 at depth 4
    with pytest.raises(ValueError, match="depth must be an integer >= 0 and <= 59"):
        valid_input_size(100, depth=60)
