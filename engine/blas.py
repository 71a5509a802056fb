"""GEMM, the engine's one matrix product: c = op(a) @ op(b) (c += … with acc) in numba kernels and from Python.

Products of M·N·K ≥ SMALL go to numpy's own cblas_?gemm, called by a symbol name registered with LLVM when
this module is imported (numba's np.dot would call SciPy's OpenBLAS, measured 1.7-2× slower on the convolution
shapes of workload c: 16×72 @ 72×888, 28 against 50 GFLOP/s on one core). Smaller products, and every product
when numpy's BLAS has no cblas, run one loop. Cached kernels contain the call to the registered name, so the
numba cache is keyed on BLAS_ID (engine/_jitcache.py): a kernel cached where the symbol exists is never loaded
where it does not. Shapes and dtypes are checked (TypingError for dtypes and ranks, ValueError for shapes);
column-major operands go to BLAS transposed, other strided ones as contiguous copies.
"""
import ctypes

import numpy as np

from ._jit import errors, intrinsic, njit, on_ready, overload, types

SYMBOLS = {4: "layerboard_cblas_sgemm", 8: "layerboard_cblas_dgemm"}
SMALL = 4096            # M·N·K below this: the loop beats a BLAS call


class _DlInfo(ctypes.Structure):
    _fields_ = [("fname", ctypes.c_char_p), ("fbase", ctypes.c_void_p), ("sname", ctypes.c_char_p),
                ("saddr", ctypes.c_void_p)]


def _library_of(addr):
    """The file of the shared library holding addr (dladdr), or '?'."""
    try:
        dladdr = ctypes.CDLL(None).dladdr
        dladdr.argtypes, dladdr.restype = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)], ctypes.c_int
        info = _DlInfo()
        return info.fname.decode() if dladdr(addr, ctypes.byref(info)) and info.fname else "?"
    except (OSError, AttributeError):
        return "?"


def _libraries():
    """Handles to search for numpy's cblas: numpy's own extension module (on Linux and macOS dlsym on it searches
    the libraries it links, wherever they live: a wheel's numpy.libs, a distribution's libopenblas), then the
    BLAS libraries threadpoolctl sees inside numpy's folders (Windows wheels)."""
    try:
        core = getattr(np, "_core", None) or np.core
        yield ctypes.CDLL(core._multiarray_umath.__file__)
    except (OSError, AttributeError):
        pass
    try:
        from threadpoolctl import threadpool_info
        for i in threadpool_info():
            if i["user_api"] == "blas" and "numpy" in i["filepath"]:
                yield ctypes.CDLL(i["filepath"])
    except (OSError, ImportError):
        pass


def _find():
    """({itemsize: address} of cblas_sgemm/cblas_dgemm in the BLAS numpy links, or {}, a description of it)."""
    for lib in _libraries():
        found, names = {}, []
        for size, base in ((4, "cblas_sgemm"), (8, "cblas_dgemm")):
            for name in (f"scipy_{base}64_", f"scipy_{base}", f"{base}64_", base):  # numpy ≥ 2 wheels, then plain
                fn = getattr(lib, name, None)
                if fn is not None:
                    found[size] = ctypes.cast(fn, ctypes.c_void_p).value
                    names.append(name)
                    break
        if len(found) == 2:
            return found, f"{' '.join(names)} in {_library_of(found[4])}"
    return {}, "no cblas in numpy's BLAS"


_ADDR, _WHAT = _find()   # integers are passed as 64-bit: right for ILP64 and, on x86-64, for 32-bit BLAS too
HAVE_CBLAS = bool(_ADDR)
BLAS_ID = f"numpy {np.__version__}: {_WHAT}"        # what cached kernels were compiled against


def _add_symbols():
    from llvmlite import binding
    for size, addr in _ADDR.items():
        binding.add_symbol(SYMBOLS[size], addr)


on_ready(_add_symbols)          # with numba, before any kernel that calls them is loaded or compiled


@intrinsic
def _cblas(typingctx, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, acc):
    """cblas_?gemm(RowMajor, ta ? Trans : NoTrans, tb ? Trans : NoTrans, M, N, K, 1, A, lda, B, ldb, acc ? 1 : 0,
    C, ldc)."""
    _types_ok(A, B, C)
    sig = types.void(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, acc)
    wide = A.dtype == types.float64

    def codegen(context, builder, signature, args):
        from llvmlite import ir
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


