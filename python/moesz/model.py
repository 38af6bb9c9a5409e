"""The inference engine (libmoesz src/infer, src/runtime, src/eval) from
Python: a model folder or a .msz container served with experts in a budgeted
cache; logits, generation, perplexity and the cache's counters. One call at a
time per Model (a lock guards the handle); the GIL is released in the C calls."""
import ctypes as C
import os
import re
import threading

import numpy as np

from . import _lib as L
from .container import _path
from .errors import ArgumentError, float_arg, int_arg, raise_for

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40, "t": 10**12, "tb": 10**12}
_STORE = {"direct": 0, "buffered": 1, "mmap": 2}


def _bytes(mem):
    if isinstance(mem, bool):
        raise ArgumentError("mem must be bytes (int), a size such as '4MiB', 'auto' or None")
    if isinstance(mem, int):
        return int_arg(mem, "mem", 1, 2**63 - 1)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(mem))
    if not m or m.group(2).lower() not in _UNITS:
        raise ArgumentError("mem %r: bytes, or a number with B, KB, MB, GB, KiB, MiB, GiB" % (mem,))
    return int_arg(int(float(m.group(1)) * _UNITS[m.group(2).lower()]), "mem", 1, 2**63 - 1)


def _ids(ids):
    a = np.asarray(ids)
    if a.ndim != 1 or a.size == 0 or not (np.issubdtype(a.dtype, np.integer)):
        raise ArgumentError("ids must be a non-empty 1-D sequence of integers")
    if a.min() < 0 or a.max() >= 2**31:
        raise ArgumentError("ids must be in [0, 2^31)")
    return np.ascontiguousarray(a, dtype=np.int32)


