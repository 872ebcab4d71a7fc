"""The size arithmetic of the valid-convolution U-Net (unet_ref.sizes)."""
import math

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


# --- per-axis sizes and pooling factors (the 3-D U-Net, anisotropic volumes) ---------------

ANISOTROPIC = ((1, 2, 2), (1, 2, 2), (2, 2, 2))  # EM stacks: sections thicker than pixels


def brute_force_walk(n, pools):
    """Figure 1's walk with a pooling factor per level (independent oracle)."""
    for p in pools:
        n -= 4
        if n < p or n % p:
            return None
        n //= p
    n -= 4
    if n < 1:
        return None
    for p in reversed(pools):
        n = p * n - 4
        if n < 1:
            return None
    return n


def test_an_int_and_a_tuple_of_ints_give_the_same_answers_per_axis():
    assert output_size((572, 188), depth=4) == (388, 4)
    assert valid_input_size((500, 1), depth=4) == (508, 188)
    assert input_size_for_output((388, 1)) == (572, 188)
    assert margin(pool_sizes=((2, 2),) * 4) == (92, 92) and margin(pool_sizes=(2, 2, 2, 2)) == 92
    assert is_valid_input_size((572, 572, 188)) and not is_valid_input_size((572, 570))


@pytest.mark.parametrize("pools", [(1,), (3,), (1, 1), (2, 1, 2), (1, 2, 3), (3, 3)])
def test_per_axis_closed_forms_agree_with_the_walk(pools):
    valid = [n for n in range(1, 400) if brute_force_walk(n, pools) is not None]
    grid = math.prod(pools)
    assert all(b - a == grid for a, b in zip(valid, valid[1:]))
    for n in range(1, valid[-1] + 1):
        assert valid_input_size(n, pool_sizes=pools) == min(v for v in valid if v >= n)
        assert is_valid_input_size(n, pool_sizes=pools) == (n in valid)
    for n in valid:
        assert output_size(n, pool_sizes=pools) == brute_force_walk(n, pools)
        assert margin(pool_sizes=pools) == (n - brute_force_walk(n, pools)) // 2
    for out in range(1, 60):
        n = input_size_for_output(out, pool_sizes=pools)
        assert output_size(n, pool_sizes=pools) >= out
        assert all(brute_force_walk(k, pools) is None or brute_force_walk(k, pools) < out for k in range(1, n))


@pytest.mark.parametrize("ndim, pool_sizes", [
    (2, None), (2, ((1, 2), (2, 2))), (3, None), (3, ((1, 2, 2),)), (3, ((1, 2, 2), (2, 2, 2))),
    (3, ANISOTROPIC), (3, ((2, 1, 3), (1, 2, 2))),
])
def test_output_size_per_axis_matches_the_keras_model(ndim, pool_sizes):
    pytest.importorskip("keras")
    from unet_ref.model import build_unet

    depth = len(pool_sizes) if pool_sizes else 2
    model = build_unet(base_filters=1, depth=depth, ndim=ndim, pool_sizes=pool_sizes, dropout=0.0)
    smallest = valid_input_size((1,) * ndim, depth, pool_sizes)
    for extra in (0, 1, 3):
        shape = valid_input_size(tuple(n + extra * 9 + axis for axis, n in enumerate(smallest)), depth, pool_sizes)
        expected = model.compute_output_shape((1, *shape, 1))[1:-1]
        assert output_size(shape, depth, pool_sizes) == expected
        assert margin(depth, pool_sizes if pool_sizes else ((2,) * ndim,) * depth) == tuple(
            (n - m) // 2 for n, m in zip(shape, expected))
    bad = tuple(n + 1 for n in smallest)  # one px too many on every axis pooled at the top level
    if any(p > 1 for p in (pool_sizes or ((2,),))[0]):
        with pytest.raises(ValueError, match="nearest valid input sizes"):
            output_size(bad, depth, pool_sizes)


def test_anisotropic_pooling_keeps_the_unpooled_axis_thin():
    assert valid_input_size((1, 1, 1), pool_sizes=ANISOTROPIC) == (34, 92, 92)
    assert output_size((34, 100, 100), pool_sizes=ANISOTROPIC) == (2, 12, 12)
    assert margin(pool_sizes=ANISOTROPIC) == (16, 44, 44)  # z: 4 (1 + 1 + 1) + 2 * 2


def test_per_axis_errors_name_the_axis_and_the_nearest_sizes():
    with pytest.raises(ValueError, match="input size 35 on axis 0 .* nearest valid input sizes are 34 or 36"):
        output_size((35, 100, 100), pool_sizes=ANISOTROPIC)
    with pytest.raises(ValueError, match="depth 4 does not match pool_sizes, which has 3 levels"):
        output_size((34, 100, 100), depth=4, pool_sizes=ANISOTROPIC)
    with pytest.raises(ValueError, match="one size per axis"):
        output_size(100, pool_sizes=ANISOTROPIC)
    with pytest.raises(ValueError, match=r"pool_sizes\[1\] must be an int or 3 ints"):
        output_size((34, 100, 100), pool_sizes=((1, 2, 2), (2, 2)))
    with pytest.raises(ValueError, match=r"pool_sizes\[0\] must be an integer >= 1"):
        output_size((34, 100, 100), pool_sizes=((0, 2, 2),))
    with pytest.raises(TypeError, match="input_size must be an integer"):
        output_size((34, 100.0, 100), pool_sizes=ANISOTROPIC)
