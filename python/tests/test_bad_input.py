"""Bad input raises moesz.MoeszError (never crashes the interpreter): wrong
dtypes, non-contiguous arrays, truncated, corrupted and foreign buffers, bad
arguments, missing or damaged containers and model folders."""
import os

import numpy as np
import pytest

import moesz


def stream():
    x = (np.random.default_rng(1).standard_normal(5000) * 0.02).astype(np.float32)
    return moesz.compress(x, eb=1e-3)


@pytest.mark.parametrize("bad", [np.zeros(10, np.float64), np.zeros(10, np.int32), np.zeros(10, ">f4"),
                                 [0.1, 0.2], "abc", None])
def test_wrong_dtype_or_type(bad):
    with pytest.raises(moesz.DTypeError) as e:
        moesz.compress(bad)
    assert isinstance(e.value, moesz.MoeszError) and isinstance(e.value, TypeError)


def test_non_contiguous_arrays():
    a = np.zeros((64, 64), np.float32)
    for v in (a[:, ::2], a.T, a[::3]):
        with pytest.raises(moesz.ArgumentError, match="contiguous"):
            moesz.compress(v)


def test_unaligned_array():
    raw = np.zeros(4 * 100 + 1, np.uint8)
    v = raw[1:].view(np.float32)
    assert not v.flags.aligned
    with pytest.raises(moesz.ArgumentError, match="aligned"):
        moesz.compress(v)


def test_torch_non_contiguous_and_wrong_dtype():
    torch = pytest.importorskip("torch")
    t = torch.zeros(32, 32)
    with pytest.raises(moesz.ArgumentError, match="contiguous"):
        moesz.compress(t.t())
    with pytest.raises(moesz.DTypeError):
        moesz.compress(torch.zeros(8, dtype=torch.float64))


def test_bad_arguments():
    a = np.zeros(100, np.float32)
    with pytest.raises(moesz.ArgumentError):
        moesz.compress(a, mode="relative")
    with pytest.raises(moesz.ArgumentError):
        moesz.compress(a, pipeline="zip")
    with pytest.raises(moesz.ArgumentError):
        moesz.compress(a, threads=0)
    with pytest.raises(moesz.MoeszError):
        moesz.compress(a, eb=-1.0)
    with pytest.raises(moesz.MoeszError):
        moesz.compress(a, eb=float("nan"))
    with pytest.raises(moesz.DTypeError):
        moesz.decompress(stream(), dtype=np.int8)
    with pytest.raises(moesz.ArgumentError):
        moesz.decompress(stream(), out=np.empty(3, np.float32))
    with pytest.raises(moesz.ArgumentError):
        moesz.decompress(stream(), out=np.empty(5000, np.float16))
    with pytest.raises(moesz.ArgumentError):
        moesz.decompress(stream(), shape=(7, 7))
    with pytest.raises(moesz.ArgumentError):
        moesz.decompress(12345)


def test_every_truncation_raises():
    b = stream()
    for n in list(range(0, 200)) + list(range(200, len(b), 97)) + [len(b) - 1]:
        with pytest.raises(moesz.MoeszError):
            moesz.decompress(b[:n])
        if n < 64:
            with pytest.raises(moesz.MoeszError):
                moesz.stream_info(b[:n])


def test_corruption_raises():
    b = bytearray(stream())
    caught = 0
    for pos in range(0, len(b), max(1, len(b) // 50)):
        c = bytearray(b)
        c[pos] ^= 0x5A
        try:
            moesz.decompress(bytes(c))
        except moesz.MoeszError:
            caught += 1
    assert caught >= 45      # checksums catch payload damage; header damage fails validation


def test_foreign_bytes_raise():
    with pytest.raises(moesz.FormatError):
        moesz.decompress(b"MOESZ" + bytes(500))
    with pytest.raises(moesz.MoeszError):
        moesz.stream_info(os.urandom(4096))


def test_missing_and_damaged_containers(tmp_path, tiny_msz):
    with pytest.raises(moesz.NotFound):
        moesz.Container(tmp_path / "nope.msz")
    data = open(tiny_msz, "rb").read()
    for n in (0, 10, 100, len(data) // 2, len(data) - 1):
        p = tmp_path / ("t%d.msz" % n)
        p.write_bytes(data[:n])
        with pytest.raises(moesz.MoeszError):
            moesz.Container(p)
    with pytest.raises(moesz.MoeszError):
        moesz.Model(tmp_path / "nope")
    c = moesz.Container(tiny_msz)
    c.close()
    with pytest.raises(moesz.ArgumentError, match="closed"):
        c.expert(0, 0)
    with moesz.Container(tiny_msz) as c:
        with pytest.raises(moesz.MoeszError):
            c.expert(99, 0)
        with pytest.raises(moesz.RangeError):
            c.source(10**6)


def test_model_bad_input(tiny_msz, tiny):
    with moesz.Model(tiny_msz) as m:
        with pytest.raises(moesz.RangeError):
            m.logits([1, 2, m.vocab])
        with pytest.raises(moesz.ArgumentError):
            m.logits([])
        with pytest.raises(moesz.ArgumentError):
            m.logits([[1, 2]])
        with pytest.raises(moesz.ArgumentError):
            m.logits([-1])
        with pytest.raises(moesz.RangeError):
            m.logits(list(range(m.max_ctx + 1)))
    with pytest.raises(moesz.ArgumentError):
        moesz.Model(tiny_msz, cache="random")
    with pytest.raises(moesz.ArgumentError):
        moesz.Model(tiny_msz, mem="lots")
    with pytest.raises(moesz.ArgumentError):
        moesz.Model(tiny, mem="4MiB")


def test_out_of_range_integers_are_refused_not_truncated(tiny_msz, tiny, tmp_path):
    a = np.zeros(100, np.float32)
    with pytest.raises(moesz.ArgumentError):
        moesz.compress(a, threads=2**40)
    with pytest.raises(moesz.ArgumentError):
        moesz.compress(a, eb="x")
    with moesz.Container(tiny_msz) as c:
        for bad in ((2**40, 0), (0, 2**32), ("a", 0), (0.5, 0)):
            with pytest.raises(moesz.ArgumentError):
                c.expert(*bad)
        with pytest.raises(moesz.ArgumentError):
            c.source(-1)
        with pytest.raises(moesz.ArgumentError):
            c.file(3)
        with pytest.raises(moesz.NotFound):
            c.file("nope.json")
    for kw in ({"threads": -5}, {"threads": 2**40}, {"eb": "x"}, {"layer_eb": {300: 1e-3}}, {"method": "lzma"},
               {"pipeline": "compute", "method": "zstd"}, {"method": "resmoe", "keep": 2}):
        with pytest.raises(moesz.ArgumentError):
            moesz.compress_model(tiny, tmp_path / "x.msz", **kw)
    assert not os.listdir(tmp_path)
    for kw in ({"max_ctx": -3}, {"threads": 2**40}, {"mem": 2**70}, {"mem": 0}, {"store": "tape"}):
        with pytest.raises(moesz.ArgumentError):
            moesz.Model(tiny_msz, **kw)
    with moesz.Model(tiny_msz) as m:
        with pytest.raises(moesz.ArgumentError):
            m.generate([1, 2], max_new_tokens=-1)
        with pytest.raises(moesz.ArgumentError):
            m.perplexity("some text here for the model", ctx=8, stride=9)
