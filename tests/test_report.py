from __future__ import annotations

import pandas as pd
import pytest

from fusion_lib.book.pages import interval, markdown, percent, points, table
from fusion_lib.data.backbones import short_name


def test_short_name_shortens_backbones_inside_labels():
    assert short_name("tf_efficientnet_lite0") == "lite0"
    assert short_name("single:squeezenet1_1") == "single:squeezenet"
    assert short_name("label:tf_efficientnet_lite2") == "label:lite2"
    assert short_name("resnet50") == "resnet50" and short_name("moe_thumbnail") == "moe_thumbnail"


def test_markdown_is_the_text_even_when_it_names_a_folder_or_url(tmp_path):
    from IPython.display import Markdown

    with pytest.raises(IsADirectoryError):  # IPython's own reads the folder, keyword or not
        Markdown(data=str(tmp_path))
    for text in (str(tmp_path), "http://example.org/x", "**cifar10**"):
        assert markdown(text)._repr_markdown_() == text


def test_number_formats():
    assert percent(0.91234) == "91.2%" and percent(1.0, digits=0) == "100%"
    assert (
        points(0.0123) == "+1.2"
        and points(-0.0123, digits=2) == "-1.23"
        and points(0.02, sign=False) == "2.0"
    )
    assert interval(91.234, 90.1, 92.35) == "91.2 [90.1, 92.3]"
    assert interval(1.5, -0.25, 3.0, sign=True) == "+1.5 [-0.2, +3.0]"


def test_table_rounds_labels_and_shortens():
    tidy = pd.DataFrame(
        {
            "backbone": ["tf_efficientnet_lite0", "squeezenet1_1"],
            "accuracy": [0.91234, 0.8],
            "gflops": [0.123456, 0.2],
            "n": [3, 3],
        }
    )
    out = table(
        tidy,
        {"backbone": "backbone (short)", "accuracy": "test accuracy"},
        index="backbone",
        percent_columns=["accuracy"],
        shorten=["backbone"],
    )
    assert out.index.name == "backbone (short)" and list(out.index) == ["lite0", "squeezenet"]
    assert list(out.columns) == ["test accuracy", "gflops", "n"]
    assert out["test accuracy"].tolist() == ["91.2%", "80.0%"]
    assert out["gflops"].tolist() == [0.123, 0.2] and out["n"].tolist() == [3, 3]
    with pytest.raises(KeyError, match="acc"):
        table(tidy, percent_columns=["acc"])
