"""How raw images become network input: one normalisation for training and prediction.

Integer images are scaled by the largest value their dtype can hold (uint8 / 255,
uint16 / 65535), so that a model trained on 8-bit ISBI slices sees the same range from a
16-bit TIFF of the same scene. Float images are taken to be in [0, 1] already and are only
cast to float32. The training pipeline, the overlap-tile predictor and the command line
all call `normalize_image`; nothing else converts intensities.
"""
import numpy as np

__all__ = ["normalize_image"]


def normalize_image(image, name="image"):
    """Return `image` as float32 in [0, 1] (integers scaled by their dtype's maximum).

    >>> normalize_image(np.array([[0, 255]], dtype=np.uint8))
    array([[0., 1.]], dtype=float32)
    """
    image = np.asarray(image)
    if image.size == 0:
        raise ValueError(f"{name} is empty (shape {image.shape})")
    if image.dtype == bool:
        return image.astype(np.float32)
    if np.issubdtype(image.dtype, np.unsignedinteger):
        return image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max)
    if np.issubdtype(image.dtype, np.signedinteger):
        if image.min() < 0:
            raise ValueError(f"{name} has negative values; expected intensities >= 0 for dtype {image.dtype}")
        return image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max)
    if np.issubdtype(image.dtype, np.floating):
        if not np.all(np.isfinite(image)):
            raise ValueError(f"{name} contains NaN or infinite values")
        return image.astype(np.float32, copy=False)
    raise TypeError(f"{name} must be an integer, bool or float array, got dtype {image.dtype}")
