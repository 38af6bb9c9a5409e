#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/fuzz_model.c: byte 0 selects the tiny
configuration built into the target (0 Mixtral, 1 Qwen2-MoE, 2 DeepSeek,
3 Switch, 4 gpt-oss), the rest is a complete safetensors checkpoint for it.
Usage: python3 tools/make_fuzz_seeds.py [--out fuzz/corpus/fuzz_model]"""
import argparse
import os

import numpy as np
from safetensors.numpy import save

D, N = 4, 2


def w(*shape, k=[0]):
    k[0] += 1
    return (np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) * 0.01 + k[0]).astype(np.float32)


def attn(p, kv=4):
    return {p + "input_layernorm.weight": w(D), p + "post_attention_layernorm.weight": w(D),
            p + "self_attn.q_proj.weight": w(4, D), p + "self_attn.k_proj.weight": w(kv, D),
            p + "self_attn.v_proj.weight": w(kv, D), p + "self_attn.o_proj.weight": w(D, 4)}


def top():
    return {"model.embed_tokens.weight": w(4, D), "model.norm.weight": w(D), "lm_head.weight": w(4, D)}


def mixtral(stacked=False, transposed=False):
    t = top()
    for L in range(2):
        p = f"model.layers.{L}."
        t.update(attn(p, kv=2))
        if not stacked:
            t[p + "block_sparse_moe.gate.weight"] = w(2, D)
            for e in range(2):
                for m, s in (("w1", (N, D)), ("w3", (N, D)), ("w2", (D, N))):
                    t[p + f"block_sparse_moe.experts.{e}.{m}.weight"] = w(*s)
        else:
            t[p + "mlp.gate.weight"] = w(2, D)
            t[p + "mlp.experts.gate_up_proj"] = w(2, D, 2 * N) if transposed else w(2, 2 * N, D)
            t[p + "mlp.experts.down_proj"] = w(2, N, D) if transposed else w(2, D, N)
    return t


def swiglu(p, n):
    return {p + "gate_proj.weight": w(n, D), p + "up_proj.weight": w(n, D), p + "down_proj.weight": w(D, n)}


def qwen2():
    t = top()
    for L in range(2):
        p = f"model.layers.{L}."
        t.update(attn(p))
        for b in ("q", "k", "v"):
            t[p + f"self_attn.{b}_proj.bias"] = w(4)
        if L == 1:
            t.update(swiglu(p + "mlp.", 3))
            continue
        t[p + "mlp.gate.weight"] = w(2, D)
        t[p + "mlp.shared_expert_gate.weight"] = w(1, D)
        t.update(swiglu(p + "mlp.shared_expert.", 2))
        for e in range(2):
            t.update(swiglu(p + f"mlp.experts.{e}.", N))
    return t


def deepseek():
    t = top()
    for L in range(2):
        p = f"model.layers.{L}."
        t.update(attn(p))
        if L == 0:
            t.update(swiglu(p + "mlp.", 3))
            continue
        t[p + "mlp.gate.weight"] = w(2, D)
        t.update(swiglu(p + "mlp.shared_experts.", 2))
        for e in range(2):
            t.update(swiglu(p + f"mlp.experts.{e}.", N))
    return t


def switch():
    t = {"shared.weight": w(4, D), "encoder.final_layer_norm.weight": w(D), "decoder.final_layer_norm.weight": w(D)}
    for stack, ff in (("encoder", 1), ("decoder", 2)):
        p = f"{stack}.block.0.layer."
        for m in "qkvo":
            t[p + f"0.SelfAttention.{m}.weight"] = w(4, D)
        t[p + "0.SelfAttention.relative_attention_bias.weight"] = w(2, 2)
        t[p + "0.layer_norm.weight"] = w(D)
        if stack == "decoder":
            for m in "qkvo":
                t[p + f"1.EncDecAttention.{m}.weight"] = w(4, D)
            t[p + "1.layer_norm.weight"] = w(D)
        t[p + f"{ff}.layer_norm.weight"] = w(D)
        t[p + f"{ff}.mlp.router.classifier.weight"] = w(2, D)   # sparse_step 1: every block is MoE
        for e in range(2):
            t[p + f"{ff}.mlp.experts.expert_{e}.wi.weight"] = w(N, D)
            t[p + f"{ff}.mlp.experts.expert_{e}.wo.weight"] = w(D, N)
    return t


def gpt_oss(mxfp4):
    """1 layer, hidden 32, 2 experts of width 32 (MXFP4 needs 32-column groups)."""
    d, n, E = 32, 32, 2
    t = {"model.embed_tokens.weight": w(4, d), "model.norm.weight": w(d), "lm_head.weight": w(4, d)}
    p = "model.layers.0."
    t.update({p + "input_layernorm.weight": w(d), p + "post_attention_layernorm.weight": w(d),
              p + "self_attn.sinks": w(2), p + "mlp.router.weight": w(E, d), p + "mlp.router.bias": w(E),
              p + "mlp.experts.gate_up_proj_bias": w(E, 2 * n), p + "mlp.experts.down_proj_bias": w(E, d)})
    x = p + "mlp.experts."
    if mxfp4:
        codes = lambda *s: (np.arange(int(np.prod(s))) * 37 % 256).astype(np.uint8).reshape(s)
        t.update({x + "gate_up_proj_blocks": codes(E, 2 * n, d // 32, 16),
                  x + "gate_up_proj_scales": np.full((E, 2 * n, d // 32), 124, np.uint8),
                  x + "down_proj_blocks": codes(E, d, n // 32, 16),
                  x + "down_proj_scales": np.full((E, d, n // 32), 125, np.uint8)})
    else:
        t.update({x + "gate_up_proj": w(E, d, 2 * n), x + "down_proj": w(E, n, d)})
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "fuzz", "corpus", "fuzz_model"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    seeds = {"mixtral": (0, mixtral()), "mixtral_stacked": (0, mixtral(True)),
             "mixtral_stacked_t": (0, mixtral(True, True)), "qwen2": (1, qwen2()),
             "deepseek": (2, deepseek()), "switch": (3, switch()),
             "gpt_oss_mxfp4": (4, gpt_oss(True)), "gpt_oss_stacked": (4, gpt_oss(False))}
    for name, (sel, t) in seeds.items():
        with open(os.path.join(a.out, name + ".bin"), "wb") as f:
            f.write(bytes([sel]) + save(t))


if __name__ == "__main__":
    main()
