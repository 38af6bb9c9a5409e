#!/usr/bin/env python3
"""Builds the tiny random-weight model fixtures under tests/fixtures/<family>/.

Each fixture is a Hugging Face model folder (config.json + model.safetensors,
F32) of one supported family, made with fixed seeds, plus

  tokens.txt    64 token ids (one line, space separated), the same for all
  logits.f32    the reference logits for those tokens, raw little-endian f32 [64, vocab]
  expected.json parameter counts (total, routed experts, other) as the
                reference reports them, the layer pattern and the quirks used

Oracles: for Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE and Llama the model, its
save_pretrained output, its parameter counts and its logits come from
transformers. DeepSeekMoE v1 (model_type "deepseek") is not part of
transformers (its Hub checkpoints ship modeling_deepseek.py as remote code),
so for it `ref_forward` below is the oracle: an independent plain-torch
forward pass written after deepseek-ai's modeling_deepseek.py for
DeepSeekMoE-16B (Llama attention with RoPE, first_k_dense_replace dense MLP
layers, softmax gate over the routed experts, top-k, renormalise only if
norm_topk_prob (denominator + 1e-20), shared experts added without a gate).
The same `ref_forward` is checked against transformers on every other decoder
family before any file is written, so the DeepSeek logits come from code that
reproduces transformers to float32 rounding on the families it knows.

DeepSeek-V3 (`deepseek_v3`: low-rank q, YaRN, interleaved RoPE, 8 experts in 4
groups keeping 2; `deepseek_v3_plain`: q_proj, rotate-half RoPE, one group) and
GLM-4.5 (`glm4_moe`: partial rotary, q/k norm, attention bias, 2 groups keeping
1) come from transformers too, with a random e_score_correction_bias (a buffer
transformers initialises to 0); their expected.json also holds a 32-token
greedy continuation of the first 5 tokens (`greedy`) and the stored value count
(`params_stored`, buffers included). `--only-sigmoid` rewrites just these three.

Switch Transformers is compression-only: its fixture has config, weights and
counts, no logits. `mixtral_stacked` holds the same weights as `mixtral` in
the stacked 3-D expert layout of transformers 5.x modules
(mlp.experts.gate_up_proj [E, 2n, d], mlp.experts.down_proj [E, d, n],
router mlp.gate.weight): transformers 5.x converts back to the per-expert Hub
layout in save_pretrained, so this script writes the module state dict
directly, and checks that transformers loads it to the same logits.

Usage: python3 tools/make_fixtures.py [--out tests/fixtures] [--only-sigmoid]
"""
import argparse
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file, load_file

SEQ = 64
VOCAB = 256
SEED = 1234


def tokens():
    g = np.random.default_rng(SEED)
    return [int(t) for t in g.integers(0, VOCAB, size=SEQ)]


# ---------------------------------------------------------------------------
# reference forward pass (plain torch, float32), used as the DeepSeek oracle
# ---------------------------------------------------------------------------

def rmsnorm(x, w, eps):
    x32 = x.float()
    v = x32.pow(2).mean(-1, keepdim=True)
    return w * (x32 * torch.rsqrt(v + eps)).to(x.dtype)


def rope(x, theta, pos):
    # x [heads, T, hd]; rotate_half convention (Llama/Mixtral/Qwen/OLMoE/DeepSeek)
    hd = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    ang = pos[:, None].float() * inv[None, :]
    emb = torch.cat([ang, ang], dim=-1)
    cos, sin = emb.cos(), emb.sin()
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    rot = torch.cat([-x2, x1], dim=-1)
    return x * cos + rot * sin


def swiglu(h, g, u, d):
    return F.linear(F.silu(F.linear(h, g)) * F.linear(h, u), d)


