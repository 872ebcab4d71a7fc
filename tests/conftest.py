"""Shared test fixtures: the ISBI 2012 data beside the project, and a quiet TensorFlow."""
import os
import pathlib

import pytest

# TensorFlow: two threads at most (the CI machine has 2 cores), no INFO chatter.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")

ROOT = pathlib.Path(__file__).resolve().parents[1]
ISBI_DIR = pathlib.Path(os.environ.get("UNET_REF_ISBI", ROOT.parent / "shared" / "data" / "isbi2012"))


@pytest.fixture(scope="session")
def isbi_dir():
    """Path of the ISBI 2012 PNG folders; skips the test when the data is absent."""
    if not (ISBI_DIR / "train" / "label").is_dir():
        pytest.skip(f"ISBI 2012 data not found at {ISBI_DIR} (set UNET_REF_ISBI to its folder)")
    return ISBI_DIR


@pytest.fixture(scope="session")
def isbi_label_paths(isbi_dir):
    """The 25 ISBI training label PNGs, sorted by slice number."""
    return sorted((isbi_dir / "train" / "label").glob("*.png"), key=lambda p: int(p.stem))
