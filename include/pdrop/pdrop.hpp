// pdrop/pdrop.hpp - everything, in the order a drop uses it:
// schedule -> score -> select -> compact (rank_and_drop chains the middle).
#ifndef PDROP_PDROP_HPP
#define PDROP_PDROP_HPP

#include "pdrop/config.hpp"     // version, the inline namespace
#include "pdrop/errors.hpp"     // pdrop::invalid_argument and kin
#include "pdrop/types.hpp"      // TokenView, HeadView, span, ImageSpan (standard library only)
#include "pdrop/view.hpp"       // half, bfloat16, views over Eigen objects
#include "pdrop/workspace.hpp"  // reusable scratch
#include "pdrop/budget.hpp"     // keep rules: ratio, count, rounding, DART quota
#include "pdrop/schedule.hpp"   // where drops happen, tokens per stage
#include "pdrop/dispatch.hpp"   // which SIMD kernels scoring runs (run-time dispatch)
#include "pdrop/score.hpp"      // attention of the query tokens to image tokens
#include "pdrop/select.hpp"     // top-k in original order
#include "pdrop/compact.hpp"    // keep list, compaction of rows/heads/positions
#include "pdrop/rank_drop.hpp"  // score -> select -> keep list in one call
#include "pdrop/batch.hpp"      // rank & drop over a batch of sequences
#include "pdrop/mrope.hpp"      // M-RoPE positions (3 or 4 rows, sections / interleaved)
#include "pdrop/deepstack.hpp"  // Qwen3-VL DeepStack feature rows through drops
#include "pdrop/rope.hpp"       // re-rotating post-RoPE rows to new positions
#include "pdrop/sequence.hpp"   // the per-sequence record of applied drops
#include "pdrop/v2drop.hpp"     // V2Drop: variation of hidden states
#include "pdrop/strategies.hpp" // FastV, VTW, DART, V2Drop, random, training queries
#include "pdrop/pruner.hpp"     // one sequence's drops in one object
#include "pdrop/tensor_parallel.hpp"  // partial scores over sharded heads
#include "pdrop/flops.hpp"      // FLOPs / KV-cache model of a schedule
// pdrop/dlpack.hpp (views from DLTensor) needs <dlpack/dlpack.h>: include
// it yourself.

#endif  // PDROP_PDROP_HPP
