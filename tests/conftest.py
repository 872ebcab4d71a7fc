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
# .ci/run sets it: there a test that needs the data fails without it instead of skipping
REQUIRE_DATA = os.environ.get("UNET_REF_REQUIRE_DATA", "0") == "1"


def missing_data(reason):
    """Skip the test with `reason`, or fail it where UNET_REF_REQUIRE_DATA=1."""
    if REQUIRE_DATA:
        pytest.fail(f"{reason}; UNET_REF_REQUIRE_DATA=1 requires it", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def isbi_dir():
    """Path of the ISBI 2012 PNG folders; the test skips (or fails, `missing_data`) when the
    data is absent."""
    if not (ISBI_DIR / "train" / "label").is_dir():
        missing_data(f"ISBI 2012 data not found at {ISBI_DIR} (set UNET_REF_ISBI to its folder)")
    return ISBI_DIR


@pytest.fixture(scope="session")
def isbi_label_paths(isbi_dir):
    """The 25 ISBI training label PNGs, sorted by slice number."""
    return sorted((isbi_dir / "train" / "label").glob("*.png"), key=lambda p: int(p.stem))
