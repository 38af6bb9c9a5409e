#!/usr/bin/env python3
"""Trains moesz's bundled models, small MoE language models, from scratch on CPU.

  python3 tools/train_moe.py --out models/moesz-mix-tiny            # defaults below
  nice python3 tools/train_moe.py --out DIR                       # the shipped run (all defaults)
  python3 tools/train_moe.py --family qwen3_moe --out models/moesz-qwen3-deep --layers 16 \
      --expert-width 96 --steps 600                                  # the deeper second model (its card has the command)

Data (../shared/data/text, or --data / $MOESZ_DATA/text):
  train   : tinystories-valid.txt (first 90% of its bytes), tinyshakespeare.txt,
            olmoe-sample-{arxiv,b3g,c4,github_oss_with_stack,wikipedia}.txt
  held out: wikitext-2-raw-test.txt (never read here) and the last 10% of
            tinystories-valid.txt (cut at a line boundary) -- used only by tools/model_card.py
Tokenizer: byte-level BPE trained with `tokenizers` on the training text.
Model (--family mixtral, default): 8 layers, hidden 128, 8 experts of width 256, top-2, 4 heads / 2 KV heads,
router load-balancing loss taken per layer (see balance_loss). Deterministic for a seed (torch.manual_seed, fixed data
order, cosine schedule over --steps); --minutes is only a safety stop.
--family qwen3_moe: Qwen3MoeForCausalLM (per-head RMS norm on q and k, top-k weights renormalised,
every layer MoE) with the same sizes unless given.
Writes the checkpoint in the Hub's per-expert layout of the family, BF16, plus
train_log.json (hyper-parameters, loss per step).
"""
import argparse, json, math, os, random, time

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

TRAIN_FILES = ["tinyshakespeare.txt", "olmoe-sample-arxiv.txt", "olmoe-sample-b3g.txt", "olmoe-sample-c4.txt",
               "olmoe-sample-github_oss_with_stack.txt", "olmoe-sample-wikipedia.txt"]


def data_dir(arg):
    if arg:
        return arg
    env = os.environ.get("MOESZ_DATA")
    return os.path.join(env, "text") if env else os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "text")


def split_tinystories(path):
    """First 90% of the bytes (cut at a newline) for training, the rest held out."""
    text = open(path, encoding="utf-8").read()
    cut = text.index("\n", int(len(text) * 0.9)) + 1
    return text[:cut], text[cut:]


def training_texts(ddir):
    ts_train, _ = split_tinystories(os.path.join(ddir, "tinystories-valid.txt"))
    texts = {"tinystories": ts_train}
    for f in TRAIN_FILES:
        texts[f.replace(".txt", "")] = open(os.path.join(ddir, f), encoding="utf-8").read()
    return texts


def train_tokenizer(texts, vocab):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=2, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(texts.values()), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    return tok


def balance_loss(router_logits, top_k, per_layer):
    """Switch-style load-balancing loss: E * sum_e f_e * P_e, f_e the fraction of routed
    assignments that go to expert e, P_e its mean router probability.

    transformers' Mixtral loss concatenates all layers' router logits before taking f and P,
    so it balances the experts' load summed over layers: one layer may starve an expert while
    another over-feeds it. With per_layer the loss is taken per layer and averaged, so every
    layer is pushed towards balance on its own. Returns (loss, per-layer loads [L][E])."""
    losses, loads = [], []
    layers = router_logits if per_layer else [torch.cat(list(router_logits), dim=0)]
    for logits in layers:
        probs = torch.softmax(logits.float(), dim=-1)                  # [T, E]
        n_exp = probs.shape[-1]
        sel = torch.topk(probs, top_k, dim=-1).indices                 # [T, k]
        mask = torch.nn.functional.one_hot(sel, n_exp).float().sum(1)  # [T, E]
        frac = mask.mean(0) / top_k                                    # [E], sums to 1
        losses.append(n_exp * (frac * probs.mean(0)).sum())
    for logits in router_logits:
        sel = torch.topk(logits.detach(), top_k, dim=-1).indices
        loads.append((torch.bincount(sel.reshape(-1), minlength=logits.shape[-1]).float() / sel.numel()).tolist())
    return torch.stack(losses).mean(), loads


def build_model(vocab, args):
    if args.family == "qwen3_moe":
        from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM
        cfg = Qwen3MoeConfig(vocab_size=vocab, hidden_size=args.hidden, intermediate_size=args.expert_width * 4,
                             moe_intermediate_size=args.expert_width, num_hidden_layers=args.layers,
                             num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
                             head_dim=args.hidden // args.heads, max_position_embeddings=args.seq * 2,
                             num_experts=args.experts, num_experts_per_tok=args.top_k, decoder_sparse_step=1,
                             mlp_only_layers=[], norm_topk_prob=True, router_aux_loss_coef=args.aux,
                             output_router_logits=True, rope_theta=10000.0, rms_norm_eps=1e-6,
                             tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                             attention_bias=False, sliding_window=None, use_sliding_window=False)
        return Qwen3MoeForCausalLM(cfg)
    from transformers import MixtralConfig, MixtralForCausalLM
    cfg = MixtralConfig(vocab_size=vocab, hidden_size=args.hidden, intermediate_size=args.expert_width,
                        num_hidden_layers=args.layers, num_attention_heads=args.heads,
                        num_key_value_heads=args.kv_heads, head_dim=args.hidden // args.heads,
                        max_position_embeddings=args.seq * 2, num_local_experts=args.experts,
                        num_experts_per_tok=args.top_k, router_aux_loss_coef=args.aux,
                        output_router_logits=True, rope_theta=10000.0, rms_norm_eps=1e-5,
                        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                        sliding_window=None)
    return MixtralForCausalLM(cfg)


def parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="folder of the text files (default ../shared/data/text)")
    ap.add_argument("--out", default="models/moesz-mix-tiny")
    ap.add_argument("--family", choices=["mixtral", "qwen3_moe"], default="mixtral",
                    help="architecture and checkpoint layout (default mixtral)")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--expert-width", type=int, default=256)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--aux", type=float, default=0.04, help="weight of the load-balancing loss")
    ap.add_argument("--balance", choices=["per-layer", "pooled"], default="per-layer",
                    help="balancing loss per layer (default) or transformers' loss pooled over layers")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--minutes", type=float, default=60.0, help="safety stop for the training loop")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--save-every", type=int, default=200)
    return ap


def main():
    args = parser().parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    ddir = data_dir(args.data)
    os.makedirs(args.out, exist_ok=True)
    texts = training_texts(ddir)
    tok = train_tokenizer(texts, args.vocab)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    # one token stream per source, documents separated by </s>
    ids = []
    for name in sorted(texts):
        enc = tok.encode(texts[name], add_special_tokens=False).ids
        ids.extend(enc + [2])
    data = torch.tensor(ids, dtype=torch.long)
    n_tok = len(ids)
    model = build_model(tok.get_vocab_size(), args)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    log = {"args": vars(args), "train_tokens": n_tok, "params": n_params, "sources": sorted(texts),
           "torch": torch.__version__, "steps": []}
    print(f"train tokens {n_tok}, params {n_params}, vocab {tok.get_vocab_size()}", flush=True)
    g = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    model.train()
    for step in range(1, args.steps + 1):
        starts = torch.randint(0, n_tok - args.seq - 1, (args.batch,), generator=g)
        x = torch.stack([data[s:s + args.seq] for s in starts.tolist()])
        y = torch.stack([data[s + 1:s + args.seq + 1] for s in starts.tolist()])
        # cosine schedule over --steps (so the curve depends on the seed only);
        # --minutes is a safety stop
        total = args.steps
        lr = args.lr * min(1.0, step / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / total))))
        for pg in opt.param_groups:
            pg["lr"] = lr
        out = model(input_ids=x, output_router_logits=True)
        logits = out.logits
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        aux, loads = balance_loss(out.router_logits, args.top_k, args.balance == "per-layer")
        loss = ce + args.aux * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        el = time.time() - t0
        log["steps"].append({"step": step, "ce": round(ce.item(), 5), "aux": round(float(aux.detach()), 5),
                             "lr": lr, "time": round(el, 2)})
        if step % 20 == 0:
            low = min(min(layer) for layer in loads)
            print(f"step {step} ce {ce.item():.4f} aux {float(aux.detach()):.4f} min-load {low:.3f} lr {lr:.2e} "
                  f"{el / 60:.1f} min", flush=True)
        done = el > args.minutes * 60 or step == args.steps
        if step % args.save_every == 0 or done:
            save(model, tok, args, log, el)
        if done:
            break


def save(model, tok, args, log, seconds):
    """Writes the checkpoint (per-expert Hub layout, BF16) atomically enough: temp names then rename."""
    from safetensors.torch import save_file
    out = args.out
    sd = {}
    for k, v in model.state_dict().items():
        sd[k] = v.detach()
    # transformers 5 keeps experts stacked in memory; write the Hub's per-expert layout
    per = {}
    qwen = args.family == "qwen3_moe"
    # Hub names: Mixtral block_sparse_moe.experts.E.w1/w3/w2 and block_sparse_moe.gate,
    # Qwen3-MoE mlp.experts.E.gate_proj/up_proj/down_proj and mlp.gate
    names = ("gate_proj", "up_proj", "down_proj") if qwen else ("w1", "w3", "w2")
    for k, v in sd.items():
        if ".mlp.experts.gate_up_proj" in k or ".mlp.experts.down_proj" in k:
            layer = k.split(".")[2]
            base = f"model.layers.{layer}.{'mlp' if qwen else 'block_sparse_moe'}.experts"
            if k.endswith("gate_up_proj"):
                n = v.shape[1] // 2
                for e in range(v.shape[0]):
                    per[f"{base}.{e}.{names[0]}.weight"] = v[e, :n].contiguous()
                    per[f"{base}.{e}.{names[1]}.weight"] = v[e, n:].contiguous()
            else:
                for e in range(v.shape[0]):
                    per[f"{base}.{e}.{names[2]}.weight"] = v[e].contiguous()
        elif ".mlp.gate.weight" in k and not qwen:
            per[k.replace(".mlp.gate.weight", ".block_sparse_moe.gate.weight")] = v
        else:
            per[k] = v
    per = {k: v.to(torch.bfloat16).contiguous() for k, v in per.items()}
    tmp = os.path.join(out, "model.safetensors.tmp")
    save_file(per, tmp, metadata={"format": "pt"})
    os.replace(tmp, os.path.join(out, "model.safetensors"))
    cfg = model.config.to_dict()
    cfg["architectures"] = ["Qwen3MoeForCausalLM" if args.family == "qwen3_moe" else "MixtralForCausalLM"]
    cfg["output_router_logits"] = False
    cfg["dtype"] = "bfloat16"
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "do_sample": False}, f, indent=2)
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
                   "pad_token": "<pad>", "add_bos_token": True, "model_max_length": args.seq * 2}, f, indent=2)
    log["seconds"] = round(seconds, 1)
    with open(os.path.join(out, "train_log.json"), "w") as f:
        json.dump(log, f)


if __name__ == "__main__":
    main()
