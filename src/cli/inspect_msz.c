/* cli/inspect_msz.c - `moesz inspect OUT.msz`: what a container holds: the
 * model, the dense part, and per MoE layer the experts' stored vs decoded
 * bytes, methods and bounds; for ResMoE layers the barycenter's and the
 * residuals' stored bytes. */
#include <string.h>
#include "cli/cli.h"

int moesz_cli_inspect_msz(const char *path, int json) {
  moesz_error e = {0};
  moesz_msz *c;
  if (moesz_msz_open_part(path, &c, &e)) return moesz_cli_fail("inspect", &e);
  const moesz_config *cfg = moesz_msz_config(c);
  uint64_t raw = 0, stored = 0, dense = 0, nmeth[MOESZ_MSZ_RESMOE + 1] = {0};
  double ebmin = 0, ebmax = 0;
  const moesz_st *st = moesz_msz_dense(c);
  for (size_t i = 0; i < moesz_st_count(st); i++) dense += moesz_st_at(st, i)->nbytes;
  for (size_t i = 0; i < moesz_msz_count(c); i++) {
    const moesz_msz_rec *r = moesz_msz_at(c, i);
    raw += r->raw_bytes;
    /* a ResMoE expert's three matrices share one residual blob; its layer's barycenter is counted once */
    if (r->method != MOESZ_MSZ_RESMOE || r->mat == MOESZ_MAT_GATE) stored += r->len;
    if (r->method == MOESZ_MSZ_RESMOE && r->mat == MOESZ_MAT_GATE && r->expert == 0) stored += moesz_msz_resmoe(c, r->layer)->bary.len;
    nmeth[r->method]++;
    if (r->eb > 0 && (ebmin == 0 || r->eb < ebmin)) ebmin = r->eb;
    if (r->eb > ebmax) ebmax = r->eb;
  }
  int pa, pb;
  if (json) {
    printf("{\"path\":\"%s\",\"container\":true,\"architecture\":\"%s\",\"file_bytes\":%llu,\"dense_bytes\":%llu,"
           "\"expert_blobs\":%zu,\"expert_bytes\":%llu,\"expert_stored_bytes\":%llu,\"expert_ratio\":%.4f,"
           "\"blobs_raw\":%llu,\"blobs_zstd\":%llu,\"blobs_codec\":%llu,\"blobs_compute\":%llu,\"blobs_resmoe\":%llu,\"eb_min\":%g,\"eb_max\":%g,",
           path, cfg->arch_name, (unsigned long long)moesz_msz_file_size(c), (unsigned long long)dense,
           moesz_msz_count(c), (unsigned long long)raw, (unsigned long long)stored,
           stored ? (double)raw / (double)stored : 0, (unsigned long long)nmeth[0], (unsigned long long)nmeth[1],
           (unsigned long long)nmeth[2], (unsigned long long)nmeth[MOESZ_MSZ_COMPUTE], (unsigned long long)nmeth[MOESZ_MSZ_RESMOE],
           ebmin, ebmax);
    if (moesz_msz_part(c, &pa, &pb)) printf("\"part\":[%d,%d],", pa, pb);
    printf("\"layers\":[");
  } else {
    printf("container    %s (%.2f MB)\nfamily       %s, %d layers, %d experts top-%d\n", path,
           (double)moesz_msz_file_size(c) / 1e6, cfg->arch_name, cfg->n_layers, cfg->n_experts, cfg->top_k);
    printf("dense        %.2f MB (resident when served)\n", (double)dense / 1e6);
    printf("experts      %zu matrices: %.2f MB decoded -> %.2f MB stored (%.3fx); raw %llu, zstd %llu, codec %llu, compute %llu, resmoe %llu\n",
           moesz_msz_count(c), (double)raw / 1e6, (double)stored / 1e6, stored ? (double)raw / (double)stored : 0,
           (unsigned long long)nmeth[0], (unsigned long long)nmeth[1], (unsigned long long)nmeth[2],
           (unsigned long long)nmeth[MOESZ_MSZ_COMPUTE], (unsigned long long)nmeth[MOESZ_MSZ_RESMOE]);
    if (ebmax > 0) printf("error bound  %g .. %g (absolute)\n", ebmin, ebmax);
    if (moesz_msz_part(c, &pa, &pb))
      printf("part         the experts of layers %d-%d only (join the parts with `moesz merge`)\n", pa, pb);
    printf("\nlayer  decoded MB  stored MB   ratio  bound     resmoe: barycenter MB + residuals MB\n");
  }
  int first = 1;
  for (int L = 0; L < cfg->n_layers; L++) {
    uint64_t lr = 0, ls = 0, rb = 0, rr = 0;
    double leb = 0;
    const moesz_msz_resmoe_layer *rl = moesz_msz_resmoe(c, L);
    if (rl) {
      rb = rl->bary.len;
      for (int x = 0; x < rl->E; x++) rr += rl->res[x].len;
    }
    for (int x = 0; x < cfg->n_experts; x++)
      for (int m = MOESZ_MAT_GATE; m <= MOESZ_MAT_DOWN; m++) {
        const moesz_msz_rec *r = moesz_msz_expert(c, L, x, 0, (moesz_mat)m);
        if (!r) continue;
        lr += r->raw_bytes;
        if (!rl) ls += r->len;
        if (r->eb > leb) leb = r->eb;
      }
    if (!lr) continue;
    ls += rb + rr;
    if (json) {
      printf("%s{\"layer\":%d,\"expert_bytes\":%llu,\"stored_bytes\":%llu,\"eb\":%g", first ? "" : ",", L,
             (unsigned long long)lr, (unsigned long long)ls, leb);
      if (rl)
        printf(",\"resmoe\":{\"residual\":\"%s\",\"keep\":%g,\"bary_bytes\":%llu,\"residual_bytes\":%llu}",
               rl->residual == MOESZ_RESIDUAL_SVD ? "svd" : "prune", rl->keep, (unsigned long long)rb, (unsigned long long)rr);
      printf("}");
    } else {
      printf("%-5d  %10.3f  %9.3f  %6.3f  %-8g", L, (double)lr / 1e6, (double)ls / 1e6, ls ? (double)lr / (double)ls : 0, leb);
      if (rl)
        printf("  %s keep %g: %.3f + %.3f", rl->residual == MOESZ_RESIDUAL_SVD ? "svd" : "prune", rl->keep, (double)rb / 1e6,
               (double)rr / 1e6);
      printf("\n");
    }
    first = 0;
  }
  if (json) printf("]}\n");
  moesz_msz_close(c);
  return 0;
}
