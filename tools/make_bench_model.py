#!/usr/bin/env python3
"""Writes a random-weight OLMoE-shaped model folder for speed benchmarks
(bench/infer_vs_llamacpp.sh): OLMoE-1B-7B's hidden size, heads, expert width,
top-8 routing and vocabulary, with fewer layers and experts so it fits a small
machine. Per-expert Hub tensor layout, so llama.cpp's convert_hf_to_gguf.py
reads it too; the OLMoE tokenizer.json from the shared data is copied next to
it (the converter needs one). Never written into the repository.

Usage: python3 tools/make_bench_model.py OUT_DIR [--layers 4] [--experts 16]
       [--dtype f32|bf16] [--seed 0]
"""
import argparse
import json
import os
import shutil

import torch
from safetensors.torch import save_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--experts", type=int, default=16)
    ap.add_argument("--top-k", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--expert-width", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=50304)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    dt = torch.float32 if a.dtype == "f32" else torch.bfloat16
    g = torch.Generator().manual_seed(a.seed)
    d, n, E, V = a.hidden, a.expert_width, a.experts, a.vocab

    def rnd(*shape, std=0.02):
        return (torch.randn(*shape, generator=g) * std).to(dt)

    def ones(k):
        return (1.0 + 0.1 * torch.randn(k, generator=g)).to(dt)

    sd = {"model.embed_tokens.weight": rnd(V, d), "lm_head.weight": rnd(V, d),
          "model.norm.weight": ones(d)}
    for L in range(a.layers):
        p = "model.layers.%d." % L
        for m in ("q", "k", "v", "o"):
            sd[p + "self_attn.%s_proj.weight" % m] = rnd(d, d)
        sd[p + "self_attn.q_norm.weight"] = ones(d)
        sd[p + "self_attn.k_norm.weight"] = ones(d)
        sd[p + "input_layernorm.weight"] = ones(d)
        sd[p + "post_attention_layernorm.weight"] = ones(d)
        sd[p + "mlp.gate.weight"] = rnd(E, d, std=0.1)
        for e in range(E):
            q = p + "mlp.experts.%d." % e
            sd[q + "gate_proj.weight"] = rnd(n, d)
            sd[q + "up_proj.weight"] = rnd(n, d)
            sd[q + "down_proj.weight"] = rnd(d, n)
    os.makedirs(a.out, exist_ok=True)
    save_file(sd, os.path.join(a.out, "model.safetensors"), metadata={"format": "pt"})
    cfg = {
        "architectures": ["OlmoeForCausalLM"], "model_type": "olmoe",
        "hidden_size": d, "intermediate_size": n, "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads, "num_key_value_heads": a.heads,
        "num_experts": E, "num_experts_per_tok": a.top_k, "norm_topk_prob": False,
        "vocab_size": V, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": False,
        "attention_bias": False, "clip_qkv": None, "bos_token_id": None, "eos_token_id": 50279,
        "pad_token_id": 1, "torch_dtype": "float32" if a.dtype == "f32" else "bfloat16",
    }
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    data = os.environ.get("MOESZ_DATA") or os.path.join(os.path.dirname(__file__), "..", "..",
                                                         "shared", "data")
    tok = os.path.join(data, "tokenizers", "olmoe-gpt-neox.tokenizer.json")
    if os.path.exists(tok):
        shutil.copy(tok, os.path.join(a.out, "tokenizer.json"))
        with open(os.path.join(a.out, "tokenizer_config.json"), "w") as f:
            json.dump({"tokenizer_class": "GPTNeoXTokenizer", "eos_token": "<|endoftext|>",
                       "bos_token": None, "add_bos_token": False}, f)
    nparam = sum(t.numel() for t in sd.values())
    print("%s: %d layers, %d experts top-%d, %.1fM parameters, %s" %
          (a.out, a.layers, E, a.top_k, nparam / 1e6, a.dtype))


if __name__ == "__main__":
    main()
