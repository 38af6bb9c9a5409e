"""moesz.Model: logits equal transformers' MixtralForCausalLM loaded with
Container.to_state_dict (max |diff| <= 1e-4 in float32), greedy generation
follows its own logits and matches `moesz run`, perplexity matches `moesz ppl`,
and the cache's counters add up under a small budget."""
import os
import subprocess

import numpy as np
import pytest

import moesz

IDS = [1, 415, 2936, 906, 285, 1142, 17, 5, 300, 4000, 12, 99, 1024, 7, 3]


def test_logits_match_transformers(tiny_msz):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    with moesz.Container(tiny_msz) as c:
        cfg = transformers.MixtralConfig(**c.config)
        sd = c.to_state_dict(dtype=torch.float32)
    cfg.torch_dtype = torch.float32
    hf = transformers.MixtralForCausalLM(cfg).to(torch.float32).eval()
    try:
        missing, unexpected = hf.load_state_dict(sd, strict=False)
    except RuntimeError:
        missing, unexpected = ["load_state_dict failed"], []
    if missing or unexpected:   # transformers versions that fuse experts convert on from_pretrained
        hf = transformers.MixtralForCausalLM.from_pretrained(None, config=cfg, state_dict=sd,
                                                             torch_dtype=torch.float32).eval()
    with torch.no_grad():
        ref = hf(torch.tensor([IDS])).logits[0].float().numpy()
    with moesz.Model(tiny_msz, threads=2) as m:
        got = m.logits(IDS)
    assert got.shape == ref.shape == (len(IDS), m.vocab)
    diff = float(np.abs(got - ref).max())
    assert diff <= 1e-4, diff


def test_generate_follows_logits_and_cli(tiny_msz, moesz_bin):
    with moesz.Model(tiny_msz, mem="1MiB", cache="lru", prefetch=True, threads=2) as m:
        new = m.generate(IDS[:5], max_new_tokens=8, stop_at_eos=False)
        assert len(new) == 8
        seq = IDS[:5] + new
        lg = m.logits(seq)
        assert [int(np.argmax(lg[len(IDS[:5]) - 1 + i])) for i in range(8)] == new
        sampled = m.generate(IDS[:5], max_new_tokens=8, temperature=1.0, seed=7, stop_at_eos=False)
        assert sampled == m.generate(IDS[:5], max_new_tokens=8, temperature=1.0, seed=7, stop_at_eos=False)
        st = m.cache_stats()
        cs = st["cache"]
        assert cs["gets"] > 0 and cs["hits"] + cs["misses"] <= cs["gets"]
        assert cs["budget_bytes"] == 1 << 20 and cs["misses"] > 0 and cs["evictions"] > 0
        assert st["engine"]["tokens"] > 0
        text = m.generate("Once upon a time", max_new_tokens=6)
        assert isinstance(text, str)
    r = subprocess.run([moesz_bin, "run", tiny_msz, "--prompt-ids", ",".join(map(str, IDS[:5])), "--print-ids",
                        "--temperature", "0", "--max-tokens", "8", "--ignore-eos"], capture_output=True, text=True,
                       check=True)
    assert [int(t) for t in r.stdout.split()] == new


def test_perplexity_matches_cli(tiny, tiny_msz, moesz_bin, tmp_path):
    card = open(os.path.join(tiny, "README.md"), encoding="utf-8").read()
    p = tmp_path / "t.txt"
    p.write_text(card, encoding="utf-8")
    with moesz.Model(tiny) as m:
        r = m.perplexity(card, ctx=128, stride=64)
        assert r["tokens"] > 100 and r["ppl"] > 1
        assert r["ppl"] == pytest.approx(np.exp(r["nll"] / r["tokens"]))
        assert m.cache_stats()["cache"] is None
    out = subprocess.run([moesz_bin, "ppl", tiny, str(p), "--ctx", "128", "--stride", "64"], capture_output=True,
                         text=True, check=True).stdout
    import re
    cli = float(re.search(r"perplexity ([0-9.]+)", out).group(1))
    assert r["ppl"] == pytest.approx(cli, rel=1e-3)


def test_fast_dot_8_matches_cli(tiny, moesz_bin, tmp_path):
    """A compute-layout container at a coarse bound (4-bit rows): greedy text
    with fast_dot=8 equals `moesz run --fast-dot=8`; other values are refused."""
    out = str(tmp_path / "cl.msz")
    moesz.compress_model(tiny, out, eb=8e-3, method="sz", pipeline="compute")
    with moesz.Model(out, threads=2, fast_dot=8) as m:
        new = m.generate(IDS[:5], max_new_tokens=8, stop_at_eos=False)
    r = subprocess.run([moesz_bin, "run", out, "--fast-dot=8", "--prompt-ids", ",".join(map(str, IDS[:5])),
                        "--print-ids", "--temperature", "0", "--max-tokens", "8", "--ignore-eos", "--threads", "2"],
                       capture_output=True, text=True, check=True)
    assert [int(t) for t in r.stdout.split()] == new
    with pytest.raises(ValueError):
        moesz.Model(out, fast_dot=4)
