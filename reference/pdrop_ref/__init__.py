"""pdrop's reference: visual-token pruning applied to transformers' own model
classes, and the golden cases it writes (see reference/README.md)."""
