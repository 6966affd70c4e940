"""Zero-shot ensembling and retrieval R@K against hand-worked values."""

import pytest
import torch

from repro.clip.evaluate import retrieval_recall, zero_shot_accuracy, zero_shot_classifier


def test_retrieval_recall_on_a_hand_built_similarity_matrix():
    # 3 images, 4 texts; text j describes image image_of_text[j]
    sim = torch.tensor([[0.9, 0.1, 0.8, 0.0],    # image 0: ranks texts 0, 2, 1, 3
                        [0.2, 0.3, 0.7, 0.1],    # image 1: ranks texts 2, 1, 0, 3
                        [0.5, 0.4, 0.6, 0.3]])   # image 2: ranks texts 2, 0, 1, 3
    image_of_text = torch.tensor([0, 1, 0, 2])
    r = retrieval_recall(sim, image_of_text, ks=(1, 2, 3))
    # i2t: image 0 hits at rank 1 (text 0); image 1 first hit rank 2 (text 1);
    # image 2 first hit rank 4 (text 3)
    assert r["i2t_R@1"] == pytest.approx(1 / 3)
    assert r["i2t_R@2"] == pytest.approx(2 / 3)
    assert r["i2t_R@3"] == pytest.approx(2 / 3)
    # t2i: text 0 -> images by 0.9, 0.5, 0.2: its image 0 at rank 1
    #      text 1 -> 0.4, 0.3, 0.1 (images 2, 1, 0): image 1 at rank 2
    #      text 2 -> 0.8, 0.7, 0.6 (0, 1, 2): image 0 at rank 1
    #      text 3 -> 0.3, 0.1, 0.0 (2, 1, 0): image 2 at rank 1
    assert r["t2i_R@1"] == pytest.approx(3 / 4)
    assert r["t2i_R@2"] == pytest.approx(1.0)


def test_retrieval_breaks_ties_by_index():
    sim = torch.zeros(2, 2)  # all tied: the lower index ranks first
    r = retrieval_recall(sim, torch.tensor([0, 1]), ks=(1,))
    assert r["i2t_R@1"] == 0.5 and r["t2i_R@1"] == 0.5


def test_positives_matrix_counts_any_matching_caption():
    sim = torch.tensor([[0.1, 0.9], [0.8, 0.2]])
    positives = torch.tensor([[True, True], [False, True]])
    r = retrieval_recall(sim, positives=positives, ks=(1,))
    assert r["i2t_R@1"] == 0.5  # image 0 hits (text 1 matches), image 1's top is text 0: miss
    assert r["t2i_R@1"] == 0.5  # text 0's top image is 1: miss; text 1's top image 0: hit


def test_zero_shot_classifier_averages_normalised_template_embeddings():
    table = {"a cat": [3.0, 0.0], "the cat": [0.0, 1.0], "a dog": [0.0, -2.0],
             "the dog": [-1.0, 0.0]}

    def encode(texts):
        return torch.tensor([table[t] for t in texts])

    w = zero_shot_classifier(encode, ["cat", "dog"], ["a {}", "the {}"])
    s = 2 ** -0.5  # mean of (1, 0) and (0, 1) is (0.5, 0.5), renormalised
    assert torch.allclose(w, torch.tensor([[s, s], [-s, -s]]))
    images = torch.tensor([[1.0, 2.0], [-3.0, -0.5], [1.0, -0.2]])
    acc = zero_shot_accuracy(images, w, torch.tensor([0, 1, 1]), topk=(1, 2))
    assert acc[1] == pytest.approx(2 / 3) and acc[2] == 1.0
