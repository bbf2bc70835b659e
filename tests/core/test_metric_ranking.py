"""The methods table's ranking rule (metrics.rank_methods) and the verdicts beside each metric (metrics.verdict_text),
on MetricScores made by hand: a ranking only where every metric orders the methods the same way with intervals
apart; a disagreement or an overlap is said instead, naming the metrics and methods."""

from __future__ import annotations

import numpy as np

from explorer.core.attribution.metrics import MetricScore, rank_methods, score_text, verdict_text


def srg(*values):
    return MetricScore("srg", values, [-0.1, 0.1], True)


def road(*values):
    return MetricScore("road", values, [-0.05, 0.05], True)


def smooth(*values):  # lower is better
    return MetricScore("smooth_mprt", values, [0.9, 0.95], False)


def test_metrics_that_agree_with_intervals_apart_rank_the_methods():
    scores = {"Saliency": {"srg": srg(0.30, 0.32), "road": road(0.20, 0.22), "smooth_mprt": smooth(0.5, 0.6)},
              "Grad-CAM": {"srg": srg(0.50, 0.55), "road": road(0.30, 0.31), "smooth_mprt": smooth(0.1, 0.2)},
              "Occlusion": {"srg": srg(0.10, 0.12), "road": road(0.00, 0.02), "smooth_mprt": smooth(0.7, 0.8)}}
    ranking = rank_methods(scores)
    # Smooth MPRT's lower values are better: Grad-CAM's 0.1–0.2 puts it first there as SRG and ROAD do.
    assert ranking.order == ("Grad-CAM", "Saliency", "Occlusion")
    assert ranking.metrics == ("srg", "road", "smooth_mprt") and ranking.reason == ""
    assert "Grad-CAM > Saliency > Occlusion" in ranking.text()


def test_metrics_that_disagree_give_no_ranking_and_say_which_puts_whom_first():
    scores = {"Saliency": {"srg": srg(0.44), "road": road(0.35, 0.36)},
              "Grad-CAM": {"srg": srg(0.59), "road": road(0.24, 0.25)}}
    ranking = rank_methods(scores)
    assert ranking.order == ()
    assert ranking.text() == "No ranking: SRG puts Grad-CAM first, ROAD puts Saliency first."
    # The same first method, but the order below it reversed: said for the pair.
    scores = {"A": {"srg": srg(0.9), "road": road(0.9)}, "B": {"srg": srg(0.5), "road": road(0.2)},
              "C": {"srg": srg(0.2), "road": road(0.5)}}
    assert rank_methods(scores).reason == "SRG puts B above C, ROAD puts C above B"


def test_overlapping_intervals_give_no_ranking_even_when_the_means_agree():
    scores = {"Saliency": {"srg": srg(0.40, 0.50), "road": road(0.20, 0.30)},
              "Grad-CAM": {"srg": srg(0.45, 0.60), "road": road(0.40, 0.45)}}
    ranking = rank_methods(scores)
    assert ranking.order == () and ranking.reason == "the intervals of Saliency and Grad-CAM overlap on SRG"
    # A metric only one method has is left out of the comparison; one method alone is not ranked.
    scores["Grad-CAM"]["srg"] = srg(0.7)
    scores["Saliency"]["efficient_mprt"] = MetricScore("efficient_mprt", [0.3], [0.0], True)
    assert rank_methods(scores).order == ("Grad-CAM", "Saliency")
    assert rank_methods(scores).metrics == ("srg", "road")
    assert rank_methods({"Saliency": scores["Saliency"]}).order == ()


def test_a_verdict_only_when_the_interval_clears_the_reference():
    assert verdict_text(srg(0.3)) == "✓ beats random"
    assert verdict_text(srg(0.05, 0.3)) == "not distinguishable"  # overlaps [-0.1, 0.1]
    assert verdict_text(srg(-0.3, -0.2)) == "no better than random"
    assert verdict_text(smooth(0.2, 0.4)) == "✓ changes with the weights"
    assert verdict_text(smooth(0.96, 0.99)) == "changes less than the noise"
    assert verdict_text(MetricScore("efficient_mprt", [-0.3, -0.1], [0.0], True)) == "entropy does not rise"
    assert verdict_text(MetricScore("srg", [0.3], [], True)) == "not distinguishable"  # no reference
    assert verdict_text(MetricScore("road", [np.nan], [0.0], True)) == "not distinguishable"
    assert score_text(road(0.38, 0.42, 0.47)) == "0.423 [0.380, 0.470]" and score_text(srg(0.4434)) == "0.443"


def test_where_some_metrics_agree_the_line_says_which_and_their_order_but_ranks_nothing():
    """The demo star's case (measured): SRG and ROAD order the three maps alike with intervals apart, smooth MPRT
    puts Grad-CAM first (lower is better) and overlaps Integrated Gradients with it."""
    scores = {"Saliency": {"srg": srg(0.813), "road": road(0.450, 0.453), "smooth_mprt": smooth(0.531, 0.617)},
              "Integrated Gradients": {"srg": srg(0.754), "road": road(0.401, 0.403), "smooth_mprt": smooth(0.14, 0.2)},
              "Grad-CAM": {"srg": srg(0.610), "road": road(0.359, 0.361), "smooth_mprt": smooth(0.0, 0.211)}}
    ranking = rank_methods(scores)
    assert ranking.order == () and ranking.agreeing == ("srg", "road")
    assert ranking.agreed == ("Saliency", "Integrated Gradients", "Grad-CAM")
    assert ranking.text() == ("No ranking: SRG puts Saliency first, smooth MPRT puts Grad-CAM first. SRG and ROAD "
                              "alone agree: Saliency > Integrated Gradients > Grad-CAM.")
    # One metric alone is no agreement.
    del scores["Saliency"]["road"]
    assert rank_methods(scores).agreed == ()
