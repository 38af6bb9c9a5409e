"""ctypes declarations of libmoesz: the library handle, the C structs the package
passes (mirrored field for field from include/moesz/*.h; tests/test_abi.py checks
every size and offset against the C compiler), and the error mapping."""
import ctypes as C
import os

MAX_DIMS = 8
MAX_LAYERS = 256

# moesz_dtype
DT_F32, DT_F16, DT_BF16, DT_F8_E4M3, DT_I8, DT_U8, DT_I16, DT_I32, DT_I64, DT_F64, DT_BOOL, DT_COUNT = range(12)
DTYPE_NAMES = {DT_F32: "float32", DT_F16: "float16", DT_BF16: "bfloat16", DT_F8_E4M3: "float8_e4m3fn",
               DT_I8: "int8", DT_U8: "uint8", DT_I16: "int16", DT_I32: "int32", DT_I64: "int64",
               DT_F64: "float64", DT_BOOL: "bool"}
DTYPE_SIZES = {DT_F32: 4, DT_F16: 2, DT_BF16: 2, DT_F8_E4M3: 1, DT_I8: 1, DT_U8: 1, DT_I16: 2, DT_I32: 4,
               DT_I64: 8, DT_F64: 8, DT_BOOL: 1}

# moesz_status
STATUS = {0: "OK", -1: "E_IO", -2: "E_FORMAT", -3: "E_NOMEM", -4: "E_ARG", -5: "E_UNSUPPORTED",
          -6: "E_CHECKSUM", -7: "E_RANGE", -8: "E_NOTFOUND", -9: "E_INTERNAL"}


class Error(C.Structure):
    _fields_ = [("code", C.c_int), ("msg", C.c_char * 512)]


class CodecParams(C.Structure):
    _cname_ = "moesz_codec_params"
    _fields_ = [("mode", C.c_int), ("eb", C.c_double), ("pipeline", C.c_int), ("out_dtype", C.c_int),
                ("threads", C.c_int), ("chunk", C.c_size_t)]


class CodecInfo(C.Structure):
    _cname_ = "moesz_codec_info"
    _fields_ = [("in_dtype", C.c_int), ("out_dtype", C.c_int), ("pipeline", C.c_int), ("count", C.c_size_t),
                ("eb", C.c_double), ("chunk", C.c_size_t), ("nchunks", C.c_size_t), ("verbatim", C.c_uint64),
                ("stream_bytes", C.c_size_t)]


class Tensor(C.Structure):
    _cname_ = "moesz_tensor"
    _fields_ = [("name", C.c_char_p), ("dtype", C.c_int), ("ndim", C.c_int), ("shape", C.c_int64 * MAX_DIMS),
                ("numel", C.c_size_t), ("nbytes", C.c_size_t), ("data", C.c_void_p), ("shard", C.c_int)]


class MszRec(C.Structure):
    _cname_ = "moesz_msz_rec"
    _fields_ = [("name", C.c_char_p), ("dtype", C.c_int), ("ndim", C.c_int), ("shape", C.c_int64 * MAX_DIMS),
                ("raw_bytes", C.c_size_t), ("method", C.c_int), ("off", C.c_uint64), ("len", C.c_uint64),
                ("xxh64", C.c_uint64), ("eb", C.c_double), ("layer", C.c_int), ("expert", C.c_int),
                ("shared", C.c_int), ("mat", C.c_int)]


class ResmoeOpts(C.Structure):
    _cname_ = "moesz_resmoe_opts"
    _fields_ = [("method", C.c_int), ("residual", C.c_int), ("keep", C.c_double), ("init_mean", C.c_int),
                ("max_iter", C.c_int), ("tol", C.c_double), ("threads", C.c_int), ("force", C.c_int)]


PROGRESS_FN = C.CFUNCTYPE(C.c_int, C.c_void_p, C.c_uint64, C.c_uint64)


class MszOpts(C.Structure):
    _cname_ = "moesz_msz_opts"
    _fields_ = [("method", C.c_int), ("eb_mode", C.c_int), ("eb", C.c_double), ("pipeline", C.c_int),
                ("threads", C.c_int), ("layer_eb", C.POINTER(C.c_double)), ("progress", C.c_int),
                ("resmoe", C.POINTER(ResmoeOpts)), ("resmoe_layers", C.POINTER(C.c_uint8)), ("part", C.c_int),
                ("part_first", C.c_int), ("part_last", C.c_int), ("tensor_eb", C.c_void_p),
                ("n_tensor_eb", C.c_int), ("on_progress", PROGRESS_FN), ("progress_ctx", C.c_void_p)]