def _types_ok(a, b, c):
    """TypingError unless the numba types a, b, c are 2-D arrays of one float dtype."""
    if not all(isinstance(t, types.Array) and t.ndim == 2 for t in (a, b, c)):
        raise errors.TypingError(f"gemm needs 2-D arrays, got {a}, {b}, {c}")
    if not (a.dtype == b.dtype == c.dtype and a.dtype in (types.float32, types.float64)):
        raise errors.TypingError(f"gemm needs float32 or float64 arrays of one dtype, got {a.dtype}, {b.dtype}, "
                                 f"{c.dtype}")


def _check_types(a, b, c):
    """Typing-time check (in numba kernels): three 2-D arrays of one float dtype."""


@overload(_check_types)
def _check_types_impl(a, b, c):
    _types_ok(a, b, c)
    return lambda a, b, c: None


@njit(cache=True, nogil=True)
def _loop(a, b, c, tb, ta, acc):
    """c = op(a) @ op(b) (c += … when acc) by plain loops; any strides."""
    M, N = c.shape
    K = a.shape[0] if ta else a.shape[1]
    if K == 0:
        if not acc:
            c[...] = 0
        return
    for i in range(M):
        if tb:                                                  # rows of a and b: dot products
            for j in range(N):
                s = (a[0, i] if ta else a[i, 0]) * b[j, 0]
                for k in range(1, K):
                    s += (a[k, i] if ta else a[i, k]) * b[j, k]
                c[i, j] = c[i, j] + s if acc else s
        else:                                                   # rows of b, scaled and added
            if not acc:
                for j in range(N):
                    c[i, j] = 0
            for k in range(K):
                v = a[k, i] if ta else a[i, k]
                for j in range(N):
                    c[i, j] += v * b[k, j]


@njit(cache=True, nogil=True)
def _layout(x):
    """(flip, ld): x as BLAS reads it, rows unit-stride (flip 0) or x transposed for column-major x (flip 1);
    ld −1 when neither (a copy is needed)."""
    r, c = x.shape
    s = x.itemsize
    if (c <= 1 or x.strides[1] == s) and x.strides[0] % s == 0:
        ld = max(c, 1) if r <= 1 else x.strides[0] // s
        if ld >= max(c, 1):
            return 0, ld
    if (r <= 1 or x.strides[0] == s) and x.strides[1] % s == 0:
        ld = max(r, 1) if c <= 1 else x.strides[1] // s
        if ld >= max(r, 1):
            return 1, ld
    return 0, -1


@njit(cache=True, nogil=True)
def _rows(a, b, c, lc, tb, ta, acc):
    """_cblas into c whose rows are unit-stride (leading dimension lc); a and b transposed when column-major,
    copied when neither."""
    fa, la = _layout(a)
    if la < 0:
        a = np.ascontiguousarray(a)
        fa, la = _layout(a)
    fb, lb = _layout(b)
    if lb < 0:
        b = np.ascontiguousarray(b)
        fb, lb = _layout(b)
    M, N = c.shape
    K = a.shape[0] if ta else a.shape[1]
    _cblas(np.int64(ta != fa), np.int64(tb != fb), np.int64(M), np.int64(N), np.int64(K), a, np.int64(la), b,
           np.int64(lb), c, np.int64(lc), np.int64(acc))


@njit(cache=True, nogil=True)
def _blas(a, b, c, tb, ta, acc):
    """BLAS for any c: row-major as it is, column-major as cᵀ = op(b)ᵀ op(a)ᵀ, other strides through a copy."""
    fc, lc = _layout(c)
    if lc < 0:
        t = np.ascontiguousarray(c) if acc else np.empty(c.shape, c.dtype)     # (M, N)
        _rows(a, b, t, max(t.shape[1], 1), tb, ta, acc)
        c[...] = t
    elif fc:
        _rows(b, a, c.T, lc, not ta, not tb, acc)                            # (N, M)
    else:
        _rows(a, b, c, lc, tb, ta, acc)


@njit(cache=True, nogil=True)
def gemm(a, b, c, tb=False, ta=False, acc=False):
    """c = op(a) @ op(b), or c += … when acc; op(v) = vᵀ when ta / tb. a, b, c: 2-D float32 or float64 arrays of
    one dtype, any strides; c must not overlap a or b."""
    _check_types(a, b, c)
    M, N = c.shape
    K = a.shape[0] if ta else a.shape[1]
    if (a.shape[1] if ta else a.shape[0]) != M or (b.shape[0] if tb else b.shape[1]) != N or \
            (b.shape[1] if tb else b.shape[0]) != K:
        raise ValueError("gemm: the shapes of op(a) (M, K), op(b) (K, N) and c (M, N) do not match")
    if HAVE_CBLAS and M * N * K >= SMALL:
        _blas(a, b, c, tb, ta, acc)
    else:
        _loop(a, b, c, tb, ta, acc)
