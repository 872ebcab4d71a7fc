"""This machine's cores and TensorFlow's devices, as the command line, the kernels and the
Dask workers see them."""
import os
import sys

__all__ = ["available_cores", "import_tensorflow_quietly"]


def available_cores():
    """The cores this process may run on (a container or taskset may allow fewer than exist)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def import_tensorflow_quietly():
    """Import TensorFlow and set up its devices with their C++ start-up chatter (oneDNN and
    absl notices, the CUDA probe's "failed call to cuInit" on a machine without a GPU) sent
    to /dev/null: TF_CPP_MIN_LOG_LEVEL no longer silences it, and an error of ours should be
    the only line a user sees. `unet-ref train` says which devices it found."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow

            tensorflow.config.list_logical_devices()  # the device set-up, where the CUDA probe logs
    finally:
        os.dup2(saved, 2)
        os.close(saved)
