"""Scores of generated samples and of training losses; nothing here imports optuna or mlflow.

- `scoring`: `score()`, the one entry point the harness calls per sampling mode;
- `labels`: `LABELS`, the one table of metric keys (label, unit, direction, needs labels);
- `wasserstein`: exact W1, sliced W2 and pixel W1 on the held-out split;
- `losses`: loss variance and oscillation of a member's per-step losses;
- `copying`: the data-copying tests against the training images (Meehan et al. 2020);
- `modes`: mode coverage of the 2-D mixtures;
- `classifier`: the digit CNN and its class-aware metrics (classifier-FID, PRDC);
- `reference`: the real-vs-real floor and the untrained-G ceiling of each distance;
- `divergence`: the rule that calls a run diverged;
- `checks`: the input checks the modules share.

The package imports none of them, so that `labels` stays cheap to import.
"""
