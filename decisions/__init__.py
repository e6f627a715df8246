"""Decisions that belong to no stage package, each a rule of the one shape (registry/rules.py).

- `decisions.selection`: which discovered candidates are curated (stage 1);
- `decisions.publication`: whether a model's entry is published, and which templates it lists (stage 5b);
- `decisions.reconciliation`: whether a catalog entry is kept, flagged or withdrawn (the weekly diff).

The screen verdict (scanners/policy.py), the image gate (scanners/image_gate.py) and the cell verdict
(validators/cells.py) live with their stage. docs/decisions.md lists them all with their policy keys.
This package imports `registry` only; `flows` call it.
"""
