"""The error-bounded codec (libmoesz src/codec) from Python: compress,
decompress and stream_info over numpy arrays and torch tensors. Inputs are
passed to the library in place (no copy); the GIL is released during the C
call (ctypes releases it around every foreign call)."""
import ctypes as C

import numpy as np

from . import _lib as L
from ._arrays import bytes_input, float_code, float_input, np_dtype
from .errors import ArgumentError, float_arg, int_arg, raise_for

_MODES = {"abs": 0, "rel": 1, "std": 2}
_PIPES = {"entropy": 0, "fast": 1}


def _threads(threads):
    if threads is None:
        return 1
    return int_arg(threads, "threads", 1, 4096)


def compress(array, eb=1e-3, mode="abs", pipeline="entropy", threads=None, out_dtype=None):
    """Compresses a float32, float16 or bfloat16 array with the error-bounded codec.

    ``array``: a C-contiguous numpy array (bfloat16 as ``ml_dtypes.bfloat16``) or a
    contiguous CPU torch tensor; it is read in place. ``eb``: the bound (0 = lossless);
    ``mode``: ``"abs"`` (eb as given), ``"rel"`` (eb x (max - min)) or ``"std"``
    (eb x standard deviation); ``pipeline``: ``"entropy"`` (Huffman, smallest) or
    ``"fast"`` (fixed-width blocks, fastest); ``threads``: worker threads (None: 1);
    ``out_dtype``: the dtype the bound is guaranteed in after decoding (None: the
    input's). Every value decoded to that dtype (or to float32) is within the bound.
    Returns the stream as bytes (the codec stream of docs/CODEC.md; it stores the
    value count, not the shape)."""
    ptr, dt, n, _shape, keep = float_input(array)
    if mode not in _MODES:
        raise ArgumentError("mode must be one of %s, got %r" % (sorted(_MODES), mode))
    if pipeline not in _PIPES:
        raise ArgumentError("pipeline must be one of %s, got %r" % (sorted(_PIPES), pipeline))
    eb = float_arg(eb, "eb")
    od = float_code(out_dtype)
    p = L.CodecParams(mode=_MODES[mode], eb=eb, pipeline=_PIPES[pipeline],
                      out_dtype=L.DT_COUNT if od is None else od, threads=_threads(threads), chunk=0)
    out = C.c_void_p()
    out_len = C.c_size_t()
    err = L.Error()
    rc = L.lib.moesz_codec_compress(C.c_void_p(ptr), dt, n, C.byref(p), C.byref(out), C.byref(out_len), None,
                                    C.byref(err))
    del keep
    raise_for(rc, err, "compress")
    try:
        return C.string_at(out, out_len.value)
    finally:
        L.free(out)


def _info(buf):
    ptr, n, keep = bytes_input(buf)
    info = L.CodecInfo()
    err = L.Error()
    rc = L.lib.moesz_codec_info_read(ptr, n, C.byref(info), C.byref(err))
    raise_for(rc, err, "stream")
    return info, ptr, n, keep


def stream_info(buf):
    """What a codec stream holds, from its header and index (nothing is decoded):
    a dict with ``shape`` (``(count,)``: the stream keeps the count, not the
    shape), ``count``, ``dtype`` (of the original values), ``out_dtype`` (the
    dtype the bound holds in), ``eb`` (absolute bound), ``pipeline``, ``chunk``,
    ``nchunks``, ``verbatim`` (values stored verbatim), ``stream_bytes`` and
    ``bits_per_value``. Raises MoeszError for a truncated or malformed stream."""
    info, _, _, _ = _info(buf)
    return {
        "shape": (info.count,),
        "count": info.count,
        "dtype": L.DTYPE_NAMES.get(info.in_dtype, str(info.in_dtype)),
        "out_dtype": L.DTYPE_NAMES.get(info.out_dtype, str(info.out_dtype)),
        "eb": info.eb,
        "pipeline": L.lib.moesz_pipeline_name(info.pipeline).decode(),
        "chunk": info.chunk,
        "nchunks": info.nchunks,
        "verbatim": info.verbatim,
        "stream_bytes": info.stream_bytes,
        "bits_per_value": 8.0 * info.stream_bytes / info.count if info.count else 0.0,
    }


def decompress(buf, dtype=None, shape=None, out=None, threads=None):
    """Decodes a codec stream into a numpy array.

    ``buf``: bytes-like (bytes, bytearray, memoryview, uint8 array), read in place.
    ``dtype``: float32, float16 or bfloat16 (None: the dtype the stream's bound
    holds in, normally the original's). ``shape``: reshape the result (the stream
    stores only the count). ``out``: a C-contiguous writable array of that dtype and
    size to decode into (no allocation). ``threads``: decoding threads (None: 1).
    Checksums are verified; a truncated, corrupt or lying stream raises MoeszError."""
    info, ptr, n, keep = _info(buf)
    code = float_code(dtype)
    if code is None:
        code = info.out_dtype
    if out is None:
        res = np.empty(info.count, dtype=np_dtype(code))
    else:
        if not isinstance(out, np.ndarray):
            raise ArgumentError("out must be a numpy array")
        if out.dtype != np_dtype(code):
            raise ArgumentError("out has dtype %s, the decode gives %s" % (out.dtype, np_dtype(code)))
        if not (out.flags.c_contiguous and out.flags.writeable and out.flags.aligned):
            raise ArgumentError("out must be C-contiguous, aligned and writable")
        if out.size != info.count:
            raise ArgumentError("out holds %d values, the stream %d" % (out.size, info.count))
        res = out
    err = L.Error()
    rc = L.lib.moesz_codec_decompress(ptr, n, code, C.c_void_p(res.ctypes.data), info.count, _threads(threads),
                                      C.byref(err))
    del keep
    raise_for(rc, err, "decompress")
    if shape is not None and out is None:
        try:
            res = res.reshape(shape)
        except (ValueError, TypeError) as e:
            raise ArgumentError("shape %r for %d values: %s" % (shape, info.count, e)) from None
    return res
