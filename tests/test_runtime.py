"""`keras_face.runtime.keep_freed_memory`: large blocks are reused, not mapped afresh.

Each case runs in a fresh process: the setting is for the whole process and cannot be
undone.
"""

import subprocess
import sys
import textwrap

import pytest

# Allocates, touches and frees a 64 MiB block ten times through glibc's malloc, and prints
# the minor page faults of the last nine rounds (the first one touches new pages anyway).
_ROUNDS = textwrap.dedent(
    """
    import ctypes, resource, sys
    import keras_face.runtime

    if sys.argv[1] == "keep":
        print("applied", keras_face.runtime.keep_freed_memory())
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    size = 64 * 2**20
    faults = None
    for round in range(10):
        block = libc.malloc(size)
        ctypes.memset(block, 1, size)
        libc.free(block)
        if round == 0:
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    print("faults", resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
    """
)


def run_rounds(mode):
    output = subprocess.run(
        [sys.executable, "-c", _ROUNDS, mode], capture_output=True, text=True, check=True
    ).stdout
    values = dict(line.split() for line in output.splitlines())
    return values


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_freed_blocks_are_reused_instead_of_mapped_again():
    default = run_rounds("default")
    kept = run_rounds("keep")
    assert kept["applied"] == "True"
    pages = 64 * 2**20 // 4096
    # By default each round maps a fresh block: about one fault per 4 KiB page (fewer with
    # transparent huge pages, which would then fail the first assertion: say so).
    assert int(default["faults"]) > 9 * pages // 2, default
    # Kept: the freed block is reused, no new pages.
    assert int(kept["faults"]) < pages // 10, kept


def test_does_nothing_off_linux(monkeypatch):
    import keras_face.runtime

    monkeypatch.setattr(sys, "platform", "darwin")
    assert keras_face.runtime.keep_freed_memory() is False
