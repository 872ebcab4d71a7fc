# %% [markdown]
# # U-Net on ISBI 2012, on a Colab GPU
#
# The paper's network (Ronneberger, Fischer, Brox, MICCAI 2015) trained on the ISBI 2012
# EM slices with `unet_ref`, predicted with overlap-tile and scored like the challenge.
# Steps: install, check the GPU, run the demo (synthetic data, two minutes), download
# ISBI 2012, train the paper's configuration, predict and score.
#
# **Before you start**, on your own computer, in a copy of the project (a clone or its
# unpacked files), build its source distribution, the one file Colab installs it from:
#
#     python -m pip install build && python -m build --sdist
#
# This writes `dist/unet_ref-0.1.0.tar.gz`. A source distribution and not a wheel: a
# wheel holds code compiled for your Python and system, while Colab compiles the sdist for
# its own (a minute or two). The first code cell asks you to upload the file; or put it in
# the folder `unet_ref` of your Google Drive and set `USE_DRIVE = True`. If you have the
# project's Git address, set `SOURCE = "git+https://..."` instead.
#
# On Colab choose *Runtime > Change runtime type > GPU* first. The notebook also runs on a
# CPU, slowly. This file is `docs/colab.py` of the project; `docs/colab.ipynb` is made from
# it by `python docs/make_figures.py colab.ipynb`, and the tests run it top to bottom with
# `UNET_REF_COLAB_TINY=1` (a tiny network, a few steps), starting from the sdist built as
# above, so that it cannot rot.

# %% [script]
# Only in docs/colab.py: each `shell(f"...")` line below is a `!...` line in the notebook
# (make_figures.py converts it), which Colab runs in a shell, showing its output as it
# comes. Run as a script, this file does the same with a subprocess.
import subprocess
import sys


def shell(command):
    sys.stdout.flush()
    subprocess.run(command, shell=True, check=True)


# %%
import importlib.util
import os
import pathlib

USE_DRIVE = False  # True: mount your Google Drive and keep everything in MyDrive/unet_ref
SOURCE = ""  # empty: the sdist you upload (or keep in Drive); or a Git address "git+https://..."
TINY = os.environ.get("UNET_REF_COLAB_TINY") == "1"  # the tests' tiny run on a CPU

try:
    from google.colab import drive, files
except ImportError:  # not on Colab (the tests)
    drive = files = None

if USE_DRIVE:
    drive.mount("/content/drive")
    OUT = pathlib.Path("/content/drive/MyDrive/unet_ref")  # kept after the session ends
else:
    OUT = pathlib.Path.cwd() / "unet_ref"  # in this session only: gone when it ends
OUT.mkdir(parents=True, exist_ok=True)
print("This notebook writes everything to", OUT)

if importlib.util.find_spec("unet_ref") is None:
    if not SOURCE:
        # the sdist: uploaded earlier (into the working folder), kept in OUT, or uploaded now
        found = sorted([*pathlib.Path.cwd().glob("unet_ref-*.tar.gz"), *OUT.glob("unet_ref-*.tar.gz")],
                       key=lambda path: path.stat().st_mtime)
        if not found and files is not None:
            print("Upload the unet_ref-*.tar.gz from your dist/ folder (the first text cell says how to build it)")
            found = [pathlib.Path(name).resolve() for name in files.upload()]
        if not found:
            raise SystemExit("no unet_ref-*.tar.gz here or in " + str(OUT) + ": build it as the first text cell "
                             "says, or set SOURCE to the project's Git address")
        SOURCE = str(found[-1])  # the newest
    # Colab's TensorFlow and Keras are preinstalled and unet_ref depends on plain
    # `tensorflow`, so pip keeps them: nothing is installed twice.
    shell(f'pip install "{SOURCE}"')
    importlib.invalidate_caches()

import unet_ref

print("unet_ref", unet_ref.__version__, "from", pathlib.Path(unet_ref.__file__).parent)

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

DEMO_ARGS = "--epochs 1 --steps-per-epoch 2" if TINY else ""
shell(f'unet-ref demo --out "{OUT}/demo" {DEMO_ARGS}')
plt.figure(figsize=(12, 6))
plt.imshow(plt.imread(OUT / "demo" / "panel.png"))
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
# (w0 = 10, sigma = 5), elastic deformations; the last 5 slices (25-29) are held out. 100 epochs of
# 200 steps are 20,000 steps, about 1.3-2.5 hours on a Colab T4 (estimated from the
# network's 0.9 TFLOP per step, not measured). A Colab session can end before that: with
# `USE_DRIVE = True` the run is kept in your Drive; run this cell again (in a new session,
# the cells above it first) to resume from the last epoch.

# %%
from unet_ref.train import resolve_config, train

RUN = OUT / "paper"
settings = dict(data=str(DATA), val_count=5, epochs=100, steps_per_epoch=200, out=str(RUN), verbose=1)
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

model, config = load_run(RUN)
_, _, val_images, val_labels = load_data(config)
cells = np.stack([c for _, c in predict_cells(model, val_images, tta=not TINY)])
print(format_scores(challenge_scores(cells, np.stack(val_labels) > 0), name="held-out slices"))

fig, axes = plt.subplots(1, 3, figsize=(15, 5))
for ax, picture, title in zip(axes, (val_images[0], cells[0], val_labels[0]), ("image", "P(cell)", "truth")):
    ax.imshow(picture, cmap="gray")
    ax.set_title(title)
    ax.axis("off")
plt.show()
