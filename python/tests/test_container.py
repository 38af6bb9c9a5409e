"""moesz.Container and moesz.compress_model: the container read from Python
equals what `moesz decompress` writes (safetensors parsed independently),
experts equal their slices of the exported tensors, records carry the bound,
and the progress callback counts, cancels and re-raises."""
import os
import subprocess

import numpy as np
import pytest

import moesz
from conftest import read_safetensors


def test_state_dict_equals_moesz_decompress(tiny_msz, moesz_bin, tmp_path):
    out = tmp_path / "export"
    subprocess.run([moesz_bin, "decompress", tiny_msz, "-o", str(out)], check=True, capture_output=True)
    ref = read_safetensors(str(out / "model.safetensors"))
    with moesz.Container(tiny_msz) as c:
        sd = c.state_dict()
        assert c.config == __import__("json").loads((out / "config.json").read_text())
        assert sorted(sd) == sorted(ref)
        for k, v in ref.items():
            assert sd[k].dtype == v.dtype and sd[k].shape == v.shape, k
            assert sd[k].tobytes() == v.tobytes(), k
        dense = c.dense()
        assert set(dense) | {s[0] for s in c.sources()} == set(ref)
        assert not set(dense) & {s[0] for s in c.sources()}


def test_experts_records_and_bound(tiny_msz, tiny):
    orig = read_safetensors(os.path.join(tiny, "model.safetensors"))
    with moesz.Container(tiny_msz) as c:
        cfg = c.config
        L, E = cfg["num_hidden_layers"], cfg["num_local_experts"]
        recs = c.records
        assert len(recs) == 3 * L * E
        assert {r["method"] for r in recs} == {"codec"}
        assert all(r["eb"] == pytest.approx(1e-3) for r in recs)
        assert all(0 < r["stored_bytes"] < r["raw_bytes"] for r in recs)
        for layer, e in ((0, 0), (L - 1, E - 1), (3, 5)):
            ex = c.expert(layer, e)
            base = "model.layers.%d.block_sparse_moe.experts.%d." % (layer, e)
            for mat, w in (("gate", "w1"), ("up", "w3"), ("down", "w2")):
                o = orig[base + w + ".weight"]
                assert ex[mat].shape == o.shape and ex[mat].dtype == o.dtype
                err = np.abs(ex[mat].astype(np.float64) - o.astype(np.float64)).max()
                assert 0 < err <= 1e-3
            f32 = c.expert(layer, e, dtype="float32")
            assert f32["gate"].dtype == np.float32
            assert np.abs(f32["gate"] - orig[base + "w1.weight"].astype(np.float32)).max() <= 1e-3
        assert "tokenizer.json" in c.files and c.file_size == os.path.getsize(tiny_msz)


def test_compress_model_progress_and_methods(tiny, tmp_path):
    seen = []
    s = moesz.compress_model(tiny, tmp_path / "a.msz", method="zstd", progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1] == len(seen)
    assert [d for d, _ in seen] == list(range(1, len(seen) + 1))
    assert s["total_bytes"] == os.path.getsize(tmp_path / "a.msz")
    orig = read_safetensors(os.path.join(tiny, "model.safetensors"))
    with moesz.Container(tmp_path / "a.msz") as c:      # lossless: the exact checkpoint
        sd = c.state_dict()
        assert all(sd[k].tobytes() == orig[k].tobytes() for k in orig)
    with pytest.raises(moesz.MoeszError, match="cancelled"):
        moesz.compress_model(tiny, tmp_path / "b.msz", progress=lambda d, t: d >= 5)
    assert not (tmp_path / "b.msz").exists()

    def boom(d, t):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        moesz.compress_model(tiny, tmp_path / "c.msz", progress=boom)
    assert sorted(os.listdir(tmp_path)) == ["a.msz"]       # no file, no temporary
    s = moesz.compress_model(tiny, tmp_path / "d.msz", eb=1e-2, layer_eb={0: -1, 7: 1e-4}, pipeline="fast")
    with moesz.Container(tmp_path / "d.msz") as c:
        by = {(r["layer"], r["method"]) for r in c.records}
        assert (0, "zstd") in by and (1, "codec") in by
        assert all(r["eb"] == pytest.approx(1e-4) for r in c.records if r["layer"] == 7)
        assert all(r["eb"] == pytest.approx(1e-2) for r in c.records if r["layer"] == 3)


def test_to_state_dict_torch(tiny_msz):
    torch = pytest.importorskip("torch")
    with moesz.Container(tiny_msz) as c:
        sd = c.to_state_dict()
        np_sd = c.state_dict()
        sd32 = c.to_state_dict(dtype=torch.float32)
    k = "model.layers.2.block_sparse_moe.experts.4.w2.weight"
    assert sd[k].dtype == torch.bfloat16 and sd32[k].dtype == torch.float32
    assert np.array_equal(sd32[k].numpy(), np_sd[k].astype(np.float32))


def test_compute_layout_and_resmoe_containers(tiny, tmp_path):
    orig = read_safetensors(os.path.join(tiny, "model.safetensors"))
    moesz.compress_model(tiny, tmp_path / "c.msz", pipeline="compute", eb=1e-3)
    with moesz.Container(tmp_path / "c.msz") as c:
        assert {r["method"] for r in c.records} == {"compute"}
        g = c.expert(1, 2)["gate"]           # the compute layout's bound holds in float32: decoded as float32
        assert g.dtype == np.float32
        o = orig["model.layers.1.block_sparse_moe.experts.2.w1.weight"].astype(np.float32)
        assert 0 < np.abs(g - o).max() <= 1e-3
        assert {s[1] for s in c.sources()} == {"float32"}
    s = moesz.compress_model(tiny, tmp_path / "r.msz", method="resmoe", resmoe_layers=[6, 7], eb=1e-3)
    assert s["resmoe_layers"] == 2
    with moesz.Container(tmp_path / "r.msz") as c:
        by = {r["layer"]: r["method"] for r in c.records}
        assert by[6] == by[7] == "resmoe" and by[0] == "codec"
        e = c.expert(7, 3)
        assert e["down"].shape == orig["model.layers.7.block_sparse_moe.experts.3.w2.weight"].shape
    with moesz.Model(tmp_path / "r.msz", mem="2MiB") as m:
        assert m.logits([1, 2, 3]).shape == (3, m.vocab)
