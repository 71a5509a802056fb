"""C = A @ B (or A @ Bᵀ) inside numba kernels, through numpy's own BLAS.

numba's np.dot calls SciPy's OpenBLAS, measured 1.7-2× slower than numpy's on the convolution shapes of
workload c (16×72 @ 72×888: 28 against 50 GFLOP/s on one core). `gemm` calls numpy's cblas_?gemm instead,
by a symbol name registered with LLVM when this module is imported, so cached kernels link to it in every
process. Without a cblas in numpy's BLAS it falls back to a plain loop (correct, slower).
"""
import ctypes

import numpy as np
from llvmlite import binding, ir
from numba import njit, types
from numba.extending import intrinsic

SYMBOLS = {4: "layerboard_cblas_sgemm", 8: "layerboard_cblas_dgemm"}


def _find():
    """{itemsize: address} of cblas_sgemm/cblas_dgemm in the BLAS numpy loaded, or {} when there is none."""
    try:
        from threadpoolctl import threadpool_info
        np.ones((2, 2)) @ np.ones((2, 2))                     # make sure numpy's BLAS is loaded
        infos = [i for i in threadpool_info() if i["user_api"] == "blas" and "numpy" in i["filepath"]]
        lib = ctypes.CDLL(infos[0]["filepath"]) if infos else None
    except (OSError, ImportError, IndexError):
        return {}
    found = {}
    for size, base in ((4, "cblas_sgemm"), (8, "cblas_dgemm")):
        for name in (f"scipy_{base}64_", f"scipy_{base}", f"{base}64_", base):  # numpy ≥ 2 wheels, then plain
            fn = getattr(lib, name, None) if lib is not None else None
            if fn is not None:
                found[size] = ctypes.cast(fn, ctypes.c_void_p).value
                break
    return found if len(found) == 2 else {}


_ADDR = _find()          # integers are passed as 64-bit: right for ILP64 and, on x86-64, for 32-bit BLAS too
HAVE_CBLAS = bool(_ADDR)
for _size, _addr in _ADDR.items():
    binding.add_symbol(SYMBOLS[_size], _addr)


@intrinsic
def _cblas(typingctx, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, acc):
    """cblas_?gemm(RowMajor, ta ? Trans : NoTrans, tb ? Trans : NoTrans, M, N, K, 1, A, lda, B, ldb, acc ? 1 : 0,
    C, ldc)."""
    sig = types.void(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, acc)
    wide = A.dtype == types.float64

    def codegen(context, builder, signature, args):
        ta_, tb_, M_, N_, K_, A_, lda_, B_, ldb_, C_, ldc_, acc_ = args
        i32, i64 = ir.IntType(32), ir.IntType(64)
        ft = ir.DoubleType() if wide else ir.FloatType()
        p = ir.PointerType(ft)
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, i64, ft, p, i64, p, i64, ft, p, i64])
        fn = builder.module.globals.get(SYMBOLS[8 if wide else 4]) or ir.Function(
            builder.module, fnty, SYMBOLS[8 if wide else 4])
        data = [context.make_array(t)(context, builder, v).data for t, v in zip(signature.args[5:11:2], (A_, B_, C_))]

        def trans(flag):
            return builder.select(builder.icmp_signed("!=", flag, ir.Constant(i64, 0)), ir.Constant(i32, 112),
                                  ir.Constant(i32, 111))
        beta = builder.select(builder.icmp_signed("!=", acc_, ir.Constant(i64, 0)), ir.Constant(ft, 1.0),
                              ir.Constant(ft, 0.0))
        builder.call(fn, [ir.Constant(i32, 101), trans(ta_), trans(tb_), M_, N_, K_, ir.Constant(ft, 1.0),
                          data[0], lda_, data[1], ldb_, beta, data[2], ldc_])
        return context.get_dummy_value()
    return sig, codegen


@njit(cache=True, nogil=True)
def _loop(a, b, c, tb=False, ta=False, acc=False):
    """The fallback: c = op(a) @ op(b) (c += … when acc), op transposing when ta / tb."""
    if not acc:
        c[...] = 0
    M, N = c.shape
    K = a.shape[0] if ta else a.shape[1]
    for i in range(M):
        for k in range(K):
            v = a[k, i] if ta else a[i, k]
            for j in range(N):
                c[i, j] += v * (b[j, k] if tb else b[k, j])


@njit(cache=True, nogil=True)
def _ld(a):
    """a's leading dimension for BLAS (elements between rows), or −1 when its rows are not unit-stride."""
    r, c = a.shape
    if c > 1 and a.strides[1] != a.itemsize:
        return -1
    if r <= 1:
        return max(c, 1)
    ld = a.strides[0] // a.itemsize
    return ld if ld >= max(c, 1) and a.strides[0] % a.itemsize == 0 else -1


if HAVE_CBLAS:
    @njit(cache=True, nogil=True)
    def gemm(a, b, c, tb=False, ta=False, acc=False):
        """c = op(a) @ op(b), or c += … when acc; op(v) = vᵀ when ta / tb. Float 2-D arrays of one dtype whose
        rows are unit-stride (C-contiguous, or row slices and column blocks of such arrays) go to BLAS, others
        to the loop."""
        la, lb, lc = _ld(a), _ld(b), _ld(c)
        if la < 0 or lb < 0 or lc < 0:
            _loop(a, b, c, tb, ta, acc)
            return
        M, N = c.shape
        K = a.shape[0] if ta else a.shape[1]
        _cblas(np.int64(ta), np.int64(tb), np.int64(M), np.int64(N), np.int64(K), a, np.int64(la), b,
               np.int64(lb), c, np.int64(lc), np.int64(acc))
else:
    gemm = _loop
