#!/usr/bin/env python3
"""Tests of the reference's tools as a user runs them (unittest; run by
scripts/test.sh with PDROP_REPLAY_EXE naming the built pdrop-replay):

- make_golden.py and dump.py on bad input: one line on stderr, exit 1,
  nothing written;
- dump.py on tiny checkpoints saved with save_pretrained (LLaVA-1.5,
  LLaVA-NeXT, Qwen2-VL): the case it writes passes `pdrop-replay check`;
- the pruning rules of pdrop_ref.prune against plain restatements.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
PY = sys.executable
REPLAY = os.environ.get("PDROP_REPLAY_EXE")


def run(*cmd):
    return subprocess.run(list(cmd), capture_output=True, text=True)


class OneLineErrors(unittest.TestCase):
    def expect_error(self, r, needle, out=None):
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)
        self.assertIn(needle, r.stderr)
        if out is not None:
            self.assertFalse(os.path.exists(out), f"{out} was written")


class MakeGolden(OneLineErrors):
    def test_unknown_architecture_or_case(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "g")
            self.expect_error(run(PY, f"{HERE}/make_golden.py", "--out", out, "--only", "gpt2"),
                              "unknown architecture 'gpt2'", out)
            self.expect_error(run(PY, f"{HERE}/make_golden.py", "--out", out, "--only",
                                  "llava/nope"), "no case 'llava/nope'", out)

    def test_check_against_a_missing_folder(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.expect_error(run(PY, f"{HERE}/make_golden.py", "--check", "--out", tmp,
                                  "--only", "llama/pyramid"), "no committed weights")


class Rules(unittest.TestCase):
    def test_budgets_round_each_image(self):
        from pdrop_ref.prune import budgets
        # Two images of 5 tokens at ratio 0.5: int(5 * 0.5) each, or int(10 * 0.5) in all.
        self.assertEqual(budgets([(3, 5), (10, 5)], 0.5, "per_span"), [2, 2])
        self.assertEqual(budgets([(3, 5), (10, 5)], 0.5, "global"), [5])
        self.assertEqual(budgets([(0, 576)], 0.125, "per_span"), [72])

    def test_select_keeps_the_largest_ties_to_the_lower_index(self):
        import torch
        from pdrop_ref.prune import select
        s = torch.tensor([0.1, 0.5, 0.5, 0.2, 0.9, 0.5])
        self.assertEqual(select(s, [6], [3], "per_span", check=False), [1, 2, 4])
        # Per span: each span its own top; global: the union's top.
        s = torch.tensor([0.9, 0.8, 0.1, 0.3, 0.2, 0.7])
        self.assertEqual(select(s, [3, 3], [1, 1], "per_span", check=False), [0, 5])
        self.assertEqual(select(s, [3, 3], [2], "global", check=False), [0, 1])

    def test_select_refuses_a_near_tie_at_the_boundary(self):
        import torch
        from pdrop_ref.prune import MarginError, select
        s = torch.tensor([0.3, 0.2000001, 0.2, 0.1], dtype=torch.float64)
        with self.assertRaises(MarginError):
            select(s, [4], [2], "per_span")

    def test_plan_rejects_a_drop_after_the_last_layer(self):
        from pdrop_ref.prune import Plan
        with self.assertRaisesRegex(ValueError, "drop after layer 4"):
            Plan([2, 4], [0.5, 0.25]).validate(4)
        with self.assertRaisesRegex(ValueError, "unknown strategy"):
            Plan([2], [0.5], "sparsevlm").validate(4)
        with self.assertRaisesRegex(ValueError, "global budget needs a scoring strategy"):
            Plan([2], [0.5], "dart", "global").validate(4)

    def test_v2drop_variation_is_the_l2_norm_of_the_change(self):
        import torch
        from pdrop_ref.prune import Plan, variation_scores
        before = torch.tensor([[9.0, 9.0], [1.0, 1.0], [3.0, 4.0], [0.0, 0.0], [2.0, 2.0]])
        after = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0], [2.0, 5.0]])
        # Token 0 is text (not scored); 1 unchanged; 2 moves by (-3, -4); 3 by (1, 0).
        self.assertEqual(variation_scores(before, after, [(1, 3)]).tolist(), [0.0, 5.0, 1.0])
        self.assertEqual(variation_scores(before, after, [(1, 1), (3, 2)]).tolist(), [0.0, 1.0, 3.0])
        # Progressive, and a global budget: both allowed for V2Drop.
        Plan([1, 2, 3], [0.5, 0.25, 0.0], "v2drop").validate(4)
        Plan([1, 3], [0.5, 0.25], "v2drop", "global").validate(4)
        with self.assertRaisesRegex(ValueError, "drops once"):
            Plan([1, 3], [0.5, 0.25], "dart").validate(4)

    def test_image_spans_are_the_placeholder_runs(self):
        import torch
        from pdrop_ref.prune import image_spans
        ids = torch.tensor([[1, 7, 7, 7, 2, 7, 8, 8, 3]])
        self.assertEqual(image_spans(ids, {7, 8}), [(1, 3), (5, 3)])


@unittest.skipUnless(REPLAY and os.path.exists(REPLAY), "PDROP_REPLAY_EXE not built")
class Dump(OneLineErrors):
    @classmethod
    def setUpClass(cls):
        import warnings

        import transformers
        from pdrop_ref import models
        warnings.filterwarnings("ignore")
        transformers.logging.set_verbosity_error()
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dirs = {}
        for arch in ("llava", "llava_next", "qwen2_vl", "qwen3_vl", "llama"):
            model, proc = models.build(arch, 3)
            d = os.path.join(cls.tmp.name, arch)
            model.save_pretrained(d)
            proc.save_pretrained(d)
            cls.dirs[arch] = d

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def dump(self, *args):
        return run(PY, f"{HERE}/dump.py", *args)

    def test_saved_checkpoints_replay_token_for_token(self):
        for arch, extra in (("llava", []), ("llava_next", ["--layer-list", "2", "--ratios", "0.25"]),
                            ("qwen2_vl", ["--budget", "global", "--image", "chelsea"]),
                            ("qwen3_vl", ["--layer-list", "1,2", "--ratios", "0.5,0.25"])):
            with self.subTest(arch=arch):
                out = os.path.join(self.tmp.name, f"case_{arch}")
                r = self.dump("--model", self.dirs[arch], "--image", "coffee", "--prompt",
                              "Describe the image.", "--out", out, *extra)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertTrue(os.path.isdir(os.path.join(out, "weights")))
                c = run(REPLAY, "check", out)
                self.assertEqual(c.returncode, 0, c.stdout + c.stderr)
                self.assertIn("PASS: 0 differences", c.stdout)

    def test_without_weights_the_drops_still_replay(self):
        out = os.path.join(self.tmp.name, "case_noweights")
        r = self.dump("--model", self.dirs["llava"], "--image", "astronaut", "--prompt",
                      "What is this?", "--out", out, "--no-weights", "--steps", "0")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(os.path.exists(os.path.join(out, "weights")))
        s = run(REPLAY, "score", os.path.join(out, "drop_0"), os.path.join(self.tmp.name, "s"))
        self.assertEqual(s.returncode, 0, s.stderr)
        import numpy as np
        self.assertEqual(np.load(os.path.join(self.tmp.name, "s", "kept.npy")).tolist(),
                         np.load(os.path.join(out, "drop_0", "kept.npy")).tolist())

    def test_bad_input(self):
        out = os.path.join(self.tmp.name, "never")
        base = ["--prompt", "Describe it.", "--out", out]
        self.expect_error(self.dump("--model", os.path.join(self.tmp.name, "missing"), "--image",
                                    "coffee", *base), "not a folder", out)
        self.expect_error(self.dump("--model", self.dirs["llama"], "--image", "coffee", *base),
                          "architecture 'llama' is not supported", out)
        self.expect_error(self.dump("--model", self.dirs["llava"], *base),
                          "no image tokens", out)
        self.expect_error(self.dump("--model", self.dirs["llava"], "--image", "coffee",
                                    "--layer-list", "2,4", "--ratios", "0.5,0.25", *base),
                          "drop after layer 4", out)
        self.expect_error(self.dump("--model", self.dirs["llava"], "--image",
                                    os.path.join(self.tmp.name, "nope.png"), *base),
                          "nope.png", out)
        self.expect_error(self.dump("--model", self.dirs["llava"], "--image", "coffee",
                                    "--layer-list", "2", *base), "needs --ratios", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
