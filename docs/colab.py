# %% [markdown]
# # U-Net on ISBI 2012, on a Colab GPU
#
# The paper's network (Ronneberger, Fischer, Brox, MICCAI 2015) trained on the ISBI 2012
# EM slices with `unet_ref`, predicted with overlap-tile and scored like the challenge.
# Steps: install, check the GPU, run the demo (synthetic data, two minutes), download
# ISBI 2012, train the paper's configuration, predict and score.
#
# On Colab choose *Runtime > Change runtime type > GPU* first. The notebook also runs on a
# CPU, slowly. This file is `docs/colab.py` of the project; `docs/colab.ipynb` is made from
# it by `python docs/make_figures.py colab.ipynb`, and the tests run it top to bottom with
# `UNET_REF_COLAB_TINY=1` (a tiny network, a few steps), so that it cannot rot.

# %%
import importlib.util
import os
import pathlib
import subprocess
import sys

TINY = os.environ.get("UNET_REF_COLAB_TINY") == "1"  # the tests' tiny run on a CPU
# Where to install unet_ref from: the Git address of the project (pip's "git+" form
# accepts https://... and a local path).
REPO_URL = os.environ.get("UNET_REF_REPO", "")

if importlib.util.find_spec("unet_ref") is None:
    if not REPO_URL:
        raise SystemExit("set REPO_URL above (or the UNET_REF_REPO environment variable) to the Git "
                         "address of unet_ref, e.g. https://github.com/<owner>/unet_ref")
    # Colab's TensorFlow is preinstalled and unet_ref depends on plain `tensorflow`, so pip
    # keeps it: nothing is installed twice. (On your own CUDA machine: "unet_ref[and-cuda]".)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", f"git+{REPO_URL}"], check=True)

# %% [markdown]
# ## Is there a GPU?

# %%
import tensorflow as tf

gpus = tf.config.list_physical_devices("GPU")
print("TensorFlow", tf.__version__, "| GPUs:", gpus or "none (Runtime > Change runtime type > GPU)")

# %% [markdown]
# ## The demo: synthetic data, no download
#
# `unet-ref demo` trains the tutorial network on synthetic EM-like images for about two
# minutes on a CPU (much less on a GPU), predicts held-out images and writes a panel.

# %%
import matplotlib.pyplot as plt

demo = ["unet-ref", "demo", "--out", "demo"] + (["--epochs", "1", "--steps-per-epoch", "2"] if TINY else [])
subprocess.run(demo, check=True)
plt.figure(figsize=(12, 6))
plt.imshow(plt.imread("demo/panel.png"))
plt.axis("off")
plt.show()

# %% [markdown]
# ## ISBI 2012
#
# The 30 labelled training slices of the ISBI 2012 challenge (A. Cardona et al., PLoS
# Biology 8(10), 2010; I. Arganda-Carreras et al., Frontiers in Neuroanatomy 9, 2015),
# downloaded as PNG pairs from the copy in the zhixuhao/unet repository on GitHub
# (`data/membrane/train`). Labels: 255 = cell, 0 = membrane.

# %%
import urllib.request

DATA = pathlib.Path(os.environ.get("UNET_REF_ISBI", "isbi2012"))
if not (DATA / "train" / "label").is_dir():
    source = "https://raw.githubusercontent.com/zhixuhao/unet/master/data/membrane/train"
    for kind in ("image", "label"):
        (DATA / "train" / kind).mkdir(parents=True, exist_ok=True)
        for i in range(30):
            urllib.request.urlretrieve(f"{source}/{kind}/{i}.png", DATA / "train" / kind / f"{i}.png")
print(len(list((DATA / "train" / "image").glob("*.png"))), "slices in", DATA)

# %% [markdown]
# ## Train the paper's configuration
#
# 64 filters, depth 4, one 572 x 572 tile per step, SGD with momentum 0.99, the weight map
# (w0 = 10, sigma = 5), elastic deformations; the last 5 slices are held out. 100 epochs of
# 200 steps are 20,000 steps, about 1.3-2.5 hours on a Colab T4 (estimated from the
# network's 0.9 TFLOP per step, not measured). A Colab session can end before that: point
# `out` at your Google Drive and run this cell again to resume from the last epoch.

# %%
from unet_ref.train import resolve_config, train

settings = dict(data=str(DATA), val_count=5, epochs=100, steps_per_epoch=200, out="runs/paper", verbose=1)
if TINY:
    settings.update(base_filters=2, epochs=1, steps_per_epoch=2, validation_steps=1, val_pixel_error=False,
                    verbose=0)
config = resolve_config("paper", settings)
model, history = train(config)

# %% [markdown]
# ## Predict with overlap-tile and score like the challenge
#
# The held-out slices, predicted tile by tile with mirrored borders (and the 8 flips and
# rotations averaged), then the challenge's pixel, Rand and warping errors and V_Rand /
# V_Info next to the paper's Table 1 (which is on the 30 hidden test slices: a guide, not
# the same test).

# %%
import numpy as np

from unet_ref import challenge_scores
from unet_ref.challenge import format_scores
from unet_ref.runs import load_run
from unet_ref.tiling import predict_cells
from unet_ref.train import load_data

model, config = load_run("runs/paper")
_, _, val_images, val_labels = load_data(config)
cells = np.stack([c for _, c in predict_cells(model, val_images, tta=not TINY)])
print(format_scores(challenge_scores(cells, np.stack(val_labels) > 0), name="held-out slices"))

fig, axes = plt.subplots(1, 3, figsize=(15, 5))
for ax, picture, title in zip(axes, (val_images[0], cells[0], val_labels[0]), ("image", "P(cell)", "truth")):
    ax.imshow(picture, cmap="gray")
    ax.set_title(title)
    ax.axis("off")
plt.show()
