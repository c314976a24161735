"""Intra-class similarity (paper Fig. 4): the measure on known data, and the command end to end."""
from __future__ import annotations

import json

import pytest
import torch

from s2vc.training.evaluation.similarity import pairwise_frame_cosine


def test_pairwise_frame_cosine_known_answers():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert pairwise_frame_cosine([a, a.clone()]) == pytest.approx(1.0)
    assert pairwise_frame_cosine([a, -a]) == pytest.approx(-1.0)
    b = torch.tensor([[0.0, 1.0], [1.0, 0.0]])                 # orthogonal frame by frame
    assert pairwise_frame_cosine([a, b]) == pytest.approx(0.0)
    assert pairwise_frame_cosine([a, a, b]) == pytest.approx(1 / 3)   # pairs: 1, 0, 0
    with pytest.raises(ValueError, match="at least two"):
        pairwise_frame_cosine([a])


def test_similarity_on_a_tiny_synthetic_set(tmp_path):
    from s2vc.training.evaluation.similarity import SimilaritySettings, evaluate_similarity
    from s2vc.training.data.synthetic import SyntheticSet
    settings = SimilaritySettings(out=str(tmp_path / "out"), root=str(tmp_path / "syn"), frames=4, classes=3,
                                  per_class=3, synthetic=SyntheticSet(train_per_class=3, test_per_class=1))
    result = evaluate_similarity(settings)
    classes = result["classes"]
    assert len(classes) == 3 and all(-1 <= v <= 1 for pair in classes.values() for v in pair)
    saved = json.loads((tmp_path / "out" / "similarity.json").read_text())
    assert set(saved["classes"]) == set(classes) and saved["alpha"] == result["alpha"]
    assert (tmp_path / "out" / "similarity.png").stat().st_size > 1000
    assert "intra-class cosine similarity, synthetic train" in result.table and "mean" in result.table


def test_similarity_progress_bar_only_when_asked(tmp_path, capsys):
    from s2vc.training.evaluation.similarity import SimilaritySettings, evaluate_similarity
    from s2vc.training.data.synthetic import SyntheticSet
    kw = dict(root=str(tmp_path / "syn"), frames=4, classes=2, per_class=2,
              synthetic=SyntheticSet(train_per_class=2, test_per_class=1))
    evaluate_similarity(SimilaritySettings(out=str(tmp_path / "a"), **kw))
    assert "similarity:" not in capsys.readouterr().err
    evaluate_similarity(SimilaritySettings(out=str(tmp_path / "b"), progress=True, **kw))
    assert "similarity:" in capsys.readouterr().err
