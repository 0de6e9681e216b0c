"""Retrieval metrics: the external known answer, the tie rule, several captions per video, paragraphs."""

import numpy as np
import pytest
import torch

from hdvila.retrieval.metrics import format_table, metrics_from_ranks, query_ranks, retrieval_metrics, retrieval_ranks

# Known answer from shared/docs/checks.md ("Retrieval metrics"): text->video ranks [0, 1, 3, 1],
# R@1 25%, R@5 100%, median rank 2.0, mean rank 2.25 (values of the CLIP4Clip / HD-VILA metrics code).
S = [[.9, .1, .2, .3], [.8, .5, .1, 0], [.7, .6, .1, .2], [.1, .2, .9, .3]]


def test_known_answer_checks_md():
    ranks = retrieval_ranks(np.array(S))
    assert ranks["t2v"].tolist() == [0, 1, 3, 1]
    m = retrieval_metrics(np.array(S))["t2v"]
    assert m["R@1"] == pytest.approx(25.0)
    assert m["R@5"] == pytest.approx(100.0)
    assert m["R@10"] == m["R@50"] == pytest.approx(100.0)
    assert m["MedR"] == pytest.approx(2.0)
    assert m["MeanR"] == pytest.approx(2.25)
    assert m["num_queries"] == 4


def test_video_to_text_uses_transpose():
    # columns of S as queries: col0 [.9,.8,.7,.1] -> rank 0; col1 [.1,.5,.6,.2] -> .6 above .5 -> 1;
    # col2 [.2,.1,.1,.9] diag .1 (row 2): .2 and .9 above, the other .1 ties -> pessimistic 3, optimistic 2;
    # col3 [.3,0,.2,.3] diag .3 (row 3): the other .3 ties -> pessimistic 1, optimistic 0.
    assert retrieval_ranks(np.array(S))["v2t"].tolist() == [0, 1, 3, 1]
    assert retrieval_ranks(np.array(S), ties="optimistic")["v2t"].tolist() == [0, 1, 2, 0]
    # a torch tensor gives the same answer
    assert retrieval_ranks(torch.tensor(S))["t2v"].tolist() == [0, 1, 3, 1]


def test_all_ones_counts_each_query_once():
    # The reference code gives 9 entries for 3 queries here (checks.md); ours keeps the denominator 3.
    ones = np.ones((3, 3))
    pess = retrieval_ranks(ones)
    assert pess["t2v"].tolist() == [2, 2, 2] and pess["v2t"].tolist() == [2, 2, 2]
    m = retrieval_metrics(ones)
    assert m["t2v"]["num_queries"] == 3 and m["v2t"]["num_queries"] == 3
    assert m["t2v"]["R@1"] == 0.0 and m["t2v"]["R@5"] == 100.0 and m["t2v"]["MedR"] == 3.0
    opt = retrieval_metrics(ones, ties="optimistic")["t2v"]
    assert opt["num_queries"] == 3 and opt["R@1"] == 100.0 and opt["MeanR"] == 1.0
    # R@K values are multiples of 100/3: impossible if any query counted twice
    for m_ in (m["t2v"], opt):
        for k in (1, 5, 10, 50):
            assert (m_[f"R@{k}"] * 3 / 100) == pytest.approx(round(m_[f"R@{k}"] * 3 / 100))


def _brute_force_rank(scores, correct, pessimistic):
    """Position of the first correct item after sorting by score, ties broken against the query
    (wrong items first) or for it (correct items first)."""
    # bool sorts False < True: pessimistic puts wrong items (correct=False) first among equal scores
    tie_key = (lambda n: correct[n]) if pessimistic else (lambda n: not correct[n])
    order = sorted(range(len(scores)), key=lambda n: (-scores[n], tie_key(n)))
    return next(pos for pos, n in enumerate(order) if correct[n])


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
def test_matches_brute_force_with_many_ties(ties):
    rng = np.random.default_rng(0)
    for _ in range(20):
        q, n = rng.integers(1, 12, size=2)
        sim = rng.integers(0, 3, size=(q, n)).astype(np.float32)  # few distinct values: many ties
        correct = rng.random((q, n)) < 0.3
        correct[np.arange(q), rng.integers(0, n, size=q)] = True
        got = query_ranks(sim, correct, ties)
        want = [_brute_force_rank(sim[i].tolist(), correct[i].tolist(), ties == "pessimistic") for i in range(q)]
        assert got.tolist() == want
        assert got.shape == (q,)


