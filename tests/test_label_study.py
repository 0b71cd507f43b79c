"""The label-space study on planted word vectors and features: tables, C3 comparisons, held-out splits,
zero-shot with its permutation null, blend curve, projection."""

import numpy as np
import pytest
from configs import experiment
from gensim.models import KeyedVectors
from sklearn.decomposition import PCA

from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.fusion.label_space import (
    LabelSpaceModel,
    choose_blend_weight,
    class_vectors,
    random_class_vectors,
)
from fusion_lib.fusion.training import BLEND_GRID, TrainConfig
from fusion_lib.studies.label_study import (
    C3_COMPARISONS,
    ZERO_SHOT_MEASURES,
    aliases_for,
    best_head,
    blend_curve,
    class_name_table,
    compare,
    cosine_matrix,
    held_out_splits,
    label_embeddings,
    project_label_space,
    run_label_study,
    run_zero_shot,
    spread_labels,
)

WORDS = ["apple", "boat", "cloud", "drum", "eagle", "flute"]
DIM, D = 12, 10


@pytest.fixture(scope="module")
def kv():
    rng = np.random.default_rng(0)
    kv = KeyedVectors(vector_size=DIM)
    words = WORDS + ["tee", "shirt", "top", "t", "other", "words"]
    kv.add_vectors(words, rng.normal(size=(len(words), DIM)).astype(np.float32))
    return kv


@pytest.fixture(scope="module")
def vecs(kv):
    return class_vectors(WORDS, kv)


@pytest.fixture(scope="module")
def fs(vecs):
    """Features are a random linear image of the class vector plus noise; thumbnails are noise."""
    rng = np.random.default_rng(1)
    maps = {b: rng.normal(size=(DIM, D)) for b in ("a", "b")}
    feats, labels, thumbs = {}, {}, {}
    for split, n in zip(("train", "val", "test"), (240, 120, 120)):
        y = rng.integers(0, len(WORDS), n)
        feats[split] = {
            b: (vecs[y] @ m + 0.5 * rng.normal(size=(n, D))).astype(np.float32) for b, m in maps.items()
        }
        labels[split] = y.astype(np.int64)
        thumbs[split] = rng.random((n, 3, 16, 16)).astype(np.float32)
    return FeatureSet("planted", ["a", "b"], list(WORDS), feats, labels, thumbs, {"a": 1.0, "b": 2.0})


@pytest.fixture(scope="module")
def config():
    return experiment(seeds=[0, 1], epochs=30)


def test_aliases_for_keeps_only_the_entries_that_apply():
    table = {"t": "tee", "keeshond": "spitz dog", "Whole Name": "words"}
    assert aliases_for(["T-shirt/top", "boat"], table) == {"t": "tee"}
    assert aliases_for(["Whole Name", "Keeshond"], table) == {"keeshond": "spitz dog", "Whole Name": "words"}


def test_class_name_table_shows_tokens_words_and_neighbours(kv):
    names = ["T-shirt/top", "apple"]
    aliases = {"t": "tee"}
    vecs = class_vectors(names, kv, aliases)
    table = class_name_table(names, vecs, kv, aliases, n_neighbours=2)
    assert table["tokens"].tolist() == ["t shirt top", "apple"]
    assert table["words used"].tolist() == ["tee shirt top", "apple"]
    assert table["nearest words"][1].split(", ")[0] == "apple"  # a one-word class is nearest to its own word
    with pytest.raises(ValueError, match="class vectors"):
        class_name_table(names, vecs[:1], kv)


def test_cosine_matrix_is_symmetric_with_unit_diagonal(vecs):
    m = cosine_matrix(3 * vecs, WORDS)
    np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-6)
    np.testing.assert_allclose(m.to_numpy(), m.to_numpy().T)
    assert list(m.index) == WORDS and m.loc["apple", "boat"] == pytest.approx(
        float(vecs[0] @ vecs[1]), abs=1e-6
    )


def test_random_class_vectors_are_seeded_unit_vectors():
    v = random_class_vectors(5, 8, seed=3)
    assert v.shape == (5, 8) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(v, random_class_vectors(5, 8, seed=3))
    assert not np.allclose(v, random_class_vectors(5, 8, seed=4))


def test_spread_labels_separates_overlapping_labels_around_their_mean():
    y = np.array([0.0, 0.01, 0.02, 1.0, 0.5])
    out = spread_labels(y, 0.1)
    gaps = np.diff(np.sort(out))
    assert (gaps >= 0.1 - 1e-12).all()
    assert out[[0, 1, 2]].mean() == pytest.approx(0.01) and list(np.argsort(out[:3])) == [0, 1, 2]
    assert out[3] == 1.0 and out[4] == 0.5  # far from the others: left where they are
    # a group that grows into its neighbour merges with it
    out = spread_labels(np.array([0.0, 0.0, 0.0, 0.25]), 0.1)
    assert (np.diff(np.sort(out)) >= 0.1 - 1e-12).all() and out.mean() == pytest.approx(0.0625)