def ref_forward(sd, c, toks):
    """c: dict with family, n_layers, hidden, heads, kv_heads, head_dim, eps,
    theta, is_moe[], n_experts, top_k, norm_topk, shared ('none'|'qwen2'|
    'deepseek'), qkv_bias, qk_norm (0|1 per head|2 whole), clip_qkv, tie,
    mixtral_names. sd: name -> tensor, per-expert Hub layout."""
    T = len(toks)
    ids = torch.tensor(toks)
    x = sd["model.embed_tokens.weight"][ids]
    pos = torch.arange(T)
    H, KV, hd = c["heads"], c["kv_heads"], c["head_dim"]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for L in range(c["n_layers"]):
        p = f"model.layers.{L}."
        h = rmsnorm(x, sd[p + "input_layernorm.weight"], c["eps"])
        q = F.linear(h, sd[p + "self_attn.q_proj.weight"], sd.get(p + "self_attn.q_proj.bias"))
        k = F.linear(h, sd[p + "self_attn.k_proj.weight"], sd.get(p + "self_attn.k_proj.bias"))
        v = F.linear(h, sd[p + "self_attn.v_proj.weight"], sd.get(p + "self_attn.v_proj.bias"))
        if c["qk_norm"] == 2:
            q = rmsnorm(q, sd[p + "self_attn.q_norm.weight"], c["eps"])
            k = rmsnorm(k, sd[p + "self_attn.k_norm.weight"], c["eps"])
        if c.get("clip_qkv"):
            cl = c["clip_qkv"]
            q, k, v = q.clamp(-cl, cl), k.clamp(-cl, cl), v.clamp(-cl, cl)
        q = q.view(T, H, hd).transpose(0, 1)
        k = k.view(T, KV, hd).transpose(0, 1)
        v = v.view(T, KV, hd).transpose(0, 1)
        if c["qk_norm"] == 1:
            q = rmsnorm(q, sd[p + "self_attn.q_norm.weight"], c["eps"])
            k = rmsnorm(k, sd[p + "self_attn.k_norm.weight"], c["eps"])
        q, k = rope(q, c["theta"], pos), rope(k, c["theta"], pos)
        k = k.repeat_interleave(H // KV, dim=0)
        v = v.repeat_interleave(H // KV, dim=0)
        att = (q @ k.transpose(1, 2)) / math.sqrt(hd) + mask
        att = torch.softmax(att.float(), dim=-1)
        o = (att @ v).transpose(0, 1).reshape(T, H * hd)
        x = x + F.linear(o, sd[p + "self_attn.o_proj.weight"])
        h = rmsnorm(x, sd[p + "post_attention_layernorm.weight"], c["eps"])
        if not c["is_moe"][L]:
            m = p + "mlp."
            y = swiglu(h, sd[m + "gate_proj.weight"], sd[m + "up_proj.weight"], sd[m + "down_proj.weight"])
        else:
            m = p + ("block_sparse_moe." if c["mixtral_names"] else "mlp.")
            probs = torch.softmax(F.linear(h, sd[m + "gate.weight"]).float(), dim=-1)
            w, idx = torch.topk(probs, c["top_k"], dim=-1)
            if c["norm_topk"]:
                w = w / (w.sum(-1, keepdim=True) + (1e-20 if c["shared"] == "deepseek" else 0.0))
            y = torch.zeros_like(h)
            names = ("w1", "w3", "w2") if c["mixtral_names"] else ("gate_proj", "up_proj", "down_proj")
            for e in range(c["n_experts"]):
                sel = (idx == e)
                rows = sel.any(-1).nonzero().flatten()
                if len(rows) == 0:
                    continue
                we = (w * sel).sum(-1)[rows]
                ep = f"{m}experts.{e}."
                out = swiglu(h[rows], sd[ep + names[0] + ".weight"], sd[ep + names[1] + ".weight"],
                             sd[ep + names[2] + ".weight"])
                y[rows] += out * we[:, None]
            if c["shared"] == "qwen2":
                s = m + "shared_expert."
                so = swiglu(h, sd[s + "gate_proj.weight"], sd[s + "up_proj.weight"], sd[s + "down_proj.weight"])
                y = y + torch.sigmoid(F.linear(h, sd[m + "shared_expert_gate.weight"])) * so
            elif c["shared"] == "deepseek":
                s = m + "shared_experts."
                y = y + swiglu(h, sd[s + "gate_proj.weight"], sd[s + "up_proj.weight"], sd[s + "down_proj.weight"])
        x = x + y
    x = rmsnorm(x, sd["model.norm.weight"], c["eps"])
    head = sd["model.embed_tokens.weight"] if c["tie"] else sd["lm_head.weight"]
    return F.linear(x, head)


def ref_cfg_from_hf(cfg, family, is_moe):
    g = lambda k, d=None: getattr(cfg, k, d) if getattr(cfg, k, None) is not None else d
    theta = g("rope_theta")
    if theta is None:
        rp = g("rope_parameters", {}) or {}
        theta = rp.get("rope_theta", 10000.0)
    heads = cfg.num_attention_heads
    return dict(
        family=family, n_layers=cfg.num_hidden_layers, heads=heads,
        kv_heads=g("num_key_value_heads", heads),
        head_dim=g("head_dim", cfg.hidden_size // heads), eps=cfg.rms_norm_eps, theta=theta,
        is_moe=is_moe, n_experts=g("num_local_experts", g("num_experts", 0)),
        top_k=g("num_experts_per_tok", 0),
        norm_topk=True if family == "mixtral" else bool(g("norm_topk_prob", False)),
        shared="qwen2" if family == "qwen2_moe" else "none",
        qk_norm={"qwen3_moe": 1, "olmoe": 2}.get(family, 0), clip_qkv=g("clip_qkv"),
        tie=bool(g("tie_word_embeddings", False)), mixtral_names=family == "mixtral")


# ---------------------------------------------------------------------------
# fixture writing
# ---------------------------------------------------------------------------

def write_common(d, toks, logits, expected):
    with open(os.path.join(d, "tokens.txt"), "w") as f:
        f.write(" ".join(str(t) for t in toks) + "\n")
    if logits is not None:
        arr = logits.detach().float().numpy().astype("<f4")
        assert arr.shape == (SEQ, expected["vocab"])
        arr.tofile(os.path.join(d, "logits.f32"))
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")


STATS_EB = 0.01


def matrix_stats(w, eb=STATS_EB):
    """numpy oracle for moesz_matview_stats: mean, std (population), min, max and the
    order-0 entropy (bits/value) of round-half-even(x / (2 eb)) computed in float64."""
    x = np.asarray(w, dtype=np.float32).astype(np.float64).ravel()
    q = np.rint(x / (2.0 * eb))
    _, cnt = np.unique(q, return_counts=True)
    p = cnt / cnt.sum()
    return dict(mean=float(x.mean()), std=float(x.std()), min=float(x.min()), max=float(x.max()),
                entropy_bits=float(-(p * np.log2(p)).sum()), distinct=int(len(cnt)), eb=eb)


def add_stats(expected, sd, names):
    """Statistics of a few expert matrices (name -> logical [rows, cols] tensor)."""
    expected["stats"] = {k: matrix_stats(sd[v].numpy()) for k, v in names.items()}


def routed_expert_params(named):
    n = 0
    for k, v in named:
        if ".experts." in k and "shared" not in k:
            n += v.numel()
    return n


def perturb(model, seed):
    """Random weights with fixed seed; norm weights around 1 so they matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:  # biases
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[-1]
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))


def hf_family(out, name, cfg_cls, model_cls, kw, family, toks, is_moe_fn, quirks, bf16=False):
    """bf16: weights rounded to bfloat16 and stored as BF16; the logits are
    transformers' float32 forward pass on those (exactly representable) weights."""
    torch.manual_seed(SEED)
    cfg = cfg_cls(**kw)
    model = model_cls(cfg).eval()
    perturb(model, SEED + len(name))
    if bf16:
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).to(torch.float32))
    d = os.path.join(out, name)
    shutil.rmtree(d, ignore_errors=True)
    if bf16:
        import copy
        copy.deepcopy(model).to(torch.bfloat16).save_pretrained(d)
    else:
        model.save_pretrained(d)
    for extra in ("generation_config.json",):
        p = os.path.join(d, extra)
        if os.path.exists(p):
            os.remove(p)
    with torch.no_grad():
        logits = model(torch.tensor([toks])).logits[0]
    is_moe = [is_moe_fn(i) for i in range(cfg.num_hidden_layers)]
    # the reference forward must reproduce transformers on this family
    sd = {k: v.float() for k, v in load_file(os.path.join(d, "model.safetensors")).items()}
    ref = ref_forward(sd, ref_cfg_from_hf(cfg, family, is_moe), toks)
    diff = (ref - logits).abs().max().item()
    print(f"{name}: reference forward vs transformers max |diff| = {diff:.3g}")
    assert diff < 1e-4, f"{name}: reference forward disagrees with transformers ({diff})"
    total = model.num_parameters()
    experts = routed_expert_params(model.named_parameters())
    expected = dict(family=family, architecture=type(model).__name__, vocab=cfg.vocab_size,
                    dtype="BF16" if bf16 else "F32",
                    seq=SEQ, params_total=total, params_experts=experts,
                    params_other=total - experts, n_tensors=len(sd), is_moe=is_moe,
                    oracle="transformers " + __import__("transformers").__version__,
                    reference_max_abs_diff=diff, quirks=quirks,
                    logits_max_abs=float(logits.abs().max()))
    if any(is_moe):
        L = is_moe.index(True)
        m = f"model.layers.{L}." + ("block_sparse_moe" if family == "mixtral" else "mlp")
        nm = ("w1", "w3", "w2") if family == "mixtral" else ("gate_proj", "up_proj", "down_proj")
        add_stats(expected, sd, {f"{L}.1.{k}": f"{m}.experts.1.{n}.weight"
                                 for k, n in zip(("gate", "up", "down"), nm)})
    else:
        add_stats(expected, sd, {f"0.0.{k}": f"model.layers.0.mlp.{k}_proj.weight"
                                 for k in ("gate", "up", "down")})
    write_common(d, toks, logits, expected)
    return model, cfg, logits


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))
    ap.add_argument("--only-sigmoid", action="store_true",
                    help="write only the DeepSeek-V3 / GLM-4.5 fixtures (the others stay as they are)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    toks = tokens()
    import transformers as T
    if a.only_sigmoid:
        make_sigmoid_families(out, toks)
        return 0

    base = dict(vocab_size=VOCAB, hidden_size=32, num_attention_heads=4, max_position_embeddings=128,
                bos_token_id=1, eos_token_id=2, pad_token_id=0)

    # Mixtral: GQA (4 query heads, 2 kv heads), 6 experts top-2, theta 1e6.
    mix_kw = dict(base, intermediate_size=24, num_hidden_layers=2, num_key_value_heads=2,
                  num_local_experts=6, num_experts_per_tok=2, rope_theta=1e6, tie_word_embeddings=False)
    mix_model, mix_cfg, mix_logits = hf_family(
        out, "mixtral", T.MixtralConfig, T.MixtralForCausalLM, mix_kw, "mixtral", toks, lambda i: True,
        ["gqa 4/2", "renormalised top-2"])

    # Qwen2-MoE: shared expert + sigmoid gate, norm_topk_prob false, layer 1
    # dense through mlp_only_layers, qkv bias.
    q2_kw = dict(base, intermediate_size=40, moe_intermediate_size=16, shared_expert_intermediate_size=24,
                 num_hidden_layers=3, num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
                 norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[1], qkv_bias=True,
                 tie_word_embeddings=False)
    hf_family(out, "qwen2_moe", T.Qwen2MoeConfig, T.Qwen2MoeForCausalLM, q2_kw, "qwen2_moe", toks,
              lambda i: i != 1, ["shared expert + gate", "norm_topk_prob false", "mlp_only_layers [1]",
                                 "qkv bias"])

    # Qwen3-MoE: per-head q/k norm, head_dim 16 != 32/4, norm_topk_prob true.
    q3_kw = dict(base, intermediate_size=40, moe_intermediate_size=16, head_dim=16, num_hidden_layers=2,
                 num_key_value_heads=2, num_experts=6, num_experts_per_tok=3, norm_topk_prob=True,
                 decoder_sparse_step=1, mlp_only_layers=[], tie_word_embeddings=False)
    hf_family(out, "qwen3_moe", T.Qwen3MoeConfig, T.Qwen3MoeForCausalLM, q3_kw, "qwen3_moe", toks,
              lambda i: True, ["per-head q/k norm", "head_dim 16 (hidden/heads = 8)", "norm_topk_prob true"])
    # the same family with BF16 weights, as real checkpoints store them
    hf_family(out, "qwen3_moe_bf16", T.Qwen3MoeConfig, T.Qwen3MoeForCausalLM, q3_kw, "qwen3_moe", toks,
              lambda i: True, ["BF16 weights; logits from the float32 forward on them"], bf16=True)

    # OLMoE: q/k norm over the whole projection, clip_qkv, 8 experts top-2, MHA.
    ol_kw = dict(base, intermediate_size=16, num_hidden_layers=2, num_key_value_heads=4, num_experts=8,
                 num_experts_per_tok=2, norm_topk_prob=False, clip_qkv=1.5, tie_word_embeddings=False)
    hf_family(out, "olmoe", T.OlmoeConfig, T.OlmoeForCausalLM, ol_kw, "olmoe", toks, lambda i: True,
              ["q/k norm over the whole projection", "clip_qkv 1.5 (after the norms)", "norm_topk_prob false"])

    # Llama: dense, tied embeddings, GQA.
    ll_kw = dict(base, intermediate_size=64, num_hidden_layers=2, num_key_value_heads=2,
                 tie_word_embeddings=True, rope_theta=10000.0)
    hf_family(out, "llama", T.LlamaConfig, T.LlamaForCausalLM, ll_kw, "llama", toks, lambda i: False,
              ["tied embeddings", "gqa 4/2"])

    make_real_configs(out)
    make_mixtral_stacked(out, mix_model, mix_cfg, mix_logits, toks)
    make_deepseek(out, toks)
    make_switch(out)
    make_sigmoid_families(out, toks)
    total = 0
    for root, _, files in os.walk(out):
        if any(root.endswith(f) for f in ("tensor",)):
            continue
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print(f"model fixtures: {total / 1e6:.2f} MB")


# Configurations with the shapes of published checkpoints (values as in their
# config.json files on the Hub). Only the config is written; the parameter
# counts come from transformers instantiating the model on the meta device.
REAL = {
    "mixtral-8x7b": ("MixtralConfig", "MixtralForCausalLM", dict(
        vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, num_local_experts=8, num_experts_per_tok=2, max_position_embeddings=32768,
        rms_norm_eps=1e-5, rope_theta=1e6, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)),
    "olmoe-1b-7b": ("OlmoeConfig", "OlmoeForCausalLM", dict(
        vocab_size=50304, hidden_size=2048, intermediate_size=1024, num_hidden_layers=16, num_attention_heads=16,
        num_key_value_heads=16, num_experts=64, num_experts_per_tok=8, max_position_embeddings=4096,
        rms_norm_eps=1e-5, rope_theta=10000.0, clip_qkv=None, norm_topk_prob=False, tie_word_embeddings=False,
        pad_token_id=1, eos_token_id=50279)),
    "qwen3-30b-a3b": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM", dict(
        vocab_size=151936, hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768, head_dim=128,
        num_hidden_layers=48, num_attention_heads=32, num_key_value_heads=4, num_experts=128,
        num_experts_per_tok=8, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
        max_position_embeddings=40960, rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=False,
        bos_token_id=151643, eos_token_id=151645)),
    "qwen1.5-moe-a2.7b": ("Qwen2MoeConfig", "Qwen2MoeForCausalLM", dict(
        vocab_size=151936, hidden_size=2048, intermediate_size=5632, moe_intermediate_size=1408,
        shared_expert_intermediate_size=5632, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=16,
        num_experts=60, num_experts_per_tok=4, norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[],
        max_position_embeddings=8192, rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=False,
        bos_token_id=151643, eos_token_id=151643)),
    "switch-base-8": ("SwitchTransformersConfig", "SwitchTransformersForConditionalGeneration", dict(
        vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_decoder_layers=12, num_heads=12,
        num_experts=8, encoder_sparse_step=2, decoder_sparse_step=2, relative_attention_num_buckets=32,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)),
}


