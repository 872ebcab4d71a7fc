"""Figures of the data chapter: an augmented sample, and synthetic data beside ISBI 2012.

matplotlib with the Agg backend (no display needed); files are written atomically (a
temporary file in the same folder, then os.replace), so a killed run never leaves half a
PNG. The docs' make_figures.py calls these functions.
"""
import pathlib

import numpy as np

from unet_ref.files import atomic_write

__all__ = ["plot_augmentation", "plot_synthetic_vs_isbi", "label_colors"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    path = pathlib.Path(path)
    try:
        with atomic_write(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        _pyplot().close(fig)
    return path


def label_colors(labels, seed=0):
    """(H, W, 3) float RGB: a random colour per instance, black membrane (0)."""
    labels = np.asarray(labels)
    palette = np.random.default_rng(seed).uniform(0.25, 1.0, (int(labels.max()) + 1, 3))
    palette[0] = 0.0
    return palette[labels]


def plot_augmentation(image, labels, seed, path, *, w0=10.0, sigma=5.0):
    """Image, its elastic deformation, the warped instance labels and their weight map.

    Parameters
    ----------
    image : (H, W) array
    labels : (H, W) int
        Instance labels of `image` (0 = membrane).
    seed : int
        Seed of the random transform (`augment` with numpy.random.default_rng(seed)).
    path : str or Path
        Output PNG.
    w0, sigma : float
        Weight map parameters (paper: 10, 5).

    Returns
    -------
    pathlib.Path of the written file.
    """
    from unet_ref.augment import augment
    from unet_ref.images import normalize_image
    from unet_ref.weights import weight_map

    warped_image, warped_labels = augment(image, labels, np.random.default_rng(seed), gray_values=False)
    weights = weight_map(labels=warped_labels, w0=w0, sigma=sigma)
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4))
    panels = [(normalize_image(image), "image", "gray"),
              (warped_image, f"elastic deformation (seed {seed})", "gray"),
              (label_colors(warped_labels), f"warped instance labels ({len(np.unique(warped_labels)) - 1} cells)", None),
              (weights, f"weight map of the warped labels (w0={w0:g}, sigma={sigma:g})", "viridis")]
    for ax, (array, title, cmap) in zip(axes, panels):
        shown = ax.imshow(array, cmap=cmap, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.colorbar(shown, ax=axes[3], fraction=0.046, pad=0.02)
    return _save(fig, path)


def plot_synthetic_vs_isbi(path, isbi_image=None, isbi_label=None, seed=0, size=512):
    """Synthetic image and mask (top row) beside an ISBI 2012 slice and its label (bottom).

    `isbi_image` / `isbi_label`: (H, W) arrays of one ISBI slice, e.g. from
    `unet_ref.datasets.load_isbi`; without them only the synthetic row is drawn.
    """
    from unet_ref.synthetic import synthetic_sample

    image, mask, labels = synthetic_sample(size, seed=seed)
    rows = [(image, mask, f"synthetic (seed {seed}, {labels.max()} cells)")]
    if isbi_image is not None:
        rows.append((np.asarray(isbi_image), np.asarray(isbi_label), "ISBI 2012"))
    plt = _pyplot()
    fig, axes = plt.subplots(len(rows), 2, figsize=(9, 4.6 * len(rows)), squeeze=False)
    for (row_image, row_mask, name), (ax_image, ax_mask) in zip(rows, axes):
        ax_image.imshow(row_image, cmap="gray", interpolation="nearest")
        ax_image.set_title(f"{name}: image", fontsize=10)
        ax_mask.imshow(row_mask, cmap="gray", interpolation="nearest")
        ax_mask.set_title(f"{name}: mask (white = cell)", fontsize=10)
        ax_image.axis("off")
        ax_mask.axis("off")
    return _save(fig, path)
