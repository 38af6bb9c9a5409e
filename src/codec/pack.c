/* codec/pack.c - owns the fast stage: zigzag codes in blocks of 256 at a
 * per-block bit width w (0..32), lane-interleaved so one AVX2 register
 * unpacks 8 consecutive codes with shifts only: value 8m + l of a block is
 * the m-th w-bit field of lane l, and lane l's fields are packed LSB-first
 * into its w 32-bit words; word t of all 8 lanes is stored as 8 consecutive
 * u32. A block takes 32 w bytes. Layout: u8 width[nblocks] | zero pad to 8 |
 * blocks | 32 zero bytes. */
#include <string.h>
#include "base/cpu.h"
#include "base/bytes.h"
#include "codec/codec_internal.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define BLK 256

size_t pack_bound(size_t n) {
  size_t nb = (n + BLK - 1) / BLK;
  return nb + 8 + nb * 32 * 32 + 32;
}

static int width_of(uint32_t m) { return m ? 32 - __builtin_clz(m) : 0; }

size_t pack_encode(const uint32_t *codes, size_t n, uint8_t *out) {
  size_t nb = (n + BLK - 1) / BLK;
  size_t pos = (nb + 7) & ~(size_t)7;
  memset(out, 0, pos);
  for (size_t b = 0; b < nb; b++) {
    uint32_t v[BLK] = {0}, m = 0;
    size_t cnt = n - b * BLK < BLK ? n - b * BLK : BLK;
    memcpy(v, codes + b * BLK, cnt * 4);
    for (size_t i = 0; i < cnt; i++) m |= v[i];
    int w = width_of(m);
    out[b] = (uint8_t)w;
    uint32_t words[32 * 8];
    memset(words, 0, sizeof words);
    for (int l = 0; l < 8; l++)
      for (int k = 0; k < 32; k++) {
        uint64_t val = v[8 * k + l];
        int o = k * w, t = o >> 5, sh = o & 31;
        words[t * 8 + l] |= (uint32_t)(val << sh);
        if (sh + w > 32) words[(t + 1) * 8 + l] |= (uint32_t)(val >> (32 - sh));
      }
    moesz_le32_words(words, (size_t)w * 8);
    memcpy(out + pos, words, (size_t)w * 32);
    pos += (size_t)w * 32;
  }
  memset(out + pos, 0, 32);
  return pos + 32;
}

static void unpack_scalar(const uint32_t *W, int w, uint32_t *v) {
  uint32_t mask = w == 32 ? 0xffffffffu : (1u << w) - 1;
  for (int k = 0; k < 32; k++) {
    int o = k * w, t = o >> 5, sh = o & 31;
    for (int l = 0; l < 8; l++) {
      uint64_t x = W[t * 8 + l] >> sh;
      if (sh + w > 32) x |= (uint64_t)W[(t + 1) * 8 + l] << (32 - sh);
      v[8 * k + l] = (uint32_t)x & mask;
    }
  }
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static void unpack_avx2(const uint32_t *W, int w, uint32_t *v) {
  const __m256i mask = _mm256_set1_epi32(w == 32 ? -1 : (int)((1u << w) - 1));
  for (int k = 0; k < 32; k++) {
    int o = k * w, t = o >> 5, sh = o & 31;
    __m256i a = _mm256_loadu_si256((const __m256i *)(W + t * 8));
    __m256i x = _mm256_srl_epi32(a, _mm_cvtsi32_si128(sh));
    if (sh + w > 32) {
      __m256i b = _mm256_loadu_si256((const __m256i *)(W + (t + 1) * 8));
      x = _mm256_or_si256(x, _mm256_sll_epi32(b, _mm_cvtsi32_si128(32 - sh)));
    }
    _mm256_storeu_si256((__m256i *)(v + 8 * k), _mm256_and_si256(x, mask));
  }
}
#endif

int pack_decode(const uint8_t *buf, size_t len, size_t n, double step, moesz_dtype dt, moesz_dtype out,
                const uint8_t *npos, uint32_t nn, size_t pw, void *dst) {
  size_t nb = (n + BLK - 1) / BLK;
  size_t pos = (nb + 7) & ~(size_t)7;
  if (pos > len) return -1;
  size_t need = pos + 32;
  for (size_t b = 0; b < nb; b++) {
    if (buf[b] > 32) return -1;
    need += (size_t)buf[b] * 32;
  }
  if (need > len) return -1;
  int simd = 0;
#if defined(__x86_64__)
  simd = moesz_cpu_avx2();
#endif
  /* one block of codes at a time, so they stay in L1 between the passes */
  uint32_t tmp[BLK];
  size_t eo = moesz_dtype_size(dt);
  uint32_t k = 0;                       /* next nudged position */
  for (size_t b = 0; b < nb; b++) {
    int w = buf[b];
    size_t cnt = n - b * BLK < BLK ? n - b * BLK : BLK;
    uint8_t *o = (uint8_t *)dst + b * BLK * eo;
    const uint32_t *W = (const uint32_t *)(const void *)(buf + pos);
    pos += (size_t)w * 32;
    if (w == 0) {                       /* code 0 delivers +0 in every dtype, nudged or not */
      memset(o, 0, cnt * eo);
      while (k < nn && codec_pos_at(npos, k, pw) < b * BLK + cnt) k++;
      continue;
    }
#if defined(__x86_64__)
    if (simd) unpack_avx2(W, w, tmp);   /* x86: little-endian */
    else
#endif
    {
      uint32_t words[32 * 8 + 8];
      memcpy(words, W, (size_t)w * 32);
      moesz_le32_words(words, (size_t)w * 8);
      memset(words + w * 8, 0, 32);
      unpack_scalar(words, w, tmp);
    }
    codec_dequantize(tmp, cnt, step, dt, out, o, simd);
    for (; k < nn && codec_pos_at(npos, k, pw) < b * BLK + cnt; k++) {
      size_t i = codec_pos_at(npos, k, pw) - b * BLK;
      if (dt == MOESZ_DT_BF16 && out == MOESZ_DT_BF16) {
        /* the common case inline: one BF16 step from the delivered value, towards x' */
        uint16_t h;
        memcpy(&h, o + 2 * i, 2);
        uint32_t gb = (uint32_t)h << 16;
        float g;
        memcpy(&g, &gb, 4);
        h = codec_nudge16(h, g, codec_value(zz_dec(tmp[i]), step));
        memcpy(o + 2 * i, &h, 2);
      } else {
        uint32_t z = tmp[i] | CODE_NUDGE;
        codec_dequantize_nudged(&z, 1, step, dt, out, o + i * eo);
      }
    }
  }
  return 0;
}
