"""Process-wide settings every service applies at start, before numpy or JAX do any work.

- glibc malloc: by default large blocks (a 1 MB request body) are mmapped and returned to the OS on
  free, so every request page-faults its buffers in again. Raising the mmap and trim thresholds
  keeps them in the heap (measured: decoding a 1 MB body went from ~1.5 ms to ~0.1 ms).
- XLA: on a small machine shared by several services, one intra-op thread per process beats
  Eigen's thread pool fighting the other processes. Set XLA_FLAGS yourself to override.
- JAX on the CPU runs computations inline, without async dispatch. Our computations are small (a
  policy call on 16 observations, an SGD step on 128 items): handing each to XLA's worker thread
  and waiting for it costs more than it overlaps, and the waiting thread spins on a core the
  other services need. Measured (the DQN learner's update, 4 per dispatch): 0.20 instead of 0.26
  CPU ms per update at a slightly higher rate; the actor's batched policy call 125 instead of
  180 us. RLFLEET_JAX_ASYNC_DISPATCH=1 turns async dispatch back on.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 64 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024
SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def configure_process(*, uses_jax: bool = True) -> None:
    """Tunes malloc, pins XLA to one thread (unless XLA_FLAGS is set) and turns off JAX's async
    dispatch on the CPU. Call before JAX does any work."""
    configure_environment(uses_jax=uses_jax)
    if uses_jax and os.environ.get("RLFLEET_JAX_ASYNC_DISPATCH", "0") != "1":
        import jax  # only now: XLA_FLAGS above must be set before JAX starts its backend

        jax.config.update("jax_cpu_enable_async_dispatch", False)


def configure_environment(*, uses_jax: bool = True) -> None:
    """The part of ``configure_process`` that imports nothing (malloc, XLA_FLAGS, BLAS threads):
    a service calls it first, so that it can check its settings (and stop on bad ones) before it
    pays for importing JAX."""
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        try:
            libc = ctypes.CDLL(libc_name)
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
        except (OSError, AttributeError):  # not glibc (musl, macOS): keep the defaults
            pass
    if uses_jax:
        os.environ.setdefault("XLA_FLAGS", SINGLE_THREAD_XLA)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def child_preexec(nice: int = 0) -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen``: lower the child's priority by ``nice`` and (on
    Linux) have the kernel SIGKILL it when the thread that started it dies, so that no child
    outlives its parent, even one killed with SIGKILL. Start children from the main thread."""
    linux = sys.platform.startswith("linux")
    if not linux and nice == 0:
        return None
    libc = ctypes.CDLL(None, use_errno=True) if linux else None  # loaded before fork
    parent_pid = os.getpid()

    def preexec() -> None:
        if nice:
            os.nice(nice)
        if libc is None:
            return
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            os._exit(126)
        # The parent may have died between fork and prctl: then nobody would signal us.
        if os.getppid() != parent_pid:
            os._exit(125)

    return preexec


def die_with_parent(parent_pid: int) -> None:
    """From a child, at its start: (Linux) be SIGKILLed when the parent's thread that started
    us dies; exit at once if the parent is already gone. No ``preexec_fn`` is needed (a Python
    function run between fork and exec is unsafe in a process with threads, such as JAX's)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:
        os._exit(125)
