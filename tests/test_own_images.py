"""The own-images report: ``python -m fusion_lib.book report PATH --out DIR`` on a tiny ImageFolder
(made here, at the CI profile): it writes one page with every section, says which class name has no
word vector and how to alias it instead of failing, and bad folders get the project's message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fusion_lib.book.own_images import report as own_images
from fusion_lib.book.tooling import build
from fusion_lib.data.datasets import DatasetError, SplitSizes

CLASSES = {"circle": 0, "stick": 1, "qzxvy": 7}  # "qzxvy" has no GloVe vector


def _folder(root: Path, per_class: int = 10, classes: dict[str, int] = CLASSES) -> Path:
    from sklearn.datasets import load_digits

    digits = load_digits()
    for name, digit in classes.items():
        (root / name).mkdir(parents=True)
        for i, image in enumerate(digits.images[digits.target == digit][:per_class]):
            grey = Image.fromarray((image / 16 * 255).astype(np.uint8)).resize((32, 32))
            grey.convert("RGB").save(root / name / f"{i}.png")
    return root


def test_folder_sizes_use_every_image_stratified(tmp_path):
    folder = _folder(tmp_path / "f", per_class=10)
    assert own_images.folder_sizes(folder) == SplitSizes(18, 6, 6)
    small = _folder(tmp_path / "g", per_class=3, classes={"a": 1, "b": 2})
    sizes = own_images.folder_sizes(small)
    assert sizes.val >= 2 and sizes.test >= 2 and sizes.train + sizes.val + sizes.test == 6
    with pytest.raises(DatasetError, match="3 images of each .* fewer: b"):
        own_images.folder_sizes(_folder(tmp_path / "h", per_class=2, classes={"b": 2, "c": 3}))
    with pytest.raises(DatasetError, match="not a usable ImageFolder"):
        own_images.folder_sizes(tmp_path / "missing")


def test_report_on_a_tiny_image_folder(tmp_path):
    folder = _folder(tmp_path / "shapes")
    out = tmp_path / "report"
    args = ["report", str(folder), "--out", str(out), "--profile", "ci", "-p", "seeds", "1"]
    assert build.main([*args, "-p", "epochs", "3"]) == 0
    page = (out / own_images.REPORT_NAME).read_text()
    # the page opens with the recommendation, then says how the folder was tested and why
    first = page.split("</h1><p>", 1)[1]
    assert first.startswith(("Use ", "Nothing is distinguishable"))
    assert "Repeated stratified 5-fold cross-validation, 1 repeat(s)" in page
    assert "every image is tested once per repeat" in page
    for title in (
        "What to use",
        "Where the gain comes from",
        "At a glance",
        "Do the backbones agree?",
        "Does fusion help, and does routing? (C2)",
        "Every method",
    ):
        assert f"<h2>{title}</h2>" in page
    # a class name without a word vector skips the label-space part with a note naming it
    assert "Skipped" in page and "qzxvy" in page and "--alias NAME" in page
    assert page.count('<img src="data:image/png;base64,') >= 4
    metrics = pd.read_csv(out / own_images.METRICS_NAME)
    assert {"moe_thumbnail", "best_fixed", "best_single", "oracle"} <= set(metrics["method"])
    accuracy = metrics[(metrics["metric"] == "accuracy") & (metrics["method"] == "oracle")]["value"]
    assert len(accuracy) == 1 and 0 <= accuracy.item() <= 1
    # the bad-input path: the project's message, exit code 2, nothing written
    bad = _folder(tmp_path / "thin", per_class=2, classes={"a": 1, "b": 2})
    assert build.main(["report", str(bad), "--out", str(tmp_path / "none"), "--profile", "ci"]) == 2
    assert not (tmp_path / "none").exists()


def test_report_with_aliases_runs_the_label_space_part(tmp_path):
    folder = _folder(tmp_path / "shapes")
    intro, sections, _ = own_images.study_folder(folder, "ci", aliases={"qzxvy": "seven"}, seeds=1, epochs=3)
    words = next(s for s in sections if s.title.startswith("Do word vectors"))
    assert not words.text.startswith("Skipped")
    table = words.parts[0]
    assert list(table.columns) == ["difference (points, 95% CI)", "verdict"] and len(table) >= 2
    assert "3 classes (circle, qzxvy, stick), 30 images" in intro
    # the summary's C2 words are the C2 section's (one Holm family), which has no pooled row for one folder
    glance = next(s for s in sections if s.title == "At a glance").parts[0]
    c2 = next(s for s in sections if s.title.endswith("(C2)")).parts[0]
    assert list(c2.index) == ["shapes"]
    for question, cell in c2.iloc[0].items():
        row = glance.loc[question.split(" moe_thumbnail")[0]]
        assert cell == f"{row['difference (points, 95% CI)']} {row['verdict']}"
    # every image tested once per repeat: the per-class counts cover the folder
    per_class = next(s for s in sections if s.title == "Where the gain comes from").parts[0]
    assert per_class["tests"].sum() == 30 and set(per_class.index) == {"circle", "qzxvy", "stick"}
    assert "Images read upright (EXIF orientation), first frame only, transparent pixels on white." in intro