def make_real_configs(out):
    import transformers as T
    base = os.path.join(out, "configs")
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    expected = {}
    for name, (cc, mc, kw) in REAL.items():
        cfg = getattr(T, cc)(**kw)
        cfg.architectures = [mc]
        with torch.device("meta"):
            model = getattr(T, mc)(cfg)
        total = model.num_parameters()
        experts = sum(p.numel() for k, p in model.named_parameters() if ".experts." in k and "shared" not in k)
        d = os.path.join(base, name)
        os.makedirs(d)
        cfg.save_pretrained(d)
        expected[name] = dict(params_total=total, params_experts=experts, params_other=total - experts)
        print(f"configs/{name}: {total / 1e9:.3f} B parameters, {experts / 1e9:.3f} B in routed experts")
    # DeepSeekMoE-16B (deepseek-ai/deepseek-moe-16b-base config.json); not in transformers:
    # counts by hand from modeling_deepseek.py's module shapes.
    ds = dict(architectures=["DeepseekForCausalLM"], model_type="deepseek", vocab_size=102400, hidden_size=2048,
              intermediate_size=10944, moe_intermediate_size=1408, num_hidden_layers=28, num_attention_heads=16,
              num_key_value_heads=16, n_shared_experts=2, n_routed_experts=64, num_experts_per_tok=6,
              moe_layer_freq=1, first_k_dense_replace=1, norm_topk_prob=False, scoring_func="softmax",
              aux_loss_alpha=0.001, seq_aux=True, hidden_act="silu", max_position_embeddings=4096,
              rms_norm_eps=1e-6, rope_theta=10000, tie_word_embeddings=False, bos_token_id=100000,
              eos_token_id=100001, attention_bias=False, torch_dtype="bfloat16")
    d_, L, V = ds["hidden_size"], ds["num_hidden_layers"], ds["vocab_size"]
    attn = 4 * d_ * d_ + 2 * d_
    dense = 3 * ds["intermediate_size"] * d_
    experts_layer = ds["n_routed_experts"] * 3 * ds["moe_intermediate_size"] * d_
    moe_other = ds["n_routed_experts"] * d_ + 3 * ds["moe_intermediate_size"] * ds["n_shared_experts"] * d_
    nd = ds["first_k_dense_replace"]
    total = 2 * V * d_ + d_ + L * attn + nd * dense + (L - nd) * (experts_layer + moe_other)
    experts = (L - nd) * experts_layer
    dd = os.path.join(base, "deepseek-moe-16b")
    os.makedirs(dd)
    with open(os.path.join(dd, "config.json"), "w") as f:
        json.dump(ds, f, indent=2)
        f.write("\n")
    expected["deepseek-moe-16b"] = dict(params_total=total, params_experts=experts, params_other=total - experts)
    print(f"configs/deepseek-moe-16b: {total / 1e9:.3f} B parameters (published: 16.4 B)")
    with open(os.path.join(base, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")


def make_mixtral_stacked(out, model, cfg, logits, toks):
    """Same weights as mixtral/, saved as the transformers 5.x module state dict
    (stacked experts), loaded back through transformers as a check."""
    import transformers as T
    d = os.path.join(out, "mixtral_stacked")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    sd = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    assert any(k.endswith("mlp.experts.gate_up_proj") for k in sd), "transformers no longer stacks experts"
    save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(os.path.join(out, "mixtral", "config.json"), os.path.join(d, "config.json"))
    back = T.MixtralForCausalLM.from_pretrained(d).eval()
    with torch.no_grad():
        l2 = back(torch.tensor([toks])).logits[0]
    diff = (l2 - logits).abs().max().item()
    print(f"mixtral_stacked: transformers reload max |diff| = {diff:.3g}")
    assert diff == 0.0
    exp = json.load(open(os.path.join(out, "mixtral", "expected.json")))
    exp.update(n_tensors=len(sd), quirks=exp["quirks"] + ["stacked 3-D experts (transformers 5.x module layout)"])
    write_common(d, toks, logits, exp)


def make_deepseek(out, toks):
    """DeepSeekMoE v1: 3 layers, layer 0 dense (first_k_dense_replace 1),
    6 routed experts top-2, 2 shared experts, norm_topk_prob false."""
    cfg = dict(architectures=["DeepseekForCausalLM"], model_type="deepseek", vocab_size=VOCAB, hidden_size=32,
               intermediate_size=48, moe_intermediate_size=16, num_hidden_layers=3, num_attention_heads=4,
               num_key_value_heads=4, n_shared_experts=2, n_routed_experts=6, num_experts_per_tok=2,
               moe_layer_freq=1, first_k_dense_replace=1, norm_topk_prob=False, scoring_func="softmax",
               aux_loss_alpha=0.001, seq_aux=True, hidden_act="silu", max_position_embeddings=128,
               initializer_range=0.02, rms_norm_eps=1e-6, use_cache=True, pad_token_id=0, bos_token_id=1,
               eos_token_id=2, pretraining_tp=1, tie_word_embeddings=False, rope_theta=10000.0,
               rope_scaling=None, attention_bias=False, attention_dropout=0.0, torch_dtype="float32")
    g = torch.Generator().manual_seed(SEED + 77)
    d_, n, ne, nsh, V = 32, 16, 6, 2, VOCAB
    rnd = lambda *s: torch.randn(*s, generator=g) / math.sqrt(s[-1])
    nrm = lambda k: 1.0 + 0.2 * torch.randn(k, generator=g)
    sd = {"model.embed_tokens.weight": torch.randn(V, d_, generator=g), "model.norm.weight": nrm(d_),
          "lm_head.weight": rnd(V, d_)}
    is_moe = []
    for L in range(3):
        p = f"model.layers.{L}."
        sd[p + "input_layernorm.weight"] = nrm(d_)
        sd[p + "post_attention_layernorm.weight"] = nrm(d_)
        for m in ("q", "k", "v", "o"):
            sd[p + f"self_attn.{m}_proj.weight"] = rnd(d_, d_)
        moe = L >= cfg["first_k_dense_replace"] and L % cfg["moe_layer_freq"] == 0
        is_moe.append(moe)
        if not moe:
            w = cfg["intermediate_size"]
            sd[p + "mlp.gate_proj.weight"] = rnd(w, d_)
            sd[p + "mlp.up_proj.weight"] = rnd(w, d_)
            sd[p + "mlp.down_proj.weight"] = rnd(d_, w)
            continue
        sd[p + "mlp.gate.weight"] = rnd(ne, d_)
        for e in range(ne):
            sd[p + f"mlp.experts.{e}.gate_proj.weight"] = rnd(n, d_)
            sd[p + f"mlp.experts.{e}.up_proj.weight"] = rnd(n, d_)
            sd[p + f"mlp.experts.{e}.down_proj.weight"] = rnd(d_, n)
        w = n * nsh
        sd[p + "mlp.shared_experts.gate_proj.weight"] = rnd(w, d_)
        sd[p + "mlp.shared_experts.up_proj.weight"] = rnd(w, d_)
        sd[p + "mlp.shared_experts.down_proj.weight"] = rnd(d_, w)
    c = dict(family="deepseek", n_layers=3, heads=4, kv_heads=4, head_dim=8, eps=cfg["rms_norm_eps"],
             theta=cfg["rope_theta"], is_moe=is_moe, n_experts=ne, top_k=2, norm_topk=False, shared="deepseek",
             qk_norm=0, clip_qkv=None, tie=False, mixtral_names=False)
    with torch.no_grad():
        logits = ref_forward(sd, c, toks)
    d = os.path.join(out, "deepseek")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    total = sum(v.numel() for v in sd.values())
    experts = routed_expert_params(sd.items())
    expected = dict(family="deepseek", architecture="DeepseekForCausalLM", vocab=V, seq=SEQ,
                    params_total=total, params_experts=experts, params_other=total - experts,
                    n_tensors=len(sd), is_moe=is_moe,
                    oracle="tools/make_fixtures.py ref_forward (after deepseek-ai modeling_deepseek.py; "
                           "checked against transformers on the other decoder families)",
                    quirks=["first_k_dense_replace 1", "2 shared experts (fused, no gate)",
                            "norm_topk_prob false"],
                    logits_max_abs=float(logits.abs().max()))
    add_stats(expected, sd, {f"1.1.{k}": f"model.layers.1.mlp.experts.1.{k}_proj.weight"
                             for k in ("gate", "up", "down")})
    write_common(d, toks, logits, expected)
    print("deepseek: written with the reference forward")


# ---------------------------------------------------------------------------
# DeepSeek-V3 (MLA) and GLM-4.5: transformers is the oracle
# ---------------------------------------------------------------------------

GREEDY_PROMPT = 5
GREEDY_STEPS = 32


def greedy_ids(model, toks, eos):
    """Greedy continuation of toks (full forward per step, stops before EOS)."""
    ids, gen = list(toks), []
    with torch.no_grad():
        for _ in range(GREEDY_STEPS):
            nxt = int(model(torch.tensor([ids])).logits[0, -1].argmax())
            if nxt == eos:
                break
            gen.append(nxt)
            ids.append(nxt)
    return gen


def hf_sigmoid_family(out, name, cfg_cls, model_cls, kw, family, toks, quirks):
    """A DeepSeek-V3 / GLM-4.5 fixture: random weights (perturb), a random
    e_score_correction_bias (a buffer transformers leaves at 0), logits of the
    64 tokens and a 32-step greedy continuation, all from transformers."""
    torch.manual_seed(SEED)
    cfg = cfg_cls(**kw)
    model = model_cls(cfg).eval()
    perturb(model, SEED + len(name))
    g = torch.Generator().manual_seed(SEED + 5 * len(name))
    with torch.no_grad():
        for k, b in model.named_buffers():
            if k.endswith("e_score_correction_bias"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
    d = os.path.join(out, name)
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d)
    p = os.path.join(d, "generation_config.json")
    if os.path.exists(p):
        os.remove(p)
    with torch.no_grad():
        logits = model(torch.tensor([toks])).logits[0]
    # the saved folder must load back to the same logits (buffers included)
    back = model_cls.from_pretrained(d).eval()
    with torch.no_grad():
        diff = (back(torch.tensor([toks])).logits[0] - logits).abs().max().item()
    assert diff == 0.0, f"{name}: reload changes the logits ({diff})"
    sd = load_file(os.path.join(d, "model.safetensors"))
    nl = cfg.num_hidden_layers
    is_moe = [i >= cfg.first_k_dense_replace for i in range(nl)]
    total = model.num_parameters()
    experts = routed_expert_params(model.named_parameters())
    stored = sum(v.numel() for v in sd.values())
    expected = dict(family=family, architecture=type(model).__name__, vocab=cfg.vocab_size, dtype="F32",
                    seq=SEQ, params_total=total, params_experts=experts, params_other=total - experts,
                    params_stored=stored, n_tensors=len(sd), is_moe=is_moe,
                    oracle="transformers " + __import__("transformers").__version__, quirks=quirks,
                    logits_max_abs=float(logits.abs().max()),
                    greedy=dict(prompt=toks[:GREEDY_PROMPT],
                                generated=greedy_ids(model, toks[:GREEDY_PROMPT], cfg.eos_token_id)))
    write_common(d, toks, logits, expected)
    print(f"{name}: {len(sd)} tensors, {stored} values, greedy {len(expected['greedy']['generated'])} ids")


def make_sigmoid_families(out, toks):
    import transformers as T
    base = dict(vocab_size=VOCAB, hidden_size=32, num_attention_heads=4, bos_token_id=1, eos_token_id=2,
                pad_token_id=0, tie_word_embeddings=False)
    yarn = dict(rope_type="yarn", type="yarn", factor=4.0, original_max_position_embeddings=32, beta_fast=32.0,
                beta_slow=1.0, mscale=1.0, mscale_all_dim=0.8, rope_theta=10000.0)
    # DeepSeek-V3: q low-rank, YaRN (64 tokens > original 32), 8 experts in 4 groups (keep 2),
    # top-3, a dense first layer, one shared expert, v_head_dim != qk_nope_head_dim.
    v3 = dict(base, intermediate_size=40, moe_intermediate_size=12, num_hidden_layers=3, num_key_value_heads=4,
              n_routed_experts=8, num_experts_per_tok=3, n_group=4, topk_group=2, n_shared_experts=1,
              first_k_dense_replace=1, routed_scaling_factor=2.5, norm_topk_prob=True, q_lora_rank=16,
              kv_lora_rank=12, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=6, rope_interleave=True,
              max_position_embeddings=128)
    v3.update(rope_kw(T.DeepseekV3Config, yarn))
    hf_sigmoid_family(out, "deepseek_v3", T.DeepseekV3Config, T.DeepseekV3ForCausalLM, v3, "deepseek_v3", toks,
                      ["MLA q_lora_rank 16, kv_lora_rank 12, nope 8 + rope 4, v 6",
                       "YaRN factor 4 from 32 positions, mscale 1 / mscale_all_dim 0.8",
                       "rope_interleave", "8 experts in 4 groups, topk_group 2, top-3",
                       "sigmoid + e_score_correction_bias", "routed_scaling_factor 2.5",
                       "first_k_dense_replace 1", "1 shared expert"])
    # the other branches: plain q_proj (q_lora_rank null), rotate-half RoPE without scaling,
    # no renormalisation, one group
    v3b = dict(base, intermediate_size=24, moe_intermediate_size=8, num_hidden_layers=2, num_key_value_heads=4,
               n_routed_experts=6, num_experts_per_tok=2, n_group=1, topk_group=1, n_shared_experts=2,
               first_k_dense_replace=1, routed_scaling_factor=1.0, norm_topk_prob=False, q_lora_rank=None,
               kv_lora_rank=8, qk_nope_head_dim=4, qk_rope_head_dim=4, v_head_dim=8, rope_interleave=False,
               max_position_embeddings=128, rope_theta=10000.0)
    hf_sigmoid_family(out, "deepseek_v3_plain", T.DeepseekV3Config, T.DeepseekV3ForCausalLM, v3b, "deepseek_v3",
                      toks, ["q_lora_rank null (q_proj)", "rope_interleave false, no scaling",
                             "norm_topk_prob false", "n_group 1", "2 shared experts"])
    # GLM-4.5: partial rotary 0.5 of head_dim 16 (!= 32 / 4), q/k norm, attention bias, GQA 4/2,
    # 8 experts in 2 groups (keep 1), top-3, dense first layer.
    glm = dict(base, intermediate_size=40, moe_intermediate_size=12, num_hidden_layers=3, num_key_value_heads=2,
               head_dim=16, partial_rotary_factor=0.5, use_qk_norm=True, attention_bias=True,
               n_routed_experts=8, num_experts_per_tok=3, n_group=2, topk_group=1, n_shared_experts=1,
               first_k_dense_replace=1, routed_scaling_factor=1.5, norm_topk_prob=True,
               max_position_embeddings=128, rope_theta=10000.0)
    hf_sigmoid_family(out, "glm4_moe", T.Glm4MoeConfig, T.Glm4MoeForCausalLM, glm, "glm4_moe", toks,
                      ["partial_rotary_factor 0.5 (8 of 16 dims)", "use_qk_norm", "attention_bias (q/k/v)",
                       "gqa 4/2", "8 experts in 2 groups, topk_group 1, top-3", "routed_scaling_factor 1.5",
                       "first_k_dense_replace 1"])


def rope_kw(cfg_cls, yarn):
    """rope_scaling (transformers 4.x) or rope_parameters (5.x) for a config class."""
    import inspect
    params = inspect.signature(cfg_cls.__init__).parameters
    if "rope_parameters" in params:
        return dict(rope_parameters=dict(yarn))
    y = {k: v for k, v in yarn.items() if k != "rope_theta"}
    return dict(rope_scaling=y, rope_theta=yarn["rope_theta"])


def make_switch(out):
    import transformers as T
    torch.manual_seed(SEED)
    cfg = T.SwitchTransformersConfig(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=24, num_layers=2,
                                     num_decoder_layers=2, num_heads=4, num_experts=4, encoder_sparse_step=2,
                                     decoder_sparse_step=2, relative_attention_num_buckets=8,
                                     decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    model = T.SwitchTransformersForConditionalGeneration(cfg).eval()
    perturb(model, SEED + 99)
    d = os.path.join(out, "switch")
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d)
    p = os.path.join(d, "generation_config.json")
    if os.path.exists(p):
        os.remove(p)
    sd = load_file(os.path.join(d, "model.safetensors"))
    total = model.num_parameters()
    experts = sum(v.numel() for k, v in model.named_parameters() if ".experts." in k)
    n_enc, n_dec = cfg.num_layers, cfg.num_decoder_layers
    is_moe = [(i % 2 == 1) for i in range(n_enc)] + [(i % 2 == 1) for i in range(n_dec)]
    expected = dict(family="switch", architecture=type(model).__name__, vocab=VOCAB, params_total=total,
                    params_experts=experts, params_other=total - experts, n_tensors=len(sd), is_moe=is_moe,
                    oracle="transformers " + T.__version__, quirks=["encoder-decoder", "sparse every 2nd block"])
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")
    print("switch: written")


if __name__ == "__main__":
    sys.exit(main())
