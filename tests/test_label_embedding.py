"""Label-space embedding with planted word vectors: class vectors, DeViSE heads, blending, zero-shot."""
import numpy as np
import pytest
from gensim.models import KeyedVectors

from fusion_lib import assets
from fusion_lib.feature_set import FeatureSet
from fusion_lib.label_embedding import (LabelSpaceModel, blend, choose_blend_weight, class_vectors, fit_label_head,
                                        tokenize, zero_shot)
from fusion_lib.training import TrainConfig

WORDS = ["apple", "boat", "cloud", "drum", "eagle", "flute", "grape", "horse"]
DIM, LATENT, D = 20, 4, 16


def planted_vectors(seed: int = 0) -> KeyedVectors:
    """Word vectors of the class words living in a 4-d subspace, so a map learned on some classes generalises."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(DIM, LATENT)))[0].T  # (LATENT, DIM) orthonormal rows
    kv = KeyedVectors(vector_size=DIM)
    words = WORDS + ["ankle", "boot", "shirt", "t", "top"]
    kv.add_vectors(words, (rng.normal(size=(len(words), LATENT)) @ basis).astype(np.float32))
    return kv


def planted_feature_set(kv: KeyedVectors, seed: int = 0, sizes=(400, 200, 300)) -> FeatureSet:
    """Each backbone's features are a different random linear image of the class's word vector, plus noise."""
    rng = np.random.default_rng(seed)
    vecs = np.stack([kv[w] for w in WORDS])
    maps = {b: rng.normal(size=(DIM, D)) for b in ("a", "b")}
    feats, labels = {}, {}
    for split, n in zip(("train", "val", "test"), sizes):
        y = rng.integers(0, len(WORDS), n)
        feats[split] = {b: (vecs[y] @ m + 0.3 * rng.normal(size=(n, D))).astype(np.float32) for b, m in maps.items()}
        labels[split] = y.astype(np.int64)
    thumbs = {s: np.zeros((len(labels[s]), 3, 8, 8), np.float32) for s in labels}
    return FeatureSet("planted", ["a", "b"], list(WORDS), feats, labels, thumbs, {"a": 1.0, "b": 1.0})


@pytest.fixture(scope="module")
def kv():
    return planted_vectors()


@pytest.fixture(scope="module")
def fs(kv):
    return planted_feature_set(kv)


def test_tokenize_lowercases_and_splits_on_non_letters():
    assert tokenize("T-shirt/top") == ["t", "shirt", "top"]
    assert tokenize("ankle boot") == ["ankle", "boot"]
    assert tokenize("Sandal") == ["sandal"]


def test_multi_word_class_is_the_normalised_mean_of_its_tokens(kv):
    vecs = class_vectors(["ankle boot", "T-shirt/top", "apple"], kv)
    mean = (kv["ankle"] + kv["boot"]) / 2
    np.testing.assert_allclose(vecs[0], mean / np.linalg.norm(mean), rtol=1e-5)
    mean = (kv["t"] + kv["shirt"] + kv["top"]) / 3
    np.testing.assert_allclose(vecs[1], mean / np.linalg.norm(mean), rtol=1e-5)
    assert vecs.shape == (3, DIM) and np.allclose(np.linalg.norm(vecs, axis=1), 1.0)


def test_missing_words_are_listed_and_aliases_fix_them(kv):
    with pytest.raises(KeyError, match="blorpt") as err:
        class_vectors(["apple", "blorpt shoe", "7"], kv)
    assert "shoe" in str(err.value) and "'7'" in str(err.value) and "aliases" in str(err.value)
    vecs = class_vectors(["apple", "blorpt shoe", "7"], kv, aliases={"blorpt shoe": "boot", "7": "drum"})
    np.testing.assert_allclose(vecs[1], kv["boot"] / np.linalg.norm(kv["boot"]), rtol=1e-5)
    # a token-level alias works inside a longer name
    vecs = class_vectors(["ankle blorpt"], kv, aliases={"blorpt": "boot"})
    np.testing.assert_allclose(vecs[0], class_vectors(["ankle boot"], kv)[0], rtol=1e-5)


def test_label_space_heads_recover_the_classes(kv, fs):
    model = LabelSpaceModel(class_vectors(fs.class_names, kv), TrainConfig()).fit(fs, seed=0)
    for b, p in model.backbone_proba(fs, "test").items():
        assert np.mean(p.argmax(1) == fs.labels["test"]) > 0.9, b
    assert np.mean(model.predict_proba(fs, "test").argmax(1) == fs.labels["test"]) > 0.9
    assert model.heads_["a"].log_scale.exp().item() != pytest.approx(10.0)  # the temperature was learned


def test_zero_shot_predicts_held_out_classes(kv, fs):
    held = ["grape", "horse"]
    table = zero_shot(fs, class_vectors(fs.class_names, kv), held, seed=0, train=TrainConfig())
    assert list(table["model"]) == ["a", "b", "mean"]
    assert set(table.columns) >= {"top1", "top5", "top1_unseen", "n_test"}
    mean = table.set_index("model").loc["mean"]
    assert mean["top1_unseen"] > 0.8  # chance among the 2 held-out classes is 0.5
    assert mean["top5"] > 0.8 and mean["top5"] >= mean["top1"]


def test_held_out_classes_are_not_trained_on(kv, fs):
    vecs = class_vectors(fs.class_names, kv)
    head, _ = fit_label_head(fs, "a", vecs, train=TrainConfig(epochs=3), train_classes=[0, 1, 2])
    assert head.class_vecs.shape == (len(WORDS), DIM)
    with pytest.raises(ValueError, match="some but not all"):
        zero_shot(fs, vecs, held_out=list(range(len(WORDS))))
    with pytest.raises(ValueError, match="class vectors"):
        fit_label_head(fs, "a", vecs[:3])


def test_blend_weight_is_chosen_on_validation():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 100)
    good = np.eye(3)[y] * 0.8 + 0.2 / 3
    bad = rng.dirichlet(np.ones(3), size=100)
    assert choose_blend_weight(good, bad, y) == 0.0
    assert choose_blend_weight(bad, good, y) == 1.0
    np.testing.assert_allclose(blend(good, bad, 0.25), 0.75 * good + 0.25 * bad)
    with pytest.raises(ValueError, match="same length"):
        choose_blend_weight(good, bad, y[:50])


@pytest.mark.skipif(not assets.is_fetched("glove-6b-50d"), reason="GloVe asset not fetched")
def test_offline_glove_covers_the_fashion_mnist_and_digit_names():
    from fusion_lib.data import DIGIT_CLASSES, FASHION_CLASSES
    from fusion_lib.label_embedding import load_vectors

    glove = load_vectors()
    assert class_vectors(FASHION_CLASSES, glove).shape == (10, 50)
    assert class_vectors(DIGIT_CLASSES, glove).shape == (10, 50)
