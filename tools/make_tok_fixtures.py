#!/usr/bin/env python3
"""Expected token ids from the `tokenizers` package, for tests/test_text.c.

For each tokenizer in ../shared/data/tokenizers (and the bundled model's) and each
text file in ../shared/data/text, encodes 40 deterministic lines (the first 20 and
20 drawn with a fixed seed) without special tokens, plus a list of hard strings
(Unicode, emoji, CJK, numbers, whitespace runs, special-token strings) with and
without special tokens. Writes tests/fixtures/text/<tokenizer>.txt:
  L <file> <line index> <ids...>       line of a shared text file
  S <hex utf-8> <add_special> <ids...> a hard string
  D <hex utf-8> <ids...>               expected decode(ids) (skip_special = False)

  python3 tools/make_tok_fixtures.py [--data ../shared/data]
"""
import argparse, glob, os, random
from tokenizers import Tokenizer

HARD = ["Hello, world!", "  leading and trailing spaces  ", "tabs\tand\nnewlines\r\n", "naïve café déjà vu",
        "e\u0301 composed vs \u00e9", "日本語のテキストと中文混合", "emoji 🙂👍🏽 and 🇫🇷", "numbers 1234567890 3.14159 1e-3",
        "code: for (int i = 0; i < n; i++) { x[i] += y[i]; }", "    indented\n        more", "it's we'll they've I'M",
        "<s>", "</s>", "<|endoftext|>", "<|im_start|>user\nhi<|im_end|>", "a<s>b</s>c", "", " ", "\n\n\n",
        "ünïcödé ß ẞ Ω ≈ ∑ ∞", "Ａｂｃ full width", "x" * 300, "mixed 😀 bytes \u200b zero width"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    args = ap.parse_args()
    out_dir = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "text")
    os.makedirs(out_dir, exist_ok=True)
    toks = sorted(glob.glob(os.path.join(args.data, "tokenizers", "*.tokenizer.json")))
    texts = sorted(glob.glob(os.path.join(args.data, "text", "*.txt")))
    for tp in toks:
        name = os.path.basename(tp).replace(".tokenizer.json", "")
        tk = Tokenizer.from_file(tp)
        rows = []
        for fp in texts:
            lines = open(fp, encoding="utf-8", newline="").read().split("\n")
            rng = random.Random(1234)
            pick = list(range(min(20, len(lines)))) + sorted(rng.sample(range(len(lines)), min(20, len(lines))))
            for i in pick:
                ids = tk.encode(lines[i], add_special_tokens=False).ids
                rows.append("L %s %d %s" % (os.path.basename(fp), i, " ".join(map(str, ids))))
        for s in HARD:
            for sp in (0, 1):
                ids = tk.encode(s, add_special_tokens=bool(sp)).ids
                rows.append("S %s %d %s" % (s.encode().hex() or "-", sp, " ".join(map(str, ids))))
            ids = tk.encode(s, add_special_tokens=False).ids
            rows.append("D %s %s" % (tk.decode(ids, skip_special_tokens=False).encode().hex() or "-", " ".join(map(str, ids))))
        with open(os.path.join(out_dir, name + ".txt"), "w") as f:
            f.write("\n".join(rows) + "\n")
        print(name, len(rows), "rows")


if __name__ == "__main__":
    main()
