"""The .msz container (libmoesz src/container) from Python: reading records,
experts, dense tensors and whole state dicts, and writing containers with
compress_model. Every decode runs in the library with the GIL released."""
import ctypes as C
import json
import os
import threading

import numpy as np

from . import _lib as L
from ._arrays import float_code, np_dtype
from .errors import ArgumentError, MoeszError, float_arg, int_arg, raise_for

_METHODS = {0: "raw", 1: "zstd", 2: "codec", 3: "compute", 4: "resmoe"}
_MATS = {1: "gate", 2: "up", 3: "down"}


def _path(p):
    try:
        return os.fsencode(os.fspath(p))
    except TypeError:
        raise ArgumentError("expected a path, got %s" % type(p).__name__) from None


def _tensor_shape(t):
    return tuple(int(t.shape[i]) for i in range(t.ndim))


class Container:
    """An open .msz container (read-only; validated on open, blob checksums
    verified on every read). Use as a context manager or call close().

    Attributes: ``path``, ``config`` (the model's config.json as a dict),
    ``files`` (embedded file names), ``file_size``."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._h = C.c_void_p()
        self._lock = threading.RLock()
        err = L.Error()
        raise_for(L.lib.moesz_msz_open(_path(path), C.byref(self._h), C.byref(err)), err)
        self.files = [L.lib.moesz_msz_file_name(self._h, i).decode()
                      for i in range(L.lib.moesz_msz_file_count(self._h))]
        self.file_size = int(L.lib.moesz_msz_file_size(self._h))
        self.config = json.loads(self.file("config.json"))

    # -- lifetime
    def close(self):
        """Closes the container; arrays already returned stay valid (they are copies)."""
        with self._lock:
            if self._h:
                L.lib.moesz_msz_close(self._h)
                self._h = C.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):  # a backstop: close() or the with-block is the way to free the handle
        try:
            if getattr(self, "_h", None):
                self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown may have torn the module down
            pass

    def _handle(self):
        if not self._h:
            raise ArgumentError("container is closed")
        return self._h

    # -- embedded files and records
    def file(self, name):
        """The bytes of an embedded file (``config.json``, ``tokenizer.json``, ...)."""
        if not isinstance(name, str):
            raise ArgumentError("file name must be a str, got %r" % (name,))
        with self._lock:
            data = C.c_void_p()
            n = C.c_size_t()
            err = L.Error()
            raise_for(L.lib.moesz_msz_file(self._handle(), name.encode(), C.byref(data), C.byref(n), C.byref(err)),
                      err)
            return C.string_at(data, n.value)

    @staticmethod
    def _rec_dict(r):
        return {"name": r.name.decode(), "dtype": L.DTYPE_NAMES.get(r.dtype, str(r.dtype)),
                "shape": tuple(int(r.shape[i]) for i in range(r.ndim)), "method": _METHODS.get(r.method, r.method),
                "raw_bytes": int(r.raw_bytes), "stored_bytes": int(r.len), "offset": int(r.off), "eb": r.eb,
                "layer": r.layer, "expert": r.expert, "shared": bool(r.shared), "mat": _MATS.get(r.mat)}

    @property
    def records(self):
        """One dict per stored expert matrix: name, dtype, shape, method (raw, zstd,
        codec, compute, resmoe), raw_bytes, stored_bytes, offset, eb (absolute bound,
        0 if lossless), layer, expert, shared, mat (gate, up, down)."""
        with self._lock:
            h = self._handle()
            return [self._rec_dict(L.lib.moesz_msz_at(h, i).contents) for i in range(L.lib.moesz_msz_count(h))]

    def _read(self, rp, code):
        r = rp.contents
        n = r.raw_bytes // L.DTYPE_SIZES[r.dtype]
        if code is None:
            code = L.DT_F32 if r.method == 3 else r.dtype
        out = np.empty(n, dtype=np_dtype(code))
        err = L.Error()
        raise_for(L.lib.moesz_msz_read(self._handle(), rp, code, C.c_void_p(out.ctypes.data), C.byref(err)), err,
                  r.name.decode())
        return out.reshape(tuple(int(r.shape[i]) for i in range(r.ndim)))

    def expert(self, layer, expert, dtype=None, shared=False):
        """Routed expert ``expert`` of ``layer`` (or shared expert with shared=True)
        decoded: ``{"gate": [n, d], "up": [n, d], "down": [d, n]}`` in nn.Linear
        orientation (Switch experts have no "up"). dtype: float32, float16,
        bfloat16 or None (the original dtype; float32 for compute-layout blobs)."""
        code = float_code(dtype)
        layer, expert = int_arg(layer, "layer"), int_arg(expert, "expert")
        out = {}
        with self._lock:
            h = self._handle()
            for mat, name in _MATS.items():
                rp = L.lib.moesz_msz_expert(h, int(layer), int(expert), int(bool(shared)), mat)
                if rp:
                    out[name] = self._read(rp, code)
        if not out:
            raise MoeszError("layer %d has no %s expert %d" % (layer, "shared" if shared else "routed", expert), -8)
        return out

    def dense(self):
        """The dense tensors (embeddings, attention, norms, routers, ...) as a dict
        name -> numpy array (copies, in their stored dtype)."""
        with self._lock:
            st = L.lib.moesz_msz_dense(self._handle())
            res = {}
            for i in range(L.lib.moesz_st_count(st)):
                t = L.lib.moesz_st_at(st, i).contents
                a = np.empty(t.numel, dtype=np_dtype(t.dtype))
                if t.nbytes:
                    C.memmove(a.ctypes.data, t.data, t.nbytes)
                res[t.name.decode()] = a.reshape(_tensor_shape(t))
            return res

    def sources(self):
        """The checkpoint tensors the expert matrices were cut from: a list of
        (name, dtype, shape) in the dtype ``moesz decompress`` writes them."""
        with self._lock:
            h = self._handle()
            out = []
            for i in range(L.lib.moesz_msz_source_count(h)):
                t = L.Tensor()
                err = L.Error()
                raise_for(L.lib.moesz_msz_source(h, i, C.byref(t), C.byref(err)), err)
                out.append((t.name.decode(), L.DTYPE_NAMES[t.dtype], _tensor_shape(t)))
            return out

    def source(self, i, dtype=None):
        """Source tensor i (see sources()) decoded: (name, array) in dtype (None: as sources() says)."""
        i = int_arg(i, "source index", 0, 2**62)
        with self._lock:
            h = self._handle()
            t = L.Tensor()
            err = L.Error()
            raise_for(L.lib.moesz_msz_source(h, int(i), C.byref(t), C.byref(err)), err)
            code = t.dtype if dtype is None else float_code(dtype)
            a = np.empty(t.numel, dtype=np_dtype(code))
            raise_for(L.lib.moesz_msz_source_read(h, int(i), code, C.c_void_p(a.ctypes.data), C.byref(err)), err,
                      t.name.decode())
            return t.name.decode(), a.reshape(_tensor_shape(t))

    def state_dict(self):
        """The whole model as numpy arrays keyed by the checkpoint's tensor names:
        what ``moesz decompress`` writes to model.safetensors (experts decoded in
        their original dtype, float32 where compute-layout blobs slice them)."""
        sd = self.dense()
        with self._lock:
            n = L.lib.moesz_msz_source_count(self._handle())
        for i in range(n):
            name, a = self.source(i)
            sd[name] = a
        return sd

    def to_state_dict(self, device="cpu", dtype=None):
        """state_dict() as torch tensors on ``device``, cast to ``dtype`` (a torch
        dtype; None keeps each tensor's dtype), ready for model.load_state_dict."""
        import torch
        out = {}
        for name, a in self.state_dict().items():
            if a.dtype.name == "bfloat16":
                t = torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
            else:
                t = torch.from_numpy(a)
            if dtype is not None:
                t = t.to(dtype)
            out[name] = t.to(device)
        return out

    def __repr__(self):
        return "moesz.Container(%r, %s, %d files)" % (self.path, self.config.get("model_type"), len(self.files))


_CM = {"sz": 2, "codec": 2, "zstd": 1, "raw": 0, "resmoe": 2}


def compress_model(src, dst, eb=1e-3, layer_eb=None, method="sz", pipeline="entropy", mode="abs", threads=None,
                   resmoe_layers=None, keep=0.25, residual="prune", progress=None):
    """Compresses the model folder ``src`` (config.json + safetensors) into the
    container ``dst`` (written to a temporary file and renamed at the end), as
    ``moesz compress`` does.

    ``method``: ``"sz"`` (the error-bounded codec; ``pipeline`` entropy, fast or
    compute), ``"zstd"`` (lossless), ``"raw"`` or ``"resmoe"`` (barycenter +
    residuals for ``resmoe_layers``, default every MoE layer; ``keep``,
    ``residual`` prune or svd; other layers as sz). ``eb``, ``mode``: the bound.
    ``layer_eb``: {layer: bound} overrides (a negative bound keeps a layer
    lossless). ``progress``: called as progress(done, total) after each expert
    matrix; returning True cancels the write (MoeszError, nothing written); an
    exception it raises also cancels and is re-raised. Returns the write's
    summary as a dict."""
    if method not in _CM:
        raise ArgumentError("method must be one of %s, got %r" % (sorted(_CM), method))
    if mode not in ("abs", "rel", "std"):
        raise ArgumentError("mode must be abs, rel or std, got %r" % (mode,))
    if pipeline not in ("entropy", "fast", "compute"):
        raise ArgumentError("pipeline must be entropy, fast or compute, got %r" % (pipeline,))
    o = L.MszOpts()
    o.method = _CM[method]
    if pipeline == "compute":
        if method != "sz":
            raise ArgumentError("pipeline='compute' needs method='sz'")
        o.method = 3
    o.eb_mode = {"abs": 0, "rel": 1, "std": 2}[mode]
    o.eb = float_arg(eb, "eb")
    o.pipeline = 1 if pipeline == "fast" else 0
    o.threads = 1 if threads is None else int_arg(threads, "threads", 1, 4096)
    keep_alive = []
    if layer_eb:
        arr = (C.c_double * L.MAX_LAYERS)()
        for k, v in dict(layer_eb).items():
            arr[int_arg(k, "layer_eb layer", 0, L.MAX_LAYERS - 1)] = float_arg(v, "layer_eb bound")
        o.layer_eb = C.cast(arr, C.POINTER(C.c_double))
        keep_alive.append(arr)
    if method == "resmoe":
        if residual not in ("prune", "svd"):
            raise ArgumentError("residual must be prune or svd, got %r" % (residual,))
        if not 0 < float_arg(keep, "keep") <= 1:
            raise ArgumentError("keep must be in (0, 1], got %r" % (keep,))
        ro = L.ResmoeOpts(method=0, residual=0 if residual == "prune" else 1, keep=float(keep))
        lay = (C.c_uint8 * L.MAX_LAYERS)()
        for i in (range(L.MAX_LAYERS) if resmoe_layers is None else resmoe_layers):
            lay[int_arg(i, "resmoe_layers layer", 0, L.MAX_LAYERS - 1)] = 1
        o.resmoe = C.pointer(ro)
        o.resmoe_layers = C.cast(lay, C.POINTER(C.c_uint8))
        keep_alive += [ro, lay]
    raised = []
    if progress is not None:
        if not callable(progress):
            raise ArgumentError("progress must be callable")

        def cb(_ctx, done, total):
            try:
                return 1 if progress(int(done), int(total)) else 0
            except BaseException as e:  # noqa: B902 - re-raised after the write stops
                raised.append(e)
                return 1
        o.on_progress = L.PROGRESS_FN(cb)
        keep_alive.append(o.on_progress)
    model = C.c_void_p()
    err = L.Error()
    raise_for(L.lib.moesz_model_open(_path(src), C.byref(model), C.byref(err)), err)
    s = L.MszSummary()
    try:
        rc = L.lib.moesz_msz_write(model, _path(dst), C.byref(o), C.byref(s), C.byref(err))
    finally:
        L.lib.moesz_model_close(model)
    if raised:
        raise raised[0]
    raise_for(rc, err)
    return {name: getattr(s, name) for name, _ in L.MszSummary._fields_}