class MszSummary(C.Structure):
    _cname_ = "moesz_msz_summary"
    _fields_ = [("expert_raw_bytes", C.c_uint64), ("expert_stored_bytes", C.c_uint64), ("dense_bytes", C.c_uint64),
                ("file_bytes", C.c_uint64), ("total_bytes", C.c_uint64), ("verbatim_values", C.c_uint64),
                ("compute_matrices", C.c_uint64), ("compute_half_grid", C.c_uint64),
                ("max_err_over_bound", C.c_double), ("resmoe_layers", C.c_int),
                ("resmoe_bary_bytes", C.c_uint64), ("resmoe_residual_bytes", C.c_uint64),
                ("resmoe_max_err", C.c_double), ("seconds", C.c_double)]


class StoreOpts(C.Structure):
    _cname_ = "moesz_store_opts"
    _fields_ = [("path", C.c_char_p), ("mode", C.c_int), ("link_gbps", C.c_double), ("link_latency_us", C.c_double)]


class CacheOpts(C.Structure):
    _cname_ = "moesz_cache_opts"
    _fields_ = [("budget_bytes", C.c_uint64), ("policy", C.c_int), ("dtype", C.c_int), ("prefetch", C.c_int),
                ("prefetch_threads", C.c_int), ("miss_threads", C.c_int), ("budget_auto", C.c_int),
                ("store", StoreOpts)]


class StoreStats(C.Structure):
    _cname_ = "moesz_store_stats"
    _fields_ = [("fetches", C.c_uint64), ("reads", C.c_uint64), ("bytes", C.c_uint64), ("bytes_io", C.c_uint64),
                ("buffer_bytes", C.c_uint64), ("link_wait_seconds", C.c_double), ("read_seconds", C.c_double),
                ("direct", C.c_int), ("block", C.c_size_t)]


_CACHE_U64 = ["gets", "hits", "misses", "prefetch_issued", "prefetch_used", "prefetch_wasted", "prefetch_waits",
              "evictions", "over_budget", "preloaded", "prefetch_refused", "prefetch_failed", "bytes_read",
              "bytes_decoded", "resident_bytes", "peak_bytes", "pinned_bytes", "expert_bytes", "budget_bytes"]
_CACHE_DBL = ["stall_seconds", "stall_link_seconds", "stall_decode_seconds", "stall_prefetch_seconds",
              "decode_seconds"]


class CacheStats(C.Structure):
    _cname_ = "moesz_cache_stats"
    _fields_ = ([(n, C.c_uint64) for n in _CACHE_U64] + [(n, C.c_double) for n in _CACHE_DBL] +
                [("prefetch_error", C.c_char * 200), ("link_wait_seconds", C.c_double),
                 ("read_seconds", C.c_double), ("store", StoreStats)])


class EngineOpts(C.Structure):
    _cname_ = "moesz_engine_opts"
    _fields_ = [("threads", C.c_int), ("max_ctx", C.c_int), ("expert_group", C.c_int), ("scalar", C.c_int),
                ("fast_dot", C.c_int), ("exact_bf16", C.c_int)]


class EngineStats(C.Structure):
    _cname_ = "moesz_engine_stats"
    _fields_ = [("tokens", C.c_uint64), ("forward_calls", C.c_uint64), ("expert_gets", C.c_uint64),
                ("expert_tokens", C.c_uint64), ("seconds", C.c_double)]


class Sampler(C.Structure):
    _cname_ = "moesz_sampler"
    _fields_ = [("temperature", C.c_float), ("top_p", C.c_float), ("rng", C.c_uint64), ("cap", C.c_int),
                ("scratch", C.c_void_p)]


class PplResult(C.Structure):
    _cname_ = "moesz_ppl_result"
    _fields_ = [("nll", C.c_double), ("tokens", C.c_size_t), ("ppl", C.c_double), ("kl", C.c_double),
                ("top1", C.c_double), ("ref_ppl", C.c_double), ("seconds", C.c_double)]


Error._cname_ = "moesz_error"
STRUCTS = [Error, CodecParams, CodecInfo, Tensor, MszRec, ResmoeOpts, MszOpts, MszSummary, StoreOpts, CacheOpts,
           StoreStats, CacheStats, EngineOpts, EngineStats, Sampler, PplResult]

P = C.c_void_p
PP = C.POINTER(C.c_void_p)
I = C.c_int
SZ = C.c_size_t
ERR = C.POINTER(Error)
I32P = C.POINTER(C.c_int32)
F32P = C.POINTER(C.c_float)

