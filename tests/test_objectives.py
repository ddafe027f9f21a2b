"""benchmark.objectives: the one table of what a study minimises and how it prunes."""

from __future__ import annotations

import pytest

from benchmark.objectives import OBJECTIVES, get_objective, intermediate_metric, metric_names


def test_pruning_metric_is_the_objectives_own_when_scored_every_epoch():
    assert intermediate_metric("wasserstein", exact_every_epoch=True) == "w1"
    assert intermediate_metric("wasserstein-noise", exact_every_epoch=True) == "w1_noise"
    assert intermediate_metric("pareto", exact_every_epoch=True) == "w1"
    assert intermediate_metric("wasserstein") == "sliced_w2"
    assert intermediate_metric("wasserstein-noise") == "sliced_w2_noise"
    # classifier-FID is never scored every epoch: sliced W2 in its sampling mode
    assert intermediate_metric("cfid", exact_every_epoch=True) == "sliced_w2"
    assert intermediate_metric("cfid-noise", exact_every_epoch=True) == "sliced_w2_noise"


def test_table_rows():
    assert list(OBJECTIVES) == ["wasserstein", "wasserstein-noise", "cfid", "cfid-noise", "pareto"]
    pareto = get_objective("pareto")
    assert pareto.multi and pareto.directions == ["minimize", "minimize"]
    assert pareto.metrics == ("w1", "g_loss_var")
    noise = get_objective("cfid-noise")
    assert noise.needs_labels and noise.applies_to("realmix") and not noise.applies_to("gan")
    assert get_objective("cfid").applies_to(None)  # every space, compare included
    assert metric_names("an-old-name") == ("w1",)
    with pytest.raises(ValueError, match="valid: wasserstein, wasserstein-noise"):
        get_objective("fid")
