"""sheetgpt.exact: deterministic kernels agree with numpy to rounding and do not depend on BLAS."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from sheetgpt import exact


@pytest.mark.parametrize(("sa", "sb"), [((3, 5), (5, 7)), ((2, 4, 3), (2, 3, 6)), ((4, 3), (2, 3, 9000))])
def test_matmul_equals_numpy_to_rounding(sa, sb):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    got, want = exact.matmul(a, b), np.matmul(a, b)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * sa[-1])


def test_matmul_sums_in_index_order():
    # 1e16 + 1 - 1e16 in order 0, 1, 2 gives 0 (the 1 is lost); any other grouping may not
    a = np.array([[1e16, 1.0, -1e16]])
    b = np.ones((3, 1))
    assert exact.matmul(a, b)[0, 0] == ((1e16 + 1.0) - 1e16)


def test_matmul_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="do not match"):
        exact.matmul(np.ones((2, 3)), np.ones((4, 2)))


def test_scalar_functions_match_the_c_library_bit_for_bit():
    x = np.array([-800.0, -1.5, -1e-9, 0.0, 0.3, 1.0, 20.0, 710.0, np.nan])
    e = exact.exp(x)
    assert e[-2] == math.inf and np.isnan(e[-1])
    assert all(e[i] == math.exp(v) for i, v in enumerate(x[:-2]))
    assert all(exact.tanh(x)[i] == math.tanh(v) for i, v in enumerate(x[:-1]))
    lg = exact.log(np.array([0.0, 1e-300, 2.0, -1.0]))
    assert lg[0] == -math.inf and lg[1] == math.log(1e-300) and lg[2] == math.log(2.0) and np.isnan(lg[3])
    assert exact.exp(np.float64(1.0)) == math.e


def test_matmul_bits_do_not_depend_on_the_blas_kernel():
    code = (
        "import numpy as np, hashlib; from sheetgpt import exact; r = np.random.default_rng(1); "
        "a, b = r.standard_normal((7, 768)), r.standard_normal((768, 300)); "
        "print(hashlib.sha256(exact.matmul(a, b).tobytes()).hexdigest())"
    )
    seen = set()
    for core in ("Haswell", "SkylakeX", "Sandybridge"):
        env = dict(os.environ, OPENBLAS_CORETYPE=core, OPENBLAS_NUM_THREADS="2")
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        seen.add(run.stdout)
    assert len(seen) == 1


def test_total_sums_columns_in_row_order_then_rounds_once():
    # the expected value is written out by hand: column sums in row order, then one correct rounding
    x = np.array([[1e16, 1.0, 3.0], [1.0, -1e16, 0.5], [-1e16, 1e16, 0.25]])
    columns = [(1e16 + 1.0) + -1e16, (1.0 + -1e16) + 1e16, (3.0 + 0.5) + 0.25]
    assert exact.total(x) == math.fsum(columns)
    assert exact.total(np.asfortranarray(x)) == exact.total(x)  # memory layout does not matter
    assert exact.total(x[None]) == exact.total(x)  # nor leading axes of length 1
    assert exact.total(np.array([0.1] * 10)) == 1.0  # a vector: correctly rounded (plain adds give 0.9999999999999999)
