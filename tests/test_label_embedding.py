"""Label-space embedding with planted word vectors: class vectors, DeViSE heads, blending, zero-shot."""

import numpy as np
import pytest
from gensim.models import KeyedVectors

from fusion_lib.data import assets
from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.fusion import label_space
from fusion_lib.fusion.label_space import (
    ClassMoments,
    LabelSpaceModel,
    blend,
    choose_blend_weight,
    class_vectors,
    cosine_scores,
    fit_label_head,
    fit_zero_shot_map,
    tokenize,
    zero_shot_scores,
)
from fusion_lib.fusion.training import TrainConfig

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
        feats[split] = {
            b: (vecs[y] @ m + 0.3 * rng.normal(size=(n, D))).astype(np.float32) for b, m in maps.items()
        }
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
    held = [fs.class_names.index("grape"), fs.class_names.index("horse"), 0]
    scores = zero_shot_scores(fs, class_vectors(fs.class_names, kv), held)
    assert list(scores) == ["a", "b", "mean"] and scores["mean"].shape == (300, len(WORDS))
    y = fs.labels["test"]
    unseen = np.isin(y, held)
    pred_unseen = np.asarray(held)[scores["mean"][unseen][:, held].argmax(1)]
    # the 5 seen classes' vectors span the 4-d word subspace, so the map transfers to the held-out ones
    assert np.mean(pred_unseen == y[unseen]) > 0.8  # chance among the 3 held-out classes is 1/3
    assert np.mean(scores["mean"][~unseen].argmax(1) == y[~unseen]) > 0.8
    np.testing.assert_allclose(scores["mean"], (scores["a"] + scores["b"]) / 2, rtol=1e-6)
    assert np.abs(scores["a"]).max() <= 1 + 1e-5  # cosine similarities
    with pytest.raises(ValueError, match="leaving at least 2 seen"):
        zero_shot_scores(fs, class_vectors(fs.class_names, kv), held_out=list(range(len(WORDS) - 1)))


@pytest.fixture(params=["class grams", "rows"])
def gram_route(request, monkeypatch):
    """Both ways ClassMoments makes a split's Gram matrix: summed per-class grams, or (where those
    would not fit in memory) straight from the seen classes' rows."""
    if request.param == "rows":
        monkeypatch.setattr(label_space, "CLASS_GRAMS_MAX_BYTES", 0)
    return request.param


def test_zero_shot_output_ignores_the_held_out_classes_train_and_val_images(kv, fs, gram_route):
    """Overwriting every train and validation image of the held-out classes with noise leaves the
    zero-shot scores unchanged; noise on a seen class does change them (so the check can fail)."""
    vecs, held = class_vectors(fs.class_names, kv), [2, 5, 7]
    before = zero_shot_scores(fs, vecs, held)
    rng = np.random.default_rng(7)

    def noisy(classes):
        feats = {s: dict(f) for s, f in fs.features.items()}
        for s in ("train", "val"):
            rows = np.isin(fs.labels[s], classes)
            for b in fs.backbones:
                feats[s][b] = feats[s][b].copy()
                feats[s][b][rows] = 100 * rng.normal(size=(rows.sum(), D)).astype(np.float32)
        return FeatureSet(fs.dataset, fs.backbones, fs.class_names, feats, fs.labels, fs.thumbnails)

    after = zero_shot_scores(noisy(held), vecs, held)
    for model in before:
        np.testing.assert_array_equal(after[model], before[model])
    leaked = zero_shot_scores(noisy([0]), vecs, held)
    assert not np.allclose(leaked["mean"], before["mean"])


def test_zero_shot_map_is_ridge_regression_on_the_seen_classes(kv, fs, gram_route):
    """The moment-based closed form equals ridge regression fitted directly on the seen images."""
    x, y = fs.features["train"]["a"].astype(np.float64), fs.labels["train"]
    seen = [0, 1, 3, 4, 6]
    moments = ClassMoments.of(x, y, len(WORDS))
    assert (moments.grams is None) == (gram_route == "rows")
    zmap = fit_zero_shot_map(moments, seen, ridge=0.5)
    rows = np.isin(y, seen)
    xs = x[rows]
    std = xs.std(0).clip(min=0.05 * xs.std(0).mean())
    z = (xs - xs.mean(0)) / std
    onehot = (y[rows, None] == np.asarray(seen)).astype(np.float64)
    coef = np.linalg.solve(z.T @ z + 0.5 * len(z) * np.eye(D), z.T @ (onehot - onehot.mean(0)))
    np.testing.assert_allclose(zmap.coef, coef, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(
        zmap.seen_weights(x[:5]), ((x[:5] - xs.mean(0)) / std) @ coef + onehot.mean(0), rtol=1e-3, atol=1e-5
    )
    with pytest.raises(ValueError, match="at least 2"):
        fit_zero_shot_map(ClassMoments.of(x, y, len(WORDS)), [1])


def test_cosine_scores_of_a_stack_of_assignments_match_one_at_a_time():
    rng = np.random.default_rng(0)
    w, vecs, seen = rng.normal(size=(9, 3)), rng.normal(size=(5, 4)), [0, 2, 4]
    one = cosine_scores(w, vecs, seen)
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)  # the scores use unit class vectors
    emb = w @ unit[seen]
    expected = (emb / np.linalg.norm(emb, axis=1, keepdims=True)) @ unit.T
    np.testing.assert_allclose(one, expected, rtol=1e-4, atol=1e-5)
    perms = [rng.permutation(5) for _ in range(3)]
    stack = cosine_scores(w, np.stack([vecs[p] for p in perms]), seen)
    assert stack.shape == (9, 3, 5)
    for i, p in enumerate(perms):
        np.testing.assert_allclose(stack[:, i], cosine_scores(w, vecs[p], seen), rtol=1e-5, atol=1e-6)


def test_label_head_needs_one_vector_per_class(kv, fs):
    with pytest.raises(ValueError, match="class vectors"):
        fit_label_head(fs, "a", class_vectors(fs.class_names, kv)[:3])


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
    from fusion_lib.data.datasets import DIGIT_CLASSES, FASHION_CLASSES
    from fusion_lib.fusion.label_space import load_vectors

    glove = load_vectors()
    assert class_vectors(FASHION_CLASSES, glove).shape == (10, 50)
    assert class_vectors(DIGIT_CLASSES, glove).shape == (10, 50)
