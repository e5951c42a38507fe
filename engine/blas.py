"""Thread control for the BLAS/LAPACK libraries under numpy and scipy (via threadpoolctl).

With two OpenBLAS threads, small LAPACK calls (eigh of a few hundred rows, QR and Gram
matrices of thin blocks) stall at random for 10-100 ms on this machine kind, idle or not,
while large factorizations and solves gain ~1.6x from the second thread. Code that mixes
both runs the small ones single-threaded and re-enables threads around the large ones.
"""

from __future__ import annotations

import contextlib

from threadpoolctl import ThreadpoolController


@contextlib.contextmanager
def single_threaded():
    """Context in which numpy's and scipy's BLAS use one thread.

    Yields ``all_threads``: a function returning a context that, inside this one, gives the
    BLAS libraries back the threads they had on entry (for the few large calls).
    """
    ctl = ThreadpoolController()  # looks up the libraries loaded now (~1 ms)
    full = max((c.num_threads for c in ctl.lib_controllers if c.user_api == "blas"), default=1)
    with ctl.limit(limits=1, user_api="blas"):
        yield lambda: ctl.limit(limits=full, user_api="blas")