class Model:
    """A model served by the moesz engine.

    ``path``: a Hugging Face model folder or a .msz container. For a container the
    routed experts are decoded on demand into a cache of ``mem`` bytes (an int, a
    size such as ``"4MiB"``, ``"auto"`` from available memory, or None =
    unlimited) with eviction policy ``cache`` (``"lru"``, ``"lfu"``, ``"lfru"``),
    next-layer ``prefetch``, read through ``store`` (``"direct"``: pread with
    O_DIRECT, ``"buffered"`` or ``"mmap"``; None: direct under a budget, mmap
    without, as ``moesz run``). ``threads``: compute threads (None: all cores);
    ``max_ctx``: KV cache length (None: min(max positions, 4096)); ``fast_dot``:
    compute-layout experts round x to 16 bits per 256 columns (True or 16: ``moesz run --fast-dot``),
    and 4-bit groups meet x rounded to 8 bits (8: ``--fast-dot=8``: decode's 4-bit rows and
    products of 5 or more tokens)."""

    def __init__(self, path, mem=None, cache="lfru", prefetch=False, threads=None, max_ctx=None, store=None,
                 fast_dot=False):
        self.path = os.fspath(path)
        self._lock = threading.RLock()
        self._e = C.c_void_p()
        self._cache = C.c_void_p()
        self._tok = C.c_void_p()
        self.is_msz = bool(L.lib.moesz_engine_is_msz(_path(path)))
        threads = None if threads is None else int_arg(threads, "threads", 1, 4096)
        max_ctx = None if max_ctx is None else int_arg(max_ctx, "max_ctx", 1)
        if fast_dot not in (False, True, 16, 8):
            raise ArgumentError("fast_dot: False, True (16), 16 or 8, not %r" % (fast_dot,))
        fd = 2 if fast_dot == 8 else 1 if fast_dot else 0
        eo = L.EngineOpts(threads=threads or 0, max_ctx=max_ctx or 0, fast_dot=fd)
        err = L.Error()
        if self.is_msz:
            co = L.CacheOpts(dtype=L.DT_COUNT)
            if mem == "auto":
                co.budget_auto = 1
            elif mem is not None:
                co.budget_bytes = _bytes(mem)
            pol = C.c_int()
            if not isinstance(cache, str) or L.lib.moesz_cache_policy_parse(cache.encode(), C.byref(pol)):
                raise ArgumentError("cache must be lru, lfu or lfru, got %r" % (cache,))
            co.policy = pol.value
            co.prefetch = int(bool(prefetch))
            co.prefetch_threads = 1
            co.miss_threads = int(threads or os.cpu_count() or 1)
            if store is None:
                store = "mmap" if mem is None else "direct"
            if store not in _STORE:
                raise ArgumentError("store must be direct, buffered or mmap, got %r" % (store,))
            co.store.mode = _STORE[store]
            raise_for(L.lib.moesz_engine_open_msz(_path(path), C.byref(co), C.byref(eo), C.byref(self._e),
                                                  C.byref(self._cache), C.byref(err)), err)
        else:
            if mem is not None or prefetch:
                raise ArgumentError("mem and prefetch apply to .msz containers; %s is served from its files"
                                    % self.path)
            raise_for(L.lib.moesz_engine_open(_path(path), C.byref(eo), C.byref(self._e), C.byref(err)), err)
        self.vocab = L.lib.moesz_engine_vocab(self._e)
        self.max_ctx = L.lib.moesz_engine_max_ctx(self._e)
        self._load_tokenizer()

    def _load_tokenizer(self):
        err = L.Error()
        if self.is_msz:
            from .container import Container
            with Container(self.path) as c:
                if "tokenizer.json" not in c.files:
                    return
                js = c.file("tokenizer.json")
            rc = L.lib.moesz_tok_load_json(js, len(js), C.byref(self._tok), C.byref(err))
        else:
            if not os.path.exists(os.path.join(self.path, "tokenizer.json")):
                return
            rc = L.lib.moesz_tok_load(_path(self.path), C.byref(self._tok), C.byref(err))
        raise_for(rc, err, "tokenizer")

    # -- lifetime
    def close(self):
        with self._lock:
            if self._e:
                L.lib.moesz_engine_close(self._e)
                self._e = C.c_void_p()
                self._cache = C.c_void_p()
            if self._tok:
                L.lib.moesz_tok_free(self._tok)
                self._tok = C.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):  # a backstop: close() or the with-block is the way to free the handle
        try:
            if getattr(self, "_e", None) or getattr(self, "_tok", None):
                self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown may have torn the module down
            pass

    def _engine(self):
        if not self._e:
            raise ArgumentError("model is closed")
        return self._e

    # -- tokenizer
    def encode(self, text, add_special=True):
        """Token ids of ``text`` with the model's tokenizer.json (BOS per its template)."""
        if not self._tok:
            raise ArgumentError("%s has no tokenizer.json" % self.path)
        b = text.encode("utf-8")
        ids = C.POINTER(C.c_int32)()
        n = C.c_size_t()
        err = L.Error()
        raise_for(L.lib.moesz_tok_encode(self._tok, b, len(b), int(bool(add_special)), C.byref(ids), C.byref(n),
                                         C.byref(err)), err, "encode")
        try:
            return [ids[i] for i in range(n.value)]
        finally:
            L.free(ids)

    def decode(self, ids, skip_special=True):
        """Text of token ids."""
        if not self._tok:
            raise ArgumentError("%s has no tokenizer.json" % self.path)
        a = np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1), dtype=np.int32)
        out = C.c_void_p()
        n = C.c_size_t()
        err = L.Error()
        raise_for(L.lib.moesz_tok_decode(self._tok, a.ctypes.data_as(C.POINTER(C.c_int32)), a.size,
                                         int(bool(skip_special)), C.byref(out), C.byref(n), C.byref(err)), err,
                  "decode")
        try:
            return C.string_at(out, n.value).decode("utf-8", "replace")
        finally:
            L.free(out)

    # -- forward pass
    def _forward(self, a, all_logits):
        out = np.empty((a.size if all_logits else 1, self.vocab), dtype=np.float32)
        err = L.Error()
        raise_for(L.lib.moesz_engine_forward(self._engine(), a.ctypes.data_as(C.POINTER(C.c_int32)), a.size,
                                             int(all_logits), out.ctypes.data_as(C.POINTER(C.c_float)),
                                             C.byref(err)), err, "forward")
        return out

    def logits(self, ids):
        """Logits [len(ids), vocab] (float32) of the sequence ``ids`` from position 0
        (the KV cache is emptied first), as transformers' model(ids).logits[0]."""
        a = _ids(ids)
        with self._lock:
            L.lib.moesz_engine_reset(self._engine())
            return self._forward(a, True)

    def generate(self, prompt, max_new_tokens=32, temperature=0.0, top_p=1.0, seed=0, stop_at_eos=True):
        """Continues ``prompt`` (text, or a sequence of token ids) by up to
        ``max_new_tokens`` tokens: greedy for temperature 0, else sampled
        (softmax(logits / temperature), nucleus ``top_p``, reproducible from
        ``seed``). Returns the new text for a text prompt, else the new ids."""
        text = isinstance(prompt, str)
        a = _ids(self.encode(prompt) if text else prompt)
        max_new_tokens = int_arg(max_new_tokens, "max_new_tokens", 0)
        temperature, top_p = float_arg(temperature, "temperature"), float_arg(top_p, "top_p")
        seed = int_arg(seed, "seed", -2**63, 2**64 - 1)
        eos = L.lib.moesz_tok_eos(self._tok) if self._tok else -1
        s = L.Sampler()
        L.lib.moesz_sampler_init(C.byref(s), temperature, top_p, seed & (2**64 - 1))
        new = []
        try:
            with self._lock:
                L.lib.moesz_engine_reset(self._engine())
                lg = self._forward(a, False)
                for _ in range(int(max_new_tokens)):
                    t = L.lib.moesz_sampler_sample(C.byref(s), lg.ctypes.data_as(C.POINTER(C.c_float)), self.vocab)
                    if t < 0:
                        raise_for(t, None, "sample")
                    new.append(int(t))
                    if (stop_at_eos and t == eos) or len(new) == max_new_tokens:
                        break
                    lg = self._forward(np.array([t], dtype=np.int32), False)
        finally:
            L.lib.moesz_sampler_free(C.byref(s))
        return self.decode(new) if text else new

    def perplexity(self, text, ctx=512, stride=256):
        """Perplexity of ``text`` with sliding windows of ``ctx`` tokens moved by
        ``stride`` (the Hugging Face perplexity guide's scheme, as ``moesz ppl``):
        a dict with ppl, nll (nats), tokens (scored) and seconds."""
        ids = np.asarray(self.encode(text, add_special=False) if isinstance(text, str) else _ids(text),
                         dtype=np.int32)
        if ids.size < 2:
            raise ArgumentError("perplexity needs at least 2 tokens")
        ctx, stride = int_arg(ctx, "ctx", 2), int_arg(stride, "stride", 1)
        if stride > ctx:
            raise ArgumentError("need 1 <= stride <= ctx")
        r = L.PplResult()
        err = L.Error()
        with self._lock:
            raise_for(L.lib.moesz_eval_ppl(self._engine(), None, ids.ctypes.data_as(C.POINTER(C.c_int32)), ids.size,
                                           int(ctx), int(stride), 0, C.byref(r), C.byref(err)), err, "perplexity")
        return {"ppl": r.ppl, "nll": r.nll, "tokens": int(r.tokens), "seconds": r.seconds}

    def cache_stats(self):
        """The expert cache's counters (gets, hits, misses, prefetch, bytes read and
        decoded, resident and peak bytes, stall seconds split by cause, ...) and the
        engine's (tokens, forward calls, seconds) as one dict; models served from a
        folder have the engine's only (cache = None)."""
        with self._lock:
            es = L.EngineStats()
            L.lib.moesz_engine_stats_get(self._engine(), C.byref(es))
            out = {"engine": {n: getattr(es, n) for n, _ in L.EngineStats._fields_}, "cache": None}
            if self._cache:
                cs = L.CacheStats()
                L.lib.moesz_cache_stats_get(self._cache, C.byref(cs))
                d = {}
                for n, _ in L.CacheStats._fields_:
                    v = getattr(cs, n)
                    if n == "store":
                        v = {m: getattr(v, m) for m, _ in L.StoreStats._fields_}
                    elif n == "prefetch_error":
                        v = v.decode("utf-8", "replace")
                    d[n] = v
                d["hit_rate"] = d["hits"] / d["gets"] if d["gets"] else 0.0
                out["cache"] = d
            return out

    def __repr__(self):
        return "moesz.Model(%r, vocab=%d)" % (self.path, self.vocab)
