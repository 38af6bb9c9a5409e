#!/usr/bin/env python3
"""Builds the gpt-oss fixtures under tests/fixtures/ (companion of make_fixtures.py,
whose token sequence, weight perturbation and file conventions it reuses).

  gpt_oss        GptOssForCausalLM, float32, random weights: 4 layers alternating
                 sliding (window 8, shorter than the 64-token sequence) and full
                 attention, attention sinks, q/k/v/o biases, YaRN RoPE (factor 4,
                 truncate false), 6 experts top-2 with router bias, expert biases,
                 interleaved gate_up, swiglu_limit 1.0 (so the clamps act) and
                 swiglu_alpha 1.702; stored as transformers holds it
                 (experts.gate_up_proj [E, d, 2n], experts.down_proj [E, n, d]).
  gpt_oss_mxfp4  the same model with its experts as the published checkpoints
                 store them: experts.{gate_up,down}_proj_{blocks,scales} (U8
                 [E, rows, cols/32, 16] packed e2m1, low nibble first, and
                 [E, rows, cols/32] e8m0) in nn.Linear orientation, with
                 quantization_config {"quant_method": "mxfp4"}; random codes and
                 scales packed here. The logits come from transformers loading
                 this folder (Mxfp4Config(dequantize=True), float32), and
                 dequant.f32 holds transformers' own convert_moe_packed_tensors
                 (float32) of layer 0's gate_up then down, [E, d, 2n] + [E, n, d];
                 extremes.bin every e8m0 scale 0..255 with random codes and
                 transformers' float32 values for them.

Each folder also holds tokens.txt, logits.f32 [64, 256], expected.json and
greedy.json: 32 ids generated greedily by transformers after an 8-token prompt.

Usage: python3 tools/make_fixtures_gptoss.py [--out tests/fixtures]
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import SEQ, VOCAB, SEED, tokens, perturb, write_common  # noqa: E402

GREEDY_NEW = 32


def config_kw():
    return dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=32, num_hidden_layers=4,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_local_experts=6,
                num_experts_per_tok=2, sliding_window=8, max_position_embeddings=128,
                rope_parameters=dict(rope_type="yarn", rope_theta=150000.0, factor=4.0, beta_fast=32.0,
                                     beta_slow=1.0, truncate=False, original_max_position_embeddings=32),
                swiglu_limit=1.0, attention_bias=True, tie_word_embeddings=False,
                bos_token_id=1, eos_token_id=2, pad_token_id=0)


def greedy(model, prompt):
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=GREEDY_NEW, do_sample=False,
                             min_new_tokens=GREEDY_NEW, pad_token_id=0)
    return [int(t) for t in out[0, len(prompt):]]


def finish(d, model, toks, family, quirks, extra=None):
    for extra_file in ("generation_config.json",):
        p = os.path.join(d, extra_file)
        if os.path.exists(p):
            os.remove(p)
    with torch.no_grad():
        logits = model(torch.tensor([toks])).logits[0]
    total = model.num_parameters()
    experts = sum(v.numel() for k, v in model.named_parameters() if ".experts." in k and not k.endswith("_bias"))
    sd = load_file(os.path.join(d, "model.safetensors"))
    import transformers
    expected = dict(family=family, architecture=type(model).__name__, vocab=VOCAB, dtype="F32", seq=SEQ,
                    params_total=total, params_experts=experts, params_other=total - experts,
                    n_tensors=len(sd), is_moe=[True] * model.config.num_hidden_layers,
                    layer_types=list(model.config.layer_types), oracle="transformers " + transformers.__version__,
                    quirks=quirks, logits_max_abs=float(logits.abs().max()))
    if extra:
        expected.update(extra)
    write_common(d, toks, logits, expected)
    prompt = toks[:8]
    with open(os.path.join(d, "greedy.json"), "w") as f:
        json.dump(dict(prompt=prompt, generated=greedy(model, prompt)), f)
        f.write("\n")
    return logits


def pack_mxfp4(g, E, rows, cols):
    """Random MXFP4 codes: blocks U8 [E, rows, cols/32, 16], scales U8 [E, rows, cols/32]
    around 2^-4 (so a dot product over cols inputs stays O(1))."""
    blocks = torch.randint(0, 256, (E, rows, cols // 32, 16), generator=g, dtype=torch.int64).to(torch.uint8)
    scales = torch.randint(121, 125, (E, rows, cols // 32), generator=g, dtype=torch.int64).to(torch.uint8)
    return blocks, scales


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    out = os.path.abspath(a.out)
    toks = tokens()
    import transformers as T

    # 1. unquantized
    torch.manual_seed(SEED)
    cfg = T.GptOssConfig(**config_kw())
    cfg._attn_implementation = "eager"
    model = T.GptOssForCausalLM(cfg).eval()
    perturb(model, SEED + 7)
    g = torch.Generator().manual_seed(SEED + 8)
    with torch.no_grad():
        for L in model.model.layers:
            L.self_attn.sinks.copy_(torch.randn(L.self_attn.sinks.shape, generator=g))  # sinks that matter
            L.mlp.router.bias.copy_(0.5 * torch.randn(L.mlp.router.bias.shape, generator=g))
    d = os.path.join(out, "gpt_oss")
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d)
    quirks = ["sliding window 8 on layers 0, 2 (full on 1, 3)", "attention sinks", "q/k/v/o bias",
              "YaRN factor 4, truncate false", "router bias, top-2 then softmax", "expert biases",
              "interleaved gate_up", "swiglu_limit 1.0, alpha 1.702"]
    lg = finish(d, model, toks, "gpt_oss", quirks)
    print(f"gpt_oss: logits max |x| {lg.abs().max():.3g}")

    # 2. MXFP4 experts as published
    E, dm, n = cfg.num_local_experts, cfg.hidden_size, cfg.intermediate_size
    sd = {k: v for k, v in load_file(os.path.join(d, "model.safetensors")).items()}
    gq = torch.Generator().manual_seed(SEED + 9)
    for L in range(cfg.num_hidden_layers):
        p = f"model.layers.{L}.mlp.experts."
        del sd[p + "gate_up_proj"], sd[p + "down_proj"]
        for name, rows, cols in (("gate_up_proj", 2 * n, dm), ("down_proj", dm, n)):
            b, s = pack_mxfp4(gq, E, rows, cols)
            sd[p + name + "_blocks"] = b
            sd[p + name + "_scales"] = s
    dq = os.path.join(out, "gpt_oss_mxfp4")
    shutil.rmtree(dq, ignore_errors=True)
    os.makedirs(dq)
    save_file(sd, os.path.join(dq, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(d, "config.json")) as f:
        cj = json.load(f)
    cj["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    with open(os.path.join(dq, "config.json"), "w") as f:
        json.dump(cj, f, indent=2)
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors
    ref = [convert_moe_packed_tensors(sd[f"model.layers.0.mlp.experts.{k}_blocks"],
                                      sd[f"model.layers.0.mlp.experts.{k}_scales"], dtype=torch.float32)
           for k in ("gate_up_proj", "down_proj")]
    assert ref[0].shape == (E, dm, 2 * n) and ref[1].shape == (E, n, dm), [r.shape for r in ref]
    np.concatenate([r.numpy().astype("<f4").ravel() for r in ref]).tofile(os.path.join(dq, "dequant.f32"))
    # every e8m0 scale 0..255 once with random codes, dequantised by transformers
    # (2^-127 ... 2^127, and 255 whose ldexp by 128 overflows): extremes.bin is
    # blocks [256, 16] U8, scales [256] U8, then the float32 values [256, 32]
    xb = torch.randint(0, 256, (256, 16), generator=gq, dtype=torch.int64).to(torch.uint8)
    xs = torch.arange(256, dtype=torch.int64).to(torch.uint8)
    xv = convert_moe_packed_tensors(xb.reshape(1, 256, 1, 16), xs.reshape(1, 256, 1), dtype=torch.float32)
    xv = xv.transpose(1, 2).reshape(256, 32)
    with open(os.path.join(dq, "extremes.bin"), "wb") as f:
        f.write(xb.numpy().tobytes() + xs.numpy().tobytes() + xv.numpy().astype("<f4").tobytes())
    mq = T.GptOssForCausalLM.from_pretrained(dq, quantization_config=T.Mxfp4Config(dequantize=True),
                                             dtype=torch.float32, attn_implementation="eager").eval()
    got = mq.model.layers[1].mlp.experts.down_proj.detach()
    chk = convert_moe_packed_tensors(sd["model.layers.1.mlp.experts.down_proj_blocks"],
                                     sd["model.layers.1.mlp.experts.down_proj_scales"], dtype=torch.float32)
    assert torch.equal(got, chk), "transformers' loaded experts differ from its dequantisation"
    lq = finish(dq, mq, toks, "gpt_oss", quirks + ["MXFP4 experts (blocks + scales), random codes"],
                extra=dict(mxfp4=True))
    print(f"gpt_oss_mxfp4: logits max |x| {lq.abs().max():.3g}")


if __name__ == "__main__":
    main()
