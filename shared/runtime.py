"""Process-wide settings every service applies at start, before numpy or JAX do any work.

- glibc malloc: by default large blocks (a 1 MB request body) are mmapped and returned to the OS on
  free, so every request page-faults its buffers in again. Raising the mmap and trim thresholds
  keeps them in the heap (measured: decoding a 1 MB body went from ~1.5 ms to ~0.1 ms).
- XLA: on a small machine shared by several services, one intra-op thread per process beats
  Eigen's thread pool fighting the other processes. Set XLA_FLAGS yourself to override.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 64 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024
SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def configure_process(*, single_thread_xla: bool = True) -> None:
    """Tunes malloc and (unless XLA_FLAGS is set) pins XLA to one thread. Call before importing jax."""
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        try:
            libc = ctypes.CDLL(libc_name)
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
        except (OSError, AttributeError):  # not glibc (musl, macOS): keep the defaults
            pass
    if single_thread_xla:
        os.environ.setdefault("XLA_FLAGS", SINGLE_THREAD_XLA)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
