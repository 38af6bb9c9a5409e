"""moesz.compress / decompress / stream_info: round trips within the bound for
every dtype, bound mode and pipeline, decoding to float32, into a given array,
on several threads; torch tensors give the same stream as numpy arrays."""
import ml_dtypes
import numpy as np
import pytest

import moesz

DTYPES = [np.float32, np.float16, ml_dtypes.bfloat16]


def weights(shape=(300, 517), seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape) * 0.02
    a.flat[::997] *= 40          # some large values (verbatim candidates)
    return a.astype(dtype)


def max_err(a, b):
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f16", "bf16"])
@pytest.mark.parametrize("mode", ["abs", "rel", "std"])
@pytest.mark.parametrize("pipeline", ["entropy", "fast"])
def test_round_trip_within_bound(dtype, mode, pipeline):
    x = weights(dtype=dtype)
    eb = {"abs": 1e-3, "rel": 1e-3, "std": 0.05}[mode]
    buf = moesz.compress(x, eb=eb, mode=mode, pipeline=pipeline)
    info = moesz.stream_info(buf)
    assert info["count"] == x.size
    assert info["dtype"] == np.dtype(dtype).name
    assert info["pipeline"] == pipeline
    assert info["stream_bytes"] == len(buf)
    assert info["bits_per_value"] == pytest.approx(8 * len(buf) / x.size)
    xf = x.astype(np.float64)
    want = {"abs": eb, "rel": eb * (xf.max() - xf.min()), "std": eb * xf.std()}[mode]
    assert info["eb"] == pytest.approx(want, rel=1e-3)
    y = moesz.decompress(buf, shape=x.shape)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert max_err(x, y) <= info["eb"]
    assert 0 < max_err(x, y)                     # lossy: something moved
    y32 = moesz.decompress(buf, dtype="float32")
    assert y32.dtype == np.float32
    assert max_err(x.reshape(-1), y32) <= info["eb"]
    assert len(buf) < x.nbytes


def test_lossless_when_eb_is_zero():
    x = weights(dtype=np.float32)
    y = moesz.decompress(moesz.compress(x, eb=0), shape=x.shape)
    assert np.array_equal(x.view(np.uint32), y.view(np.uint32))


def test_special_values_survive():
    x = weights((64, 64)).reshape(-1)
    x[[3, 10, 20, 30]] = [np.nan, np.inf, -np.inf, -0.0]
    y = moesz.decompress(moesz.compress(x, eb=1e-3))
    assert np.isnan(y[3]) and y[10] == np.inf and y[20] == -np.inf and np.signbit(y[30])
    fin = np.isfinite(x)
    assert max_err(x[fin], y[fin]) <= 1e-3


def test_threads_and_out_array():
    x = weights((512, 1024), dtype=ml_dtypes.bfloat16)
    b1 = moesz.compress(x, eb=1e-3, threads=1)
    b2 = moesz.compress(x, eb=1e-3, threads=2)
    assert b1 == b2
    out = np.empty(x.size, dtype=ml_dtypes.bfloat16)
    r = moesz.decompress(b1, out=out, threads=2)
    assert r is out
    assert np.array_equal(out.view(np.uint16), moesz.decompress(b1).view(np.uint16))


def test_buffer_kinds_are_read_in_place():
    x = weights((100, 100))
    b = moesz.compress(x)
    ref = moesz.decompress(b)
    for form in (bytearray(b), memoryview(b), np.frombuffer(b, dtype=np.uint8)):
        assert np.array_equal(moesz.decompress(form), ref)


def test_out_dtype_keeps_bound_in_bf16():
    x = weights((200, 200), dtype=np.float32)
    with pytest.raises(moesz.RangeError, match="no BF16 value within the bound"):
        moesz.compress(x, eb=1e-3, out_dtype="bfloat16")     # |x| ~ 1: bf16 spacing 2^-7 > 2 eb
    x = np.clip(x, -0.1, 0.1)
    b = moesz.compress(x, eb=1e-3, out_dtype="bfloat16")
    assert moesz.stream_info(b)["out_dtype"] == "bfloat16"
    y = moesz.decompress(b, dtype=ml_dtypes.bfloat16)
    assert max_err(x.reshape(-1), y) <= 1e-3


def test_torch_tensors_same_stream_as_numpy():
    torch = pytest.importorskip("torch")
    x = weights((128, 256), dtype=np.float32)
    for tdt, ndt in ((torch.float32, np.float32), (torch.float16, np.float16),
                     (torch.bfloat16, ml_dtypes.bfloat16)):
        t = torch.from_numpy(x).to(tdt)
        a = x.astype(ndt)
        if tdt == torch.bfloat16:     # the same rounding as torch's
            a = t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        assert moesz.compress(t, eb=1e-3) == moesz.compress(a, eb=1e-3)


def test_gil_is_released_during_compress():
    import threading
    import time
    x = weights((2048, 2048), dtype=np.float32)
    done, span = threading.Event(), []

    def work():
        t0 = time.perf_counter()
        moesz.compress(x, eb=1e-4)
        span.append(time.perf_counter() - t0)
        done.set()

    th = threading.Thread(target=work)
    last, gap = time.perf_counter(), 0.0
    th.start()
    while not done.is_set():       # this thread keeps running while the other is inside the C call
        now = time.perf_counter()
        gap, last = max(gap, now - last), now
    th.join()
    assert span[0] > 0.02
    assert gap < 0.5 * span[0], (gap, span[0])