def test_held_out_splits_are_every_triple_or_distinct_random_draws():
    splits = held_out_splits(10)
    assert len(splits) == 120 and len(set(splits)) == 120
    assert all(len(t) == 3 and list(t) == sorted(t) for t in splits)
    drawn = held_out_splits(100, max_splits=60, seed=1)
    assert len(drawn) == 60 and len(set(drawn)) == 60 and drawn == held_out_splits(100, max_splits=60, seed=1)
    assert all(len(set(t)) == 3 and max(t) < 100 for t in drawn)
    with pytest.raises(ValueError, match="at least 2 to train on"):
        held_out_splits(4)


def test_blend_curve_ends_are_the_two_models_and_its_best_is_the_chosen_weight():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    p_vis, p_lab = rng.dirichlet(np.ones(4), 200), rng.dirichlet(np.ones(4), 200)
    p_vis[np.arange(100), y[:100]] += 1.0  # each model is right on a different half
    p_lab[np.arange(100, 200), y[100:]] += 0.8
    p_vis, p_lab = p_vis / p_vis.sum(1, keepdims=True), p_lab / p_lab.sum(1, keepdims=True)
    curve = blend_curve(p_vis, p_lab, y)
    assert curve["weight"].tolist() == list(BLEND_GRID)
    assert curve["accuracy"].iloc[0] == pytest.approx(np.mean(p_vis.argmax(1) == y))
    assert curve["accuracy"].iloc[-1] == pytest.approx(np.mean(p_lab.argmax(1) == y))
    chosen = choose_blend_weight(p_vis, p_lab, y, BLEND_GRID)
    assert curve.loc[np.isclose(curve["weight"], chosen), "accuracy"].item() == curve["accuracy"].max()
    assert curve["accuracy"].max() > max(curve["accuracy"].iloc[0], curve["accuracy"].iloc[-1])
    with pytest.raises(ValueError, match="align"):
        blend_curve(p_vis, p_lab[:10], y)


def test_embeddings_are_unit_norm_and_their_nearest_class_is_the_prediction(fs, vecs):
    model = LabelSpaceModel(vecs, TrainConfig(epochs=5)).fit(fs, seed=0)
    emb = label_embeddings(model, fs, "test", "a")
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal((emb @ vecs.T).argmax(1), model.backbone_proba(fs, "test")["a"].argmax(1))
    assert best_head(model, fs) in ("a", "b")
    with pytest.raises(ValueError, match="heads"):
        label_embeddings(model, fs, "test", "zzz")


def test_projection_is_pca_of_the_class_vectors(vecs):
    emb = np.random.default_rng(0).normal(size=(7, DIM))
    cls_xy, img_xy, ratio = project_label_space(vecs, emb)
    pca = PCA(2).fit(vecs)
    np.testing.assert_allclose(cls_xy, pca.transform(vecs), atol=1e-6)
    np.testing.assert_allclose(img_xy, pca.transform(emb), atol=1e-6)
    assert ratio.shape == (2,) and 0 < ratio.sum() <= 1 + 1e-9
    with pytest.raises(ValueError, match="embeddings"):
        project_label_space(vecs, emb[:, :3])
    with pytest.raises(ValueError, match="span at most"):
        project_label_space(vecs[:2], emb)


