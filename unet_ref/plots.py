"""Every figure the project draws: the trainer's loss curve, the demo's panel, weight-map
images, and the tutorial's figures of data and augmentation.

The trainer (`unet_ref.callbacks`), the demo, the command line and the docs'
make_figures.py call these functions; none of them draws by itself. matplotlib runs with
the Agg backend (no display needed) and every file is written through
`unet_ref.files.atomic_write`, so a killed run never leaves half a PNG.
"""
import csv
import pathlib

import numpy as np

from unet_ref.files import atomic_write

__all__ = ["save_figure", "show", "label_colors", "save_colormapped", "plot_loss_curve", "plot_predictions",
           "plot_augmentation", "plot_synthetic_vs_isbi"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, dpi=110, tight=True):
    """Write a matplotlib figure atomically and close it; no "Software" metadata, so the
    PNG's bytes change only when the picture does. Returns the path."""
    path = pathlib.Path(path)
    try:
        with atomic_write(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png", metadata={"Software": None},
                        **({"bbox_inches": "tight"} if tight else {}))
    finally:
        _pyplot().close(fig)
    return path


def show(ax, image, title, cmap="gray", colorbar=False, **kwargs):
    """One image panel: no axes, a small title, optionally a colour bar."""
    shown = ax.imshow(image, cmap=cmap, interpolation="nearest", **kwargs)
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
    if colorbar:
        ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
    return shown


def save_colormapped(path, array, cmap="magma"):
    """An (H, W) array as a colour-mapped PNG, one pixel per element (e.g. a weight map)."""
    plt = _pyplot()
    with atomic_write(path) as tmp:
        plt.imsave(tmp, np.asarray(array), cmap=cmap, format="png")
    return pathlib.Path(path)


def plot_loss_curve(log_csv, png):
    """Training and validation loss (and validation pixel error) per epoch from the
    trainer's log.csv; a repeated epoch (a resumed run) counts once, with its last row."""
    with open(log_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    rows = list({row["epoch"]: row for row in rows}.values())
    if not rows:
        return None
    plt = _pyplot()
    epochs = [int(row["epoch"]) + 1 for row in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, style in (("loss", "-o"), ("val_loss", "-s")):
        if key in rows[0]:
            ax.plot(epochs, [float(row[key]) for row in rows], style, label=key, markersize=3)
    ax.set_xlabel("epoch")
    ax.set_ylabel("weighted cross-entropy")
    ax.set_yscale("log")
    if "val_pixel_error" in rows[0]:
        ax2 = ax.twinx()
        ax2.plot(epochs, [float(row["val_pixel_error"]) for row in rows], "-^", color="tab:green",
                 label="val_pixel_error", markersize=3)
        ax2.set_ylabel("validation pixel error")
        ax2.legend(loc="upper center")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, png, dpi=100, tight=False)


def plot_predictions(path, images, labels, cells, *, w0=10.0, sigma=5.0):
    """One row per image: input, ground truth, weight map of its labels, predicted P(cell).

    images, labels, cells: sequences of (H, W) arrays (labels: instance labels, cells:
    the predicted cell probability)."""
    from unet_ref.weights import weight_map

    plt = _pyplot()
    fig, axes = plt.subplots(len(images), 4, figsize=(12, 3 * len(images)), squeeze=False)
    for row, image, label, cell in zip(axes, images, labels, cells):
        label = np.asarray(label)
        show(row[0], np.squeeze(image), "input")
        show(row[1], label > 0, "ground truth (cell)")
        show(row[2], weight_map(labels=label, w0=w0, sigma=sigma), f"weight map (w0={w0:g}, sigma={sigma:g})",
             cmap="magma", colorbar=True)
        show(row[3], np.squeeze(cell), "prediction P(cell)", vmin=0, vmax=1)
    fig.tight_layout()
    return save_figure(fig, path, dpi=80, tight=False)


def label_colors(labels, seed=0):
    """(H, W, 3) float RGB: a random colour per instance, black membrane (0)."""
    labels = np.asarray(labels)
    palette = np.random.default_rng(seed).uniform(0.25, 1.0, (int(labels.max()) + 1, 3))
    palette[0] = 0.0
    return palette[labels]


def plot_augmentation(image, labels, seed, path, *, w0=10.0, sigma=5.0):
    """Image, its augmentation (elastic deformation, shift and one of the 8 flips/rotations),
    the warped instance labels and their weight map.

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
              (warped_image, f"elastic deformation, shift and flip/rotation (seed {seed})", "gray"),
              (label_colors(warped_labels), f"warped instance labels ({len(np.unique(warped_labels)) - 1} cells)", None),
              (weights, f"weight map of the warped labels (w0={w0:g}, sigma={sigma:g})", "viridis")]
    for ax, (array, title, cmap) in zip(axes, panels):
        show(ax, array, title, cmap=cmap, colorbar=cmap == "viridis")
    return save_figure(fig, path)


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
        show(ax_image, row_image, f"{name}: image")
        show(ax_mask, row_mask, f"{name}: mask (white = cell)")
    return save_figure(fig, path)
