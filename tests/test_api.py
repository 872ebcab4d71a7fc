"""The public API named in the brief resolves, and importing the package stays light."""
import subprocess
import sys

import unet_ref

BRIEF_NAMES = ["d1_d2", "weight_map", "reference", "build_unet", "output_size", "valid_input_size", "predict_tiled",
               "challenge_scores"]


def test_every_public_name_resolves():
    for name in BRIEF_NAMES + unet_ref.__all__:
        assert getattr(unet_ref, name) is not None, name
    assert callable(unet_ref.weight_map) and callable(unet_ref.reference.d1_d2)


def test_weight_map_does_not_import_tensorflow():
    # the weight map, the sizes and the data tools are usable without paying for TensorFlow
    code = "import sys, numpy as np, unet_ref; unet_ref.weight_map(np.eye(8, dtype=bool)); unet_ref.output_size(572); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_package_and_the_command_line_do_not_import_the_zarr_extra():
    # dask, zarr and ome-zarr are an optional extra: only a zarr input loads them
    code = ("import sys, unet_ref, unet_ref.cli; unet_ref.cli.build_parser(); "
            "print(sorted(m for m in ('dask', 'distributed', 'zarr', 'ome_zarr') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