def test_no_ties_equals_argsort_position_and_rules_agree():
    rng = np.random.default_rng(1)
    sim = rng.standard_normal((50, 50))
    want = [int(np.where(np.argsort(-sim[i], kind="stable") == i)[0][0]) for i in range(50)]
    assert retrieval_ranks(sim)["t2v"].tolist() == want
    assert retrieval_ranks(sim, ties="optimistic")["t2v"].tolist() == want
    m = retrieval_metrics(sim)["t2v"]
    assert m["R@1"] == pytest.approx(100 * np.mean(np.array(want) < 1))
    assert m["MedR"] == pytest.approx(np.median(want) + 1)


def test_several_captions_per_video():
    # 3 videos; captions 0,1 -> video 0; caption 2 -> video 1; captions 3,4,5 -> video 2
    caption_video = [0, 0, 1, 2, 2, 2]
    sim = np.array([
        [.9, .1, .2],   # cap0 (v0): rank 0
        [.1, .5, .3],   # cap1 (v0): .5 above .1 and .3 above .1 -> 2
        [.4, .6, .2],   # cap2 (v1): rank 0
        [.3, .2, .1],   # cap3 (v2): 2
        [.2, .1, .8],   # cap4 (v2): 0
        [.1, .9, .3],   # cap5 (v2): 1
    ])
    r = retrieval_ranks(sim, caption_video)
    assert r["t2v"].tolist() == [0, 2, 0, 2, 0, 1]
    # video->text: v0 column [.9,.1,.4,.3,.2,.1]; best own caption cap0 .9 -> 0.
    # v1 column [.1,.5,.6,.2,.1,.9]: own cap2 .6, cap5 (.9) is above -> 1.
    # v2 column [.2,.3,.2,.1,.8,.3]: best own caption cap4 .8 -> 0 (own captions never count against it).
    assert r["v2t"].tolist() == [0, 1, 0]
    m = retrieval_metrics(sim, caption_video)
    assert m["t2v"]["num_queries"] == 6 and m["v2t"]["num_queries"] == 3
    assert m["t2v"]["R@1"] == pytest.approx(50.0)
    assert m["v2t"]["R@1"] == pytest.approx(200 / 3)
    assert m["t2v"]["MeanR"] == pytest.approx(np.mean([0, 2, 0, 2, 0, 1]) + 1)


def test_own_tied_captions_do_not_hurt_video_to_text():
    # two captions of v0 tie at the top: the first correct caption is still first
    sim = np.array([[.5, .1], [.5, .2], [.1, .9]])
    r = retrieval_ranks(sim, [0, 0, 1])
    assert r["v2t"].tolist() == [0, 0]
    # a wrong caption tied with the best own caption is ranked ahead under the pessimistic rule
    sim2 = np.array([[.5, .1], [.1, .5], [.5, .9]])
    assert retrieval_ranks(sim2, [0, 1, 1])["v2t"].tolist() == [1, 0]
    assert retrieval_ranks(sim2, [0, 1, 1], ties="optimistic")["v2t"].tolist() == [0, 0]


def test_paragraph_mode_is_one_query_per_video():
    # paragraph retrieval (DiDeMo / ActivityNet): one joined query per video -> square, diagonal ground truth,
    # which must equal passing caption_video = range(V) explicitly
    from hdvila.retrieval.annotations import Annotations

    ann = Annotations(video_ids=["a", "b", "c"], captions=[["x one.", "x two."], ["y"], ["z one", "z two", "z3"]])
    para = ann.as_paragraphs()
    texts, cv = para.queries()
    assert texts == ["x one. x two.", "y", "z one z two z3"] and cv == [0, 1, 2]
    rng = np.random.default_rng(2)
    sim = rng.standard_normal((3, 3))
    assert retrieval_metrics(sim, cv) == retrieval_metrics(sim)
    texts_all, cv_all = ann.queries()
    assert len(texts_all) == 6 and cv_all == [0, 0, 1, 2, 2, 2]


def test_bad_inputs():
    with pytest.raises(ValueError, match="caption_video"):
        retrieval_metrics(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="no caption"):
        retrieval_metrics(np.zeros((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(np.array([[np.nan, 1.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="ties"):
        retrieval_metrics(np.eye(2), ties="random")
    with pytest.raises(ValueError, match="no correct item"):
        query_ranks(np.eye(2), np.array([[True, False], [False, False]]))
    with pytest.raises(ValueError):
        metrics_from_ranks([])


def test_format_table_has_both_directions():
    text = format_table(retrieval_metrics(np.array(S)))
    assert "text->video" in text and "video->text" in text and "R@50" in text and "MeanR" in text
    assert "25.0" in text and "2.25" in text
