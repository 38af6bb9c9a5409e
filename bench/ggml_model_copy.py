#!/usr/bin/env python3
"""Copy of a Hugging Face model folder in which every routed-expert matrix is
replaced by its llama.cpp quantize -> dequantize round trip (bench/ggml/ggml_roundtrip.c,
ggml's reference quantizer); every other tensor is copied byte for byte.

  python3 bench/ggml_model_copy.py --roundtrip BIN --format Q4_K [--imatrix IMAT.npz] SRC_DIR DST_DIR

Expert matrices (names `...experts.<e>.<w1|w2|w3|gate_proj|up_proj|down_proj>.weight`)
are widened to float32, flattened row-major and concatenated into one array
that the round-trip program quantizes in blocks of 32 or 256 values; every
matrix holds a multiple of 256 values, so no block straddles two matrices and
the result equals quantizing each matrix flattened on its own. The round trip
is written back as F32 (not BF16: rounding the dequantized values to BF16 would
add up to half a BF16 step on top of the format's own error, comparable to
Q8_0's step for the largest weights of a block).

With --imatrix (bench/ggml_imatrix.py's per-matrix mean squared input
activations): ggml's quantize_<fmt> with those quant_weights, as llama.cpp's
quantizer given an importance matrix; each value is weighted by its input
column's entry. Rows: the matrix's own rows where the format's block divides
them (32-value formats), else the matrix flattened into rows of 256 (the
K-quants on gate/up, whose rows hold 128); the weights follow the values.

Prints one JSON line: format, expert weights, bits per weight of the format,
RMS and max |error| of the expert weights; with --score-imatrix IMAT.npz also
the importance-weighted mean squared error (each value's squared error times its
input column's mean squared activation: the expected squared output error per
weight), whether or not the round trip used those weights.
Only the standard library and numpy are needed (the safetensors file is parsed
and written directly, since numpy has no bfloat16).
"""
import argparse, json, os, re, shutil, struct, subprocess, sys, tempfile
import numpy as np

EXPERT = re.compile(r"\.experts\.\d+\.(w1|w2|w3|gate_proj|up_proj|down_proj)\.weight$")
BLOCK = 256


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    return header, data


def to_f32(dtype, raw):
    if dtype == "BF16":
        u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return u.view(np.float32)
    if dtype == "F16":
        return np.frombuffer(raw, dtype="<f2").astype(np.float32)
    if dtype == "F32":
        return np.frombuffer(raw, dtype="<f4").copy()
    raise SystemExit("ggml_model_copy: unsupported expert dtype %s" % dtype)


