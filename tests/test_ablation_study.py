"""The ablation study (``Profile.ablation_study``, ``Profile.accuracy_push``) on the ci profile's cached
digits features: variants, runs, sentences, and notebook 04's figures of them."""

import matplotlib
import pytest

matplotlib.use("Agg")

from fusion_lib.book.chapters.study_figures import FIGURES, ablation_figure, ablation_summary_figure  # noqa: E402
from fusion_lib.book.profiles import get_profile  # noqa: E402
from fusion_lib.studies.ablation_study import WIDTHS  # noqa: E402
from fusion_lib.studies.seed_run import ANCHORS  # noqa: E402


@pytest.fixture(scope="module")
def book():
    P = get_profile("ci", epochs=2, seeds=1)
    return P, P.ablation_study(P.datasets[0], max_train=120)


def test_the_pool_is_the_documented_subset(book):
    P, b = book
    assert (
        len(b.pool.labels["train"]) == 120 and len(b.pool.labels["val"]) == P.split_sizes(P.datasets[0]).val
    )
    assert b.describe().startswith("Per seed: 120 train") and list(b.backbone_table().columns) == [
        "feature dimension",
        "GFLOPs per image",
    ]
    assert b.two_stage_config().gate == "thumbnail"


def test_variants_name_each_setting_once(book):
    _, b = book
    assert list(b.thumbnail_variants())[0] == "chosen on validation"
    assert list(b.width_variants()) == list(WIDTHS)
    assert list(b.leave_one_out_variants()) == ["all experts", "without lite0", "without squeezenet"]
    assert list(b.gating_variants()) == ["soft", "top-1"]  # top-2 needs three experts
    assert b.leave_one_out_variants()["all experts"] is b.reference


def test_runs_sentences_and_figures(book):
    _, b = book
    shrink = b.run("shrinkage", b.shrinkage_variants(), reference="alpha on validation")
    assert list(shrink["setting"]) == list(b.shrinkage_variants())
    assert b.chosen_anchors().startswith(f"The anchor, chosen per seed among {', '.join(ANCHORS)}: ")
    assert b.verdict("shrinkage").count("points") == 2  # a sentence per compared setting, one line
    gating = b.run("soft vs top-k gating", b.gating_variants(), reference="soft")
    assert set(gating["setting"]) == {"soft", "top-1"}
    for ablation in ("shrinkage", "soft vs top-k gating"):
        fig = ablation_figure(b, ablation, "detail")
        assert fig.axes[0].get_title() == f"{b.dataset}: {FIGURES[ablation][0]} (detail)"
    assert len(b.summary()) == 5 and ablation_summary_figure(b).axes
    assert b.fits_note().startswith("5 (setting, seed) results from")


def test_accuracy_push_compares_input_sizes_and_heads(book):
    P, _ = book
    push = P.accuracy_push(P.datasets[0])
    assert list(push.pools) == list(P.push_inputs())
    assert push.reference == f"{P.input_size} px, linear experts" and push.reference in push.variants()
    assert len(push.variants()) == 2 * len(push.pools) and push.detail.endswith("training images")
