"""Build the Cython extensions: the exact one-pass d1/d2 kernel (ext/_d1d2.pyx) and the
cubic-spline sampling loop of the elastic deformation (ext/_warp.pyx), the relabelling of
training tiles by connected regions (ext/_regions.pyx) and the ISBI 2012 challenge
metrics' hot loops (ext/_challenge.pyx).

Metadata lives in pyproject.toml; this file only describes the compiled part, as in
seung-lab/edt. OpenMP is used for the row/column loops where the compiler supports it.
"""
import os
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

# UNET_REF_BOUNDSCHECK=1 builds the kernel with Cython's bounds and wraparound checks on,
# to run the property tests against a checked build (see README, developer notes).
checked = os.environ.get("UNET_REF_BOUNDSCHECK", "0") == "1"

if sys.platform.startswith("linux"):
    compile_args, link_args = ["-O3", "-fopenmp"], ["-fopenmp"]
elif sys.platform == "win32":
    compile_args, link_args = ["/O2", "/openmp"], []
else:  # macOS clang ships without OpenMP: the prange loops then run serially
    compile_args, link_args = ["-O3"], []

extensions = [
    Extension(
        f"unet_ref.{name}",
        [f"ext/{name}.pyx"],
        include_dirs=[np.get_include(), "ext"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        depends=["ext/_types.pxd", "ext/_taps.h"],  # shared by the kernels (and in the sdist)
    )
    for name in ("_d1d2", "_warp", "_regions", "_challenge")
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        include_path=["ext"],
        compiler_directives={
            "boundscheck": checked,
            "wraparound": checked,
            "initializedcheck": checked,
            "cdivision": True,
        },
    )
)
