"""The U-Net of Ronneberger, Fischer and Brox (2015), as a Keras 3 functional model.

O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015, https://arxiv.org/abs/1505.04597 (section 2 and Fig. 1).

A contracting path (two valid 3x3 convolutions + ReLU, then a 2x2 max-pool, per level,
doubling the channels) and an expanding path (a 2x2 up-convolution halving the channels,
concatenation with the centrally cropped features of the same level, two valid 3x3
convolutions + ReLU), then a 1x1 convolution to one logit per class. With the paper's
configuration (64 filters, depth 4) it has 23 convolutional layers, 31,030,658 parameters
and maps a 572 x 572 tile to 388 x 388 (`unet_ref.sizes`). It returns logits: the loss
takes their log-softmax (`unet_ref.loss`), prediction their softmax (`unet_ref.tiling`).

One definition for images and volumes: the layer classes are looked up by the number of
spatial dimensions in one place (`spatial_layers`, as MONAI's `spatial_dims`), so
`build_unet(ndim=3)` is the same network with 3x3x3 convolutions and 2x2x2 pooling: the
3-D U-Net of O. Cicek et al., MICCAI 2016, https://arxiv.org/abs/1606.06650. Its
departures from the 2-D paper are options: `batch_norm` (Cicek et al. normalise before each
ReLU) and `pool_sizes` (a pooling factor per level and axis, e.g. ((1, 2, 2), (1, 2, 2),
(2, 2, 2)) for EM stacks whose sections are thicker than a pixel). We keep the 2-D paper's
channel widths (Cicek et al. double them before each max-pool).
"""
import types

import keras
from keras import layers

from unet_ref.checks import check_int, check_real, per_axis
from unet_ref.sizes import margin, output_size, pool_factors

__all__ = ["build_unet", "unet_depth", "unet_pool_sizes", "spatial_layers"]


def spatial_layers(ndim):
    """The Keras layer classes of a U-Net with `ndim` spatial axes (2: images, 3: volumes):
    conv, pool (max-pooling), upconv (transposed convolution) and crop."""
    check_int(ndim, "ndim (2 for images, 3 for volumes)", minimum=2, maximum=3)
    return types.SimpleNamespace(
        conv=getattr(layers, f"Conv{ndim}D"),
        pool=getattr(layers, f"MaxPooling{ndim}D"),
        upconv=getattr(layers, f"Conv{ndim}DTranspose"),
        crop=getattr(layers, f"Cropping{ndim}D"),
    )