def test_run_label_study_tables(fs, vecs, config):
    study = run_label_study(fs, vecs, config, progress=False)
    acc = study.accuracy
    expected = {
        "probe:a",
        "probe:b",
        "label:a",
        "label:b",
        "random:a",
        "random:b",
        "prob_avg",
        "random_space",
        "label_space",
        "moe_thumbnail",
        "moe_thumbnail_joint",
        "moe_thumbnail_label",
        "blend_label",
        "blend_random",
    }
    assert set(acc["model"]) == expected and len(acc) == 2 * len(expected)
    assert acc["accuracy"].between(0, 1).all()
    # the planted features are linearly separable in word space, so the label heads learn them
    assert acc.loc[acc["model"] == "label_space", "accuracy"].min() > 1.5 / len(WORDS)
    assert set(study.blend["weight"]) | set(study.blend["weight_random"]) <= set(BLEND_GRID)
    combined = acc[~acc["model"].str.contains(":")]
    assert set(combined["backbone"]) == {"average", "thumbnail MoE", "joint thumbnail MoE", "blend"}
    per_model = study.gates.groupby(["seed", "model"])
    assert set(per_model.groups) == {
        (s, m) for s in (0, 1) for m in ("moe_thumbnail_joint", "moe_thumbnail_label")
    }
    np.testing.assert_allclose(per_model["weight"].sum(), 1.0, atol=1e-5)  # gate weights sum to one per image
    assert set(study.gates.loc[study.gates["model"] == "moe_thumbnail_label", "expert"]) == {
        "a",
        "b",
        "label:a",
        "label:b",
    }
    assert set(study.label_models) == {0, 1}
    for seed, w in zip(study.blend["seed"], study.blend["weight"]):
        c = study.curves[(study.curves["seed"] == seed) & (study.curves["split"] == "val")]
        assert c.loc[np.isclose(c["weight"], w), "accuracy"].item() == c["accuracy"].max()
        # the test curve's ends are the two combined models it blends
        t = study.curves[(study.curves["seed"] == seed) & (study.curves["split"] == "test")]
        s = acc[acc["seed"] == seed].set_index("model")["accuracy"]
        assert t["accuracy"].iloc[0] == pytest.approx(s["moe_thumbnail"])
        assert t["accuracy"].iloc[-1] == pytest.approx(s["label_space"])
        assert t.loc[np.isclose(t["weight"], w), "accuracy"].item() == pytest.approx(s["blend_label"])
    # the control is the documented one: label-space heads on random_class_vectors(C, dim, seed), trained
    # on the seed's split of the pool
    drawn = fs.draw(1)
    control = LabelSpaceModel(random_class_vectors(*vecs.shape, seed=1), config.train).fit(drawn, seed=1)
    got = acc[(acc["seed"] == 1) & (acc["model"] == "random_space")]["accuracy"].item()
    assert got == pytest.approx(
        np.mean(control.predict_proba(drawn, "test").argmax(1) == drawn.labels["test"])
    )
    # per-image correctness behind every combined model's accuracy, and the paired C3 comparisons
    for (model, seed), hits in study.correct.items():
        assert hits.dtype == bool and hits.mean() == pytest.approx(s_acc(acc, seed, model))
    table = compare(study)
    assert [tuple(r) for r in table[["a", "b"]].to_numpy()] == list(C3_COMPARISONS)
    assert ((table["low"] <= table["diff"]) & (table["diff"] <= table["high"])).all()
    a, b = C3_COMPARISONS[0]
    diff = 100 * np.mean([s_acc(acc, s, a) - s_acc(acc, s, b) for s in (0, 1)])
    assert table["diff"].iloc[0] == pytest.approx(diff)
    assert table["text"].str.fullmatch(r"[+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\]").all()
    with pytest.raises(ValueError, match="no per-image results"):
        compare(study, [("blend_label", "nope")])


def s_acc(acc, seed, model):
    return acc[(acc["seed"] == seed) & (acc["model"] == model)]["accuracy"].item()


def test_run_zero_shot_beats_its_permutation_null():
    """Class vectors evenly spread on a circle in a 2-d subspace, features a linear image of them: any
    3 seen classes pin down the affine map, so the held-out classes are recognised, and shuffling the
    vectors among the classes destroys that."""
    rng = np.random.default_rng(3)
    angles = 2 * np.pi * np.arange(6) / 6
    circle = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    vecs = (circle @ np.linalg.qr(rng.normal(size=(DIM, 2)))[0].T).astype(np.float32)
    maps = {b: rng.normal(size=(DIM, D)) for b in ("a", "b")}
    feats, labels = {}, {}
    for split, n in zip(("train", "val", "test"), (300, 60, 240)):
        y = np.repeat(np.arange(6), n // 6)
        feats[split] = {
            b: (vecs[y] @ m + 0.1 * rng.normal(size=(n, D))).astype(np.float32) for b, m in maps.items()
        }
        labels[split] = y
    thumbs = {s: np.zeros((len(labels[s]), 3, 4, 4), np.float32) for s in labels}
    planted = FeatureSet("planted", ["a", "b"], list(WORDS), feats, labels, thumbs, fixed_test=False)
    study = run_zero_shot(planted, vecs, seeds=[0, 1], n_permutations=39, ridge=1e-3, progress=False)
    assert study.splits == held_out_splits(6) and len(study.splits) == 20
    assert set(study.values) == {"a", "b", "mean"}
    assert all(len(v) == 2 and len(v[0]) == 240 for v in study.values["mean"].values())
    summary = study.summary(n_boot=200).set_index("measure")
    assert list(summary.index) == list(ZERO_SHOT_MEASURES)
    assert ((summary["low"] <= summary["estimate"]) & (summary["estimate"] <= summary["high"])).all()
    zsl = summary.loc["zsl_top1"]
    assert zsl["estimate"] > 0.9 and zsl["chance"] == pytest.approx(1 / 3)
    assert zsl["null_high"] < 0.8 and zsl["p_value"] == pytest.approx(1 / 40)
    assert summary.loc["top5", "chance"] == pytest.approx(5 / 6)
    s, u = study.estimate("mean", "gzsl_seen"), study.estimate("mean", "gzsl_unseen")
    assert summary.loc["harmonic", "estimate"] == pytest.approx(2 * s * u / (s + u) if s + u else 0.0)
    assert study.per_model().shape == (3, len(ZERO_SHOT_MEASURES))
    with pytest.raises(ValueError, match="seeds"):
        run_zero_shot(planted, vecs, seeds=[], progress=False)
