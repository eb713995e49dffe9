"""Process settings that make compiled CPU steps faster.

XLA's CPU runtime (JAX on a CPU, TensorFlow's `jit_compile=True`) allocates the
temporary buffers of a compiled step as one block each call. glibc's malloc serves
blocks above its mmap threshold (at most 32 MiB) with a fresh `mmap` and unmaps them on
`free`, so every step touches fresh pages: a MobileFaceNet ArcFace training step on JAX
(batch 8, 2-core CPU) took 86,000 page faults and 387 ms, against 433 faults and 249 ms
once freed memory is kept for reuse. `keep_freed_memory` makes that setting for the whole
process; `benchmarks/backbones.py --keep-freed-memory` measures it against PyTorch (which
then gets it too, being in the same process).
"""

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory"]

# From glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# The largest value M_TRIM_THRESHOLD takes (an int): never give the heap's top back.
_NEVER_TRIM = 2**31 - 1


def keep_freed_memory():
    """Make glibc's malloc keep freed memory for reuse instead of returning it to the system.

    Sets `M_MMAP_MAX = 0` (large blocks come from the heap, not from their own `mmap`) and
    the largest `M_TRIM_THRESHOLD` (the heap is not shrunk) with `mallopt`, for the whole
    process and every framework in it: the same as starting Python with
    `GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647`. Call
    it once, before training; it cannot be undone in the process. The process then keeps
    its peak memory until it exits (freed blocks are reused, not returned), which suits a
    training or evaluation job. Measured on JAX, batch 8, 2-core CPU, against PyTorch in
    the same process (`benchmarks/backbones.py --compare-torch --keep-freed-memory`,
    5 rounds): MobileFaceNet training 0.86x -> 1.50x PyTorch's speed, VarGFaceNet
    training 0.48x -> 0.79x, IR-ResNet-50 training 0.72x -> 0.77x. TensorFlow's XLA
    steps were not faster with it (their buffers come from TensorFlow's allocator).

    Returns:
        bool. `True` where the setting was made (Linux with glibc); `False` elsewhere
        (macOS, Windows, musl), where nothing is changed.

    Raises:
        RuntimeError: glibc refused one of the settings.

    Example:
        ```python
        import keras_face.runtime

        keras_face.runtime.keep_freed_memory()  # True on Linux
        ```
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    gnu_get_libc_version = getattr(libc, "gnu_get_libc_version", None)
    if gnu_get_libc_version is None or not hasattr(libc, "mallopt"):
        return False  # not glibc (musl): its malloc has no such settings
    for option, value in ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, _NEVER_TRIM)):
        if libc.mallopt(option, value) != 1:
            raise RuntimeError(f"glibc's mallopt refused option {option} = {value}")
    return True