# name: (restype, argtypes)
_PROTOS = {
    "moesz_status_str": (C.c_char_p, [I]),
    "moesz_codec_bound": (SZ, [SZ, I]),
    "moesz_codec_compress": (I, [P, I, SZ, C.POINTER(CodecParams), PP, C.POINTER(SZ), C.POINTER(CodecInfo), ERR]),
    "moesz_codec_info_read": (I, [P, SZ, C.POINTER(CodecInfo), ERR]),
    "moesz_codec_decompress": (I, [P, SZ, I, P, SZ, I, ERR]),
    "moesz_pipeline_name": (C.c_char_p, [I]),
    "moesz_msz_open": (I, [C.c_char_p, PP, ERR]),
    "moesz_msz_close": (None, [P]),
    "moesz_msz_count": (SZ, [P]),
    "moesz_msz_at": (C.POINTER(MszRec), [P, SZ]),
    "moesz_msz_expert": (C.POINTER(MszRec), [P, I, I, I, I]),
    "moesz_msz_file": (I, [P, C.c_char_p, PP, C.POINTER(SZ), ERR]),
    "moesz_msz_file_count": (SZ, [P]),
    "moesz_msz_file_name": (C.c_char_p, [P, SZ]),
    "moesz_msz_dense": (P, [P]),
    "moesz_msz_read": (I, [P, C.POINTER(MszRec), I, P, ERR]),
    "moesz_msz_file_size": (C.c_uint64, [P]),
    "moesz_msz_source_count": (SZ, [P]),
    "moesz_msz_source": (I, [P, SZ, C.POINTER(Tensor), ERR]),
    "moesz_msz_source_read": (I, [P, SZ, I, P, ERR]),
    "moesz_msz_write": (I, [P, C.c_char_p, C.POINTER(MszOpts), C.POINTER(MszSummary), ERR]),
    "moesz_st_count": (SZ, [P]),
    "moesz_st_at": (C.POINTER(Tensor), [P, SZ]),
    "moesz_model_open": (I, [C.c_char_p, PP, ERR]),
    "moesz_model_close": (None, [P]),
    "moesz_engine_is_msz": (I, [C.c_char_p]),
    "moesz_engine_open": (I, [C.c_char_p, C.POINTER(EngineOpts), PP, ERR]),
    "moesz_engine_open_msz": (I, [C.c_char_p, C.POINTER(CacheOpts), C.POINTER(EngineOpts), PP, PP, ERR]),
    "moesz_engine_close": (None, [P]),
    "moesz_engine_vocab": (I, [P]),
    "moesz_engine_max_ctx": (I, [P]),
    "moesz_engine_reset": (None, [P]),
    "moesz_engine_pos": (I, [P]),
    "moesz_engine_forward": (I, [P, I32P, SZ, I, F32P, ERR]),
    "moesz_engine_stats_get": (None, [P, C.POINTER(EngineStats)]),
    "moesz_cache_stats_get": (None, [P, C.POINTER(CacheStats)]),
    "moesz_cache_policy_parse": (I, [C.c_char_p, C.POINTER(C.c_int)]),
    "moesz_sampler_init": (None, [C.POINTER(Sampler), C.c_float, C.c_float, C.c_uint64]),
    "moesz_sampler_free": (None, [C.POINTER(Sampler)]),
    "moesz_sampler_sample": (C.c_int32, [C.POINTER(Sampler), F32P, I]),
    "moesz_tok_load": (I, [C.c_char_p, PP, ERR]),
    "moesz_tok_load_json": (I, [C.c_char_p, SZ, PP, ERR]),
    "moesz_tok_free": (None, [P]),
    "moesz_tok_encode": (I, [P, C.c_char_p, SZ, I, C.POINTER(I32P), C.POINTER(SZ), ERR]),
    "moesz_tok_decode": (I, [P, I32P, SZ, I, C.POINTER(C.c_void_p), C.POINTER(SZ), ERR]),
    "moesz_tok_eos": (I, [P]),
    "moesz_tok_bos": (I, [P]),
    "moesz_eval_ppl": (I, [P, P, I32P, SZ, SZ, SZ, I, C.POINTER(PplResult), ERR]),
}


def _load():
    path = os.environ.get("MOESZ_LIB")
    if not path:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libmoesz.so")
    if not os.path.exists(path):
        raise ImportError("moesz: the compiled library is missing (%s); install the package with "
                          "`pip install ./python`, or set MOESZ_LIB to a built libmoesz.so" % path)
    lib = C.CDLL(path)
    for name, (res, args) in _PROTOS.items():
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args
    return lib, path


lib, LIB_PATH = _load()
_libc = C.CDLL(None)
_libc.free.argtypes = [C.c_void_p]
_libc.free.restype = None
free = _libc.free
