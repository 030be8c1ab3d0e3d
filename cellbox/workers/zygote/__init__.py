"""The Python zygote: a preloaded, single-threaded interpreter that forks sandboxed workers.

``server`` (the fork loop and each child's confinement steps, run in the sandbox) ·
``confine`` (the system calls that confine a child, following the sandbox policy) ·
``warm_up`` (the preloaded stack used once before forking, so its first-use memory is shared) ·
``messages`` (the control protocol, imported by the zygote and by its client,
:mod:`cellbox.process.zygote_client`). Run as ``python -m cellbox.workers.zygote``.

Nothing is imported here: the server imports ``messages`` without the data stack.
"""

# Thread-pool sizes of the numeric libraries. A process that forks must stay single-threaded
# (a fork copies one thread; a pool's lock held by another is never released), so the
# zygote and the workers it forks set each to 1 before anything imports numpy.
BLAS_THREAD_VARS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
