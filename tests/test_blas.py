"""engine.blas: one BLAS thread for small calls, the start-up count back for large ones."""

import scipy.linalg  # noqa: F401  (loads scipy's own OpenBLAS, so both libraries are seen)
from threadpoolctl import threadpool_info

from engine import blas


def _blas_threads() -> set[int]:
    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


def test_single_threaded_and_back():
    before = _blas_threads()
    with blas.single_threaded() as all_threads:
        assert _blas_threads() == {1}
        with all_threads():
            assert _blas_threads() == {max(before)}
        assert _blas_threads() == {1}
    assert _blas_threads() == before