def _conv3x3(x, filters, name, batch_norm=False):
    # valid padding: every output pixel sees only real image context (overlap-tile);
    # He-normal = the paper's Gaussian with standard deviation sqrt(2/N), N = 9 * in_channels
    # (3 x 3 x 3 kernels in 3-D: N = 27 * in_channels, also along an axis that is never
    # pooled: a valid 3-px kernel costs 2 px of it per convolution, as in the plane)
    conv = spatial_layers(len(x.shape) - 2).conv
    if not batch_norm:
        return conv(filters, 3, padding="valid", activation="relu", kernel_initializer="he_normal", name=name)(x)
    # Cicek et al. (3-D U-Net): "batch normalization before each ReLU"; the bias is then
    # redundant (BN's beta). Per-channel statistics, so in inference it is a per-voxel
    # affine map and overlap-tile stays seam-free.
    x = conv(filters, 3, padding="valid", use_bias=False, kernel_initializer="he_normal", name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_unet(base_filters=64, depth=4, n_classes=2, in_channels=1, dropout=0.5,
               name="unet", input_size=None, ndim=2, pool_sizes=None, batch_norm=False):
    """Build the U-Net of Ronneberger et al. (2015).

    Parameters
    ----------
    base_filters : int
        Feature channels of the first level (64 in the paper); level ``i`` has
        ``base_filters * 2**i``.
    depth : int
        Number of 2x2 max-pools (4 in the paper), at least 1; may be None when
        `pool_sizes` is given (then its length).
    n_classes : int
        Output channels of the final 1x1 convolution (2 in the paper: 0 = membrane /
        background, 1 = cell), at least 2.
    in_channels : int
        Channels of the input image (1 for grey-value EM).
    dropout : float in [0, 1)
        Drop rate of the dropout layers at the end of the contracting path (0.5 in the
        Caffe release); 0 leaves them out.
    name : str
        Name of the Keras model.
    input_size : int, tuple of int or None
        None (default) builds a fully convolutional model for any valid input size.
        An int fixes a square (cubic) input, a tuple one size per axis, checked with
        `unet_ref.sizes.output_size`.
    ndim : 2 or 3
        Spatial dimensions: 2 for images (the paper), 3 for volumes (`spatial_layers`).
    pool_sizes : sequence, optional
        Max-pooling factor of each level (top first): an int or one int >= 1 per axis, as
        `unet_ref.sizes.pool_factors` reads it. Default: 2 on every axis (the paper). The
        up-convolution of a level has the kernel and stride of its pool.
    batch_norm : bool
        Batch normalisation before the ReLU of every 3x3 convolution (the 3-D U-Net of
        Cicek et al.; the 2-D paper has none). Default False.

    Returns
    -------
    keras.Model
        Input (B, H, W, in_channels) float, output logits (B, h, w, n_classes) in float32
        (also under a ``mixed_float16`` policy), h = ``output_size(H, depth)``; in 3-D
        input (B, D, H, W, in_channels) and output (B, d, h, w, n_classes).

    Notes
    -----
    Only valid input sizes work (see `unet_ref.sizes.valid_input_size`); any other size
    fails at a concatenation (a max-pool on an odd size drops a row, so the copy no longer
    matches) or, if too small, at a convolution. Pass `input_size` to check it up front.

    Mixed precision (``keras.mixed_precision.set_global_policy("mixed_float16")`` before
    building) is for GPUs: on a CPU without AVX-512 float16 convolutions fall back to slow
    kernels (benchmarks/test_model.py measures a training step).

    Examples
    --------
    >>> model = build_unet(base_filters=4, depth=2)
    >>> model.compute_output_shape((1, 92, 92, 1))
    (1, 52, 52, 2)
    """
    for value, arg, minimum in ((base_filters, "base_filters", 1), (n_classes, "n_classes", 2),
                                (in_channels, "in_channels", 1)):
        check_int(value, arg, minimum=minimum)
    if depth is not None or pool_sizes is None:
        check_int(depth, "depth", minimum=1)
    dropout = check_real(dropout, "dropout", minimum=0, below=1)
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    if not isinstance(batch_norm, bool):
        raise TypeError(f"batch_norm must be True or False, got {batch_norm!r}")
    nd = spatial_layers(ndim)
    pools = pool_factors(pool_sizes, depth, ndim)  # ((2, 2), (2, 2), (2, 2), (2, 2))
    depth = len(pools)
    check_int(depth, "depth (the number of pool_sizes)", minimum=1)
    shape = (None,) * ndim
    if input_size is not None:
        shape = per_axis(input_size, ndim, "input_size")
        output_size(shape, pool_sizes=pools)  # ValueError naming the nearest valid sizes

    # Shapes in comments: the paper's configuration, 572 x 572 x 1 input, 64 filters, depth 4.
    inputs = keras.Input(shape=shape + (in_channels,), name="image")  # (B, 572, 572, 1)
    x, skips = inputs, []
    for level in range(depth):  # contracting path
        filters = base_filters * 2**level
        x = _conv3x3(x, filters, f"down{level}_conv1", batch_norm)  # level 0: (B, 570, 570, 64)
        x = _conv3x3(x, filters, f"down{level}_conv2", batch_norm)  # level 0: (B, 568, 568, 64)
        if dropout and level == depth - 1:
            # Paper: "Drop-out layers at the end of the contracting path" (plural); like the
            # Caffe release we drop here (before pool and copy) and after the bottom convs.
            x = layers.Dropout(dropout, name=f"down{level}_dropout")(x)  # (B, 64, 64, 512)
        skips.append(x)  # copied across: 568, 280, 136, 64 px
        # a factor of 1 leaves an axis unpooled at this level (anisotropic volumes)
        x = nd.pool(pools[level], name=f"down{level}_pool")(x)  # level 0: (B, 284, 284, 64)

    x = _conv3x3(x, base_filters * 2**depth, "bottom_conv1", batch_norm)  # (B, 30, 30, 1024)
    x = _conv3x3(x, base_filters * 2**depth, "bottom_conv2", batch_norm)  # (B, 28, 28, 1024)
    if dropout:
        x = layers.Dropout(dropout, name="bottom_dropout")(x)

    for level in reversed(range(depth)):  # expanding path
        filters = base_filters * 2**level
        # Paper: "upsampling of the feature map followed by a 2x2 convolution ("up-convolution")
        # that halves the number of feature channels". We use the usual equivalent, one
        # transposed convolution, kernel 2, stride 2: the same parameters and exactly x2 in
        # size (each input pixel becomes a learned 2x2 block). Its ReLU: the paper is silent;
        # it keeps both concatenated halves non-negative, as the next conv's He init assumes.
        # Kernel and stride = the pool of this level, so it undoes that pool on every axis.
        x = nd.upconv(filters, pools[level], strides=pools[level], activation="relu",
                      kernel_initializer="he_normal", name=f"up{level}_upconv")(x)  # level 3: (B, 56, 56, 512)
        # Crop the copy centrally. The path below this level (pool by p, the U-Net of the
        # levels below, up-conv by p) loses p * margin(those levels) px per side for every
        # valid input size, so a constant crop works with a None input size: 4, 16, 40, 88.
        crop = tuple(p * margin(pool_sizes=[below[axis] for below in pools[level + 1:]])
                     for axis, p in enumerate(pools[level]))  # per axis
        skip = nd.crop(crop, name=f"up{level}_crop")(skips[level])  # level 3: (B, 56, 56, 512)
        x = layers.Concatenate(name=f"up{level}_concat")([skip, x])  # level 3: (B, 56, 56, 1024)
        x = _conv3x3(x, filters, f"up{level}_conv1", batch_norm)  # level 3: (B, 54, 54, 512)
        x = _conv3x3(x, filters, f"up{level}_conv2", batch_norm)  # level 3: (B, 52, 52, 512); 0: (B, 388, 388, 64)

    # 1x1 convolution to logits: no activation (the notebook's ReLU here was a defect);
    # float32 so that the loss stays float32 under a mixed_float16 policy.
    logits = nd.conv(n_classes, 1, kernel_initializer="he_normal", dtype="float32",
                     name="logits")(x)  # (B, 388, 388, 2)
    return keras.Model(inputs, logits, name=name)


def unet_depth(model):
    """Depth (number of max-pools) of a U-Net built by `build_unet`, or loaded from .keras.

    Read from the layers, so that the tiler and the command line never need the depth
    passed separately.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    ndim = len(model.input_shape) - 2
    nd = spatial_layers(ndim) if ndim in (2, 3) else None
    pools = sum(isinstance(layer, nd.pool) for layer in model.layers) if nd else 0
    upconvs = sum(isinstance(layer, nd.upconv) for layer in model.layers) if nd else 0
    if pools == 0 or pools != upconvs:
        raise ValueError(
            f"model {model.name!r} is not a U-Net from unet_ref.build_unet: it has {pools} "
            f"max-pooling and {upconvs} transposed-convolution layers (expected equal and >= 1)"
        )
    return pools


def unet_pool_sizes(model):
    """Max-pooling factors of every level, top first, one int per axis, read from the layers
    of a U-Net built by `build_unet` (or loaded): what the tiler needs for per-axis margins
    and pooling grids, e.g. ((2, 2), (2, 2)) or ((1, 2, 2), (2, 2, 2))."""
    depth = unet_depth(model)
    return tuple(tuple(int(p) for p in model.get_layer(f"down{level}_pool").pool_size) for level in range(depth))
