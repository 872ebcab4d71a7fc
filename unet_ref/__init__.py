"""unet_ref: a paper-faithful Keras 3 U-Net and its exact one-pass weight map.

Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015, https://arxiv.org/abs/1505.04597

The public names below are imported lazily, so that `import unet_ref` (and the weight
map, the size arithmetic, the data tools) does not pay for importing TensorFlow.
"""
import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "d1_d2": "weights",
    "weight_map": "weights",
    "output_size": "sizes",
    "valid_input_size": "sizes",
    "input_size_for_output": "sizes",
    "margin": "sizes",
    "build_unet": "model",
    "unet_depth": "model",
    "compile_unet": "loss",
    "weighted_cross_entropy": "loss",
    "predict_tiled": "tiling",
    "training_tile": "tiles",
    "challenge_scores": "challenge",
}
_SUBMODULES = {
    "reference", "sizes", "images", "weights", "model", "loss", "synthetic", "datasets", "augment", "tiles",
    "pipeline", "tiling", "config", "train", "evaluate", "challenge", "plots", "cli", "demo", "one_pass", "fast",
    "masks", "checks", "settings", "memory", "devices", "files", "runs", "callbacks",
    "omezarr", "blockwise",  # the zarr extra
}

__all__ = sorted(_EXPORTS) + ["reference"]


def __getattr__(name):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value  # cache: later look-ups skip __getattr__
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'unet_ref' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
