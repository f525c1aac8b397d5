/* README.md, "The C API": the README's C snippet, run as written.
 *
 * The check: one fp16 image of 8 tokens whose keys are designed so the
 * last token's attention ranks them by a known permutation (q all ones, k
 * row j all perm[j] / 8: softmax is monotone in q.k); keeping 3 must keep
 * the tokens with the 3 largest values, and every text token. Then the same
 * call with a count larger than the span fails with the message the
 * snippet's comment shows, writing nothing. Exit status 0 when both hold. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "pdrop/c_api.h"

enum { Hq = 2, Hkv = 1, d = 4, cap = 16 };
/* binary16 bits of m / 8 for m = 0..8 (exact). */
static const uint16_t eighths[9] = {0x0000, 0x3000, 0x3400, 0x3600, 0x3800,
                                    0x3900, 0x3A00, 0x3B00, 0x3C00};
static const int perm[8] = {3, 7, 1, 5, 0, 6, 2, 4};

static uint16_t q[Hq * d], k[Hkv * cap * d];
static const pdrop_image_span spans[1] = {{2, 8}};

/* The snippet, with the names it uses; returns its status. */
static pdrop_status drop(pdrop_workspace* ws, const int64_t* counts, int64_t* keep,
                         int64_t* n_out) {
  const int64_t T = 12, n_spans = 1, last = T - 1;
  pdrop_status status;
  /* [snippet c_api_drop] */
  #include <pdrop/c_api.h>

  pdrop_drop_params p = pdrop_drop_default_params();
  p.score.q = (pdrop_heads){q, PDROP_TYPE_F16, Hq, 1, d, d, Hq * d};       /* NHD row */
  p.score.k = (pdrop_heads){k, PDROP_TYPE_F16, Hkv, T, d, cap * d, d};     /* HND cache */
  p.score.query_pos = &last;  p.score.n_query = 1;
  p.score.spans = spans;      p.score.n_spans = n_spans;
  p.keep_counts = counts;     p.n_keep_counts = n_spans;   /* pdrop_sequence_keep_counts */
  int64_t n_keep = 0;
  if (pdrop_rank_and_drop(ws, &p, keep, T, &n_keep) != PDROP_STATUS_OK)
    fprintf(stderr, "%s\n", pdrop_last_error());
  /* pdrop_rank_and_drop: keep_counts[0] (9) must be in [0, spans[0].length = 8] */
  /* [/snippet c_api_drop] */
  status = pdrop_rank_and_drop(ws, &p, keep, T, &n_keep);
  *n_out = n_keep;
  return status;
}

int main(void) {
  const int64_t three = 3, nine = 9, want[7] = {0, 1, 3, 5, 7, 10, 11};
  int64_t keep[12], before[12], n = -1;
  pdrop_workspace* ws = NULL;
  int i, j, ok = 1;

  for (i = 0; i < Hq * d; ++i) q[i] = eighths[8];
  for (j = 0; j < 12; ++j)
    for (i = 0; i < d; ++i)
      k[j * d + i] = j >= 2 && j < 10 ? eighths[perm[j - 2]] : eighths[0];
  if (pdrop_workspace_new(&ws) != PDROP_STATUS_OK) return 1;

  /* perm's 7, 6 and 5 sit at image tokens 1, 5 and 3: tokens 3, 7, 5. */
  ok = drop(ws, &three, keep, &n) == PDROP_STATUS_OK && n == 7 &&
       memcmp(keep, want, sizeof want) == 0;

  for (i = 0; i < 12; ++i) keep[i] = before[i] = -1;
  ok = ok && drop(ws, &nine, keep, &n) == PDROP_STATUS_VALUE_ERROR &&
       strcmp(pdrop_last_error(), "pdrop_rank_and_drop: keep_counts[0] (9) must be in "
                                  "[0, spans[0].length = 8]") == 0 &&
       memcmp(keep, before, sizeof keep) == 0;
  pdrop_workspace_free(ws);
  printf("%s: the README's C API drop\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
