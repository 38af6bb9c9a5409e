"""Turning numpy arrays and torch tensors into (pointer, moesz dtype, count)
without copying, and numpy dtypes into moesz dtype codes (bfloat16 through
ml_dtypes). Refuses what the library cannot take instead of copying it."""
import numpy as np

from . import _lib as L
from .errors import ArgumentError, DTypeError

try:
    import ml_dtypes
    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - ml_dtypes is a dependency
    BF16 = None

FLOAT_CODES = {np.dtype(np.float32): L.DT_F32, np.dtype(np.float16): L.DT_F16}
if BF16 is not None:
    FLOAT_CODES[BF16] = L.DT_BF16


def np_dtype(code):
    """numpy dtype of a moesz dtype code (bfloat16: ml_dtypes.bfloat16)."""
    if code == L.DT_BF16:
        if BF16 is None:
            raise DTypeError("bfloat16 output needs the ml_dtypes package")
        return BF16
    if code == L.DT_F8_E4M3:
        import ml_dtypes as m
        return np.dtype(m.float8_e4m3fn)
    names = {L.DT_F32: np.float32, L.DT_F16: np.float16, L.DT_I8: np.int8, L.DT_U8: np.uint8,
             L.DT_I16: np.int16, L.DT_I32: np.int32, L.DT_I64: np.int64, L.DT_F64: np.float64,
             L.DT_BOOL: np.bool_}
    if code not in names:
        raise DTypeError("moesz dtype %d has no numpy dtype" % code)
    return np.dtype(names[code])


def _is_torch(x):
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "data_ptr")


def float_code(dtype):
    """moesz code of a float32 / float16 / bfloat16 dtype given as a numpy dtype,
    a string ("float32", "bf16", ...) or a torch dtype; None stays None."""
    if dtype is None:
        return None
    names = {"float32": L.DT_F32, "f32": L.DT_F32, "fp32": L.DT_F32, "float16": L.DT_F16, "f16": L.DT_F16,
             "fp16": L.DT_F16, "half": L.DT_F16, "bfloat16": L.DT_BF16, "bf16": L.DT_BF16}
    if isinstance(dtype, str) or type(dtype).__module__ == "torch":
        s = str(dtype).lower().replace("torch.", "")
        if s in names:
            return names[s]
        raise DTypeError("unsupported dtype %r (float32, float16 or bfloat16)" % (dtype,))
    try:
        d = np.dtype(dtype)
    except TypeError:
        raise DTypeError("unsupported dtype %r (float32, float16 or bfloat16)" % (dtype,)) from None
    if d in FLOAT_CODES:
        return FLOAT_CODES[d]
    raise DTypeError("unsupported dtype %r (float32, float16 or bfloat16)" % (dtype,))


def float_input(x):
    """(pointer, dtype code, count, shape, keepalive) of a C-contiguous float32 /
    float16 / bfloat16 numpy array or CPU torch tensor, without copying."""
    if _is_torch(x):
        import torch
        codes = {torch.float32: L.DT_F32, torch.float16: L.DT_F16, torch.bfloat16: L.DT_BF16}
        if x.dtype not in codes:
            raise DTypeError("tensor dtype %s: float32, float16 or bfloat16 only" % x.dtype)
        if x.device.type != "cpu":
            raise ArgumentError("tensor on %s: move it to the CPU first" % x.device)
        if not x.is_contiguous():
            raise ArgumentError("tensor is not contiguous: call .contiguous() first")
        return x.data_ptr(), codes[x.dtype], x.numel(), tuple(x.shape), x
    if not isinstance(x, np.ndarray):
        raise DTypeError("expected a numpy array or a torch tensor, got %s" % type(x).__name__)
    if x.dtype not in FLOAT_CODES:
        raise DTypeError("array dtype %s: float32, float16 or bfloat16 (ml_dtypes) only, in native byte order"
                         % x.dtype)
    if not x.flags.c_contiguous:
        raise ArgumentError("array is not C-contiguous: pass np.ascontiguousarray(a)")
    if not x.flags.aligned:
        raise ArgumentError("array is not aligned to its element size")
    return x.ctypes.data, FLOAT_CODES[x.dtype], x.size, x.shape, x


def bytes_input(buf):
    """(pointer, length, keepalive) of a bytes-like object (bytes, bytearray,
    memoryview, a uint8 numpy array), without copying."""
    try:
        mv = memoryview(buf)
    except TypeError:
        raise ArgumentError("expected a bytes-like object, got %s" % type(buf).__name__) from None
    if not mv.c_contiguous:
        raise ArgumentError("buffer is not contiguous")
    a = np.frombuffer(mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv, dtype=np.uint8)
    return (a.ctypes.data if a.size else None), a.size, (a, mv)