def roundtrip(binary, fmt, flat, weights=None, row=0):
    """(dequantized array, bits per weight) of FMT on FLAT; F32 is the control (no round trip).
    WEIGHTS (one per value of FLAT) and ROW: the importance-matrix quantizer on rows of ROW values."""
    if fmt == "F32":
        return flat, 32.0
    with tempfile.TemporaryDirectory() as tmp:
        fin, fout, fw = (os.path.join(tmp, n) for n in ("in.f32", "out.f32", "w.f32"))
        flat.tofile(fin)
        extra = []
        if weights is not None:
            weights.astype("<f4").tofile(fw)
            extra = [fw, str(row)]
        r = subprocess.run([binary, fmt, fin, fout] + extra, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit("ggml_model_copy: %s" % r.stderr.strip())
        m = re.search(r"([0-9.]+) bits/weight", r.stderr)
        return np.fromfile(fout, dtype="<f4"), float(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--roundtrip", required=True, help="the ggml_roundtrip binary")
    ap.add_argument("--format", required=True, help="Q8_0, Q6_K, Q5_K, Q4_K, Q4_0, Q3_K, Q2_K, ...")
    ap.add_argument("--imatrix", help="per-matrix importance vectors (bench/ggml_imatrix.py)")
    ap.add_argument("--score-imatrix", help="importance vectors to weigh the reported error with")
    ap.add_argument("src")
    ap.add_argument("dst")
    args = ap.parse_args()

    files = sorted(f for f in os.listdir(args.src) if f.endswith(".safetensors"))
    if not files:
        raise SystemExit("ggml_model_copy: no .safetensors in %s" % args.src)
    os.makedirs(args.dst, exist_ok=True)
    for f in os.listdir(args.src):  # config, tokenizer, index, card: copied as is
        p = os.path.join(args.src, f)
        if os.path.isfile(p) and not f.endswith(".safetensors"):
            shutil.copyfile(p, os.path.join(args.dst, f))

    imat = np.load(args.imatrix) if args.imatrix else None
    block = 256 if args.format.endswith("_K") else 32
    score = np.load(args.score_imatrix) if args.score_imatrix else None
    wsq_err = 0.0
    n_expert = 0
    bits = None
    sq_err, max_err = 0.0, 0.0
    for fname in files:
        header, data = read_safetensors(os.path.join(args.src, fname))
        names = sorted((k for k in header if k != "__metadata__"),
                       key=lambda k: header[k]["data_offsets"][0])
        experts = [k for k in names if EXPERT.search(k)]
        tensors = {}
        if experts:
            parts = []
            for k in experts:
                a, b = header[k]["data_offsets"]
                x = to_f32(header[k]["dtype"], data[a:b])
                if x.size % BLOCK:
                    raise SystemExit("ggml_model_copy: %s has %d values, not a multiple of %d"
                                     % (k, x.size, BLOCK))
                parts.append(x)
            flat = np.concatenate(parts).astype("<f4")
            if imat is None:
                y, bits = roundtrip(args.roundtrip, args.format, flat)
            else:
                y = np.empty_like(flat)
                offs = np.cumsum([0] + [x.size for x in parts])
                groups = {}  # row length -> indices of the matrices quantized in rows of that length
                for i, k in enumerate(experts):
                    rows, cols = header[k]["shape"]
                    if k not in imat.files or imat[k].shape != (cols,):
                        raise SystemExit("ggml_model_copy: %s: no importance vector of %d columns" % (k, cols))
                    groups.setdefault(cols if cols % block == 0 else BLOCK, []).append(i)
                for row, idx in groups.items():
                    x = np.concatenate([parts[i] for i in idx]).astype("<f4")
                    wts = np.concatenate([np.tile(imat[experts[i]], header[experts[i]]["shape"][0]) for i in idx])
                    yg, bits = roundtrip(args.roundtrip, args.format, x, wts, row)
                    o = 0
                    for i in idx:
                        y[offs[i]:offs[i + 1]] = yg[o:o + parts[i].size]
                        o += parts[i].size
            if y.size != flat.size or not np.all(np.isfinite(y)):
                raise SystemExit("ggml_model_copy: bad round trip output")
            e = y.astype(np.float64) - flat
            sq_err += float(np.dot(e, e))
            max_err = max(max_err, float(np.abs(e).max()))
            off = 0
            for k, x in zip(experts, parts):
                if score is not None:
                    rows, cols = header[k]["shape"]
                    if k not in score.files or score[k].shape != (cols,):
                        raise SystemExit("ggml_model_copy: %s: no importance vector of %d columns" % (k, cols))
                    ek = e[off:off + x.size].reshape(rows, cols)
                    wsq_err += float(((ek * ek) * score[k].astype(np.float64)[None, :]).sum())
                tensors[k] = ("F32", y[off:off + x.size].tobytes())
                off += x.size
            n_expert += flat.size
        out_header = {}
        if "__metadata__" in header:
            out_header["__metadata__"] = header["__metadata__"]
        chunks, pos = [], 0
        for k in names:
            if k in tensors:
                dtype, raw = tensors[k]
            else:
                a, b = header[k]["data_offsets"]
                dtype, raw = header[k]["dtype"], data[a:b]
            out_header[k] = {"dtype": dtype, "shape": header[k]["shape"],
                             "data_offsets": [pos, pos + len(raw)]}
            chunks.append(raw)
            pos += len(raw)
        hb = json.dumps(out_header, separators=(",", ":")).encode()
        hb += b" " * (-len(hb) % 8)
        tmp_path = os.path.join(args.dst, fname + ".tmp")
        with open(tmp_path, "wb") as f:
            f.write(struct.pack("<Q", len(hb)))
            f.write(hb)
            for c in chunks:
                f.write(c)
        os.replace(tmp_path, os.path.join(args.dst, fname))
    if n_expert == 0:
        raise SystemExit("ggml_model_copy: no expert matrices found in %s" % args.src)
    out = {"format": args.format, "expert_weights": n_expert, "bits_per_weight": bits,
           "rms_error": (sq_err / n_expert) ** 0.5, "max_error": max_err}
    if score is not None:
        out["imatrix_weighted_mse"] = wsq_err / n_expert
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
