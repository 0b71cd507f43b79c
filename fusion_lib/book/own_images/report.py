"""The book's study on a reader's own images: ``python -m fusion_lib.book report PATH --out DIR``.

``PATH`` is an ImageFolder (one sub-folder of images per class; the folder names are the class names).
The report answers a practitioner's first question, "would fusing backbones help on my images, and
which ones?", with the book's own code and settings (a profile, ``book`` by default):

1. every backbone of the profile extracts the features of every image of the folder (cached, with
   progress bars; ``folder_sizes``); a folder under ``CrossValidation.max_images`` is then tested by
   repeated stratified k-fold cross-validation (``studies.cross_validation``: every image tested once
   per repeat), a larger one by one stratified 60/20/20 split per seed; each file is read as a person sees
   it (``datasets.read_image``: upright by its EXIF orientation, the first frame of an animated GIF or
   multi-page TIFF, transparent pixels on white or on ``--background``);
2. **what to use** (``studies.recommend``): the cheapest method within the margin of the best on
   validation, its test gain over the best single backbone, its compute and the backbones it could drop,
   and per class the test images it gains and loses;
3. **agreement**: each backbone's linear probe, how often pairs agree, Cohen's kappa on labels and on
   correctness, and the oracle bound (notebook 02's study);
4. **fusion**: every method of notebook 03 that needs no second gate family, with test accuracy, its
   95% interval over seeds (or repeats) and test images, and the paired difference to ``best_fixed``
   with its word;
5. **verdicts**: the two C2 questions on this folder (does fusion help, does per-image adaptivity help);
6. **word vectors** (C3): where every class name has a GloVe vector (``--alias NAME WORDS`` maps one
   that has not), the label-space blend against the visual fusion; otherwise the section says which
   names lack a vector and how to alias them, and the rest of the report stands;
7. **the gallery** of test images where the experts disagree (notebook 03's figure).

It writes ``DIR/report.html`` (one self-contained page: figures inline) and ``DIR/metrics.csv``.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import logging
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from fusion_lib.book.chapters.moe_figures import disagreement_gallery, forest_figure
from fusion_lib.book.chapters.study_figures import agreement_matrices_figure
from fusion_lib.book.figures import lay_out
from fusion_lib.book.profiles import Profile, get_profile
from fusion_lib.data.atomic import write_text_atomic
from fusion_lib.data.backbones import short_name
from fusion_lib.data.datasets import BACKGROUNDS, DatasetError, SplitSizes, image_folder
from fusion_lib.fusion.label_space import class_vectors, load_vectors
from fusion_lib.studies.agreement import AgreementStudies, run_agreement_study
from fusion_lib.studies.claims import C2_QUESTIONS

# imported here, not for type checking only: sphinx resolves study_folder's annotations through them
from fusion_lib.studies.cross_validation import CrossValidation, FoldedPool, folded, merge_folds, merge_runs
from fusion_lib.studies.label_studies import LabelRun, LabelStudies
from fusion_lib.studies.label_study import aliases_for, run_label_study
from fusion_lib.studies.recommend import (
    BASELINE,
    Recommendation,
    is_single,
    leave_one_out,
    per_class_changes,
    recommend,
)
from fusion_lib.studies.registry import SINGLE_PREFIX
from fusion_lib.studies.runner import run_experiment
from fusion_lib.studies.runs import EXPERTS, StudyRun
from fusion_lib.studies.stats import MARGIN
from fusion_lib.studies.study import Study

log = logging.getLogger("fusion_lib.book.own_images.report")

FRACTIONS = (0.6, 0.2, 0.2)  # train, validation, test shares of the folder's images
# notebook 03's methods, less the jointly trained and second-family gates (which add time, not answers)
REPORT_METHODS: tuple[str, ...] = (
    "best_single",
    "concat",
    "prob_avg",
    "prob_avg_cal",
    "stacking",
    "moe_uniform",
    "moe_static",
    "best_fixed",
    "moe_thumbnail",
    "moe_cheap_feature",
    "moe_confidence",
    "oracle",
)
REPORT_NAME, METRICS_NAME = "report.html", "metrics.csv"


def folder_sizes(path: str | Path, fractions: Sequence[float] = FRACTIONS) -> SplitSizes:
    """Train/val/test sizes that use every image of an ImageFolder, ``fractions`` of it each (each
    split stratified by class, so each needs at least one image of every class)."""
    folder = image_folder(path)
    counts = Counter(folder.targets)
    n, classes = len(folder.targets), len(folder.classes)
    thin = sorted(folder.classes[c] for c in range(classes) if counts[c] < 3)
    if thin or classes < 2:
        raise DatasetError(
            f"{path}: a fusion study needs at least 2 classes and 3 images of each (one per split); "
            + (f"these classes have fewer: {', '.join(thin)}" if thin else f"it has {classes} class")
        )
    val = max(classes, round(fractions[1] * n))
    test = max(classes, round(fractions[2] * n))
    return SplitSizes(n - val - test, val, test)


@dataclass
class Section:
    """One section of the report: a title, a paragraph, and tables and figures in order."""

    title: str
    text: str
    parts: list[Any] = field(default_factory=list)  # DataFrames and matplotlib Figures


def _figure_html(fig: Figure) -> str:
    buffer = io.BytesIO()
    lay_out(fig).savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="figure">'


def _part_html(part: Any) -> str:
    if isinstance(part, pd.DataFrame):
        return f'<div class="scroll">{part.to_html(escape=True, na_rep="")}</div>'
    if isinstance(part, str):
        return f'<p class="note">{html.escape(part)}</p>'
    return _figure_html(part)


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
line-height:1.45;color:#222}h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}
.scroll{overflow-x:auto;margin:1em 0}table{border-collapse:collapse;font-size:.9em}
th,td{border-bottom:1px solid #e5e5e5;padding:.25em .6em;text-align:right;white-space:nowrap}
th{background:#f6f6f6}img{max-width:100%;height:auto}.note{background:#fff8e1;padding:.6em;
border-left:3px solid #f0b400}"""


def render(title: str, intro: str, sections: Sequence[Section]) -> str:
    """The report as one HTML page (figures inline as PNG, tables scroll sideways where wide); a blank
    line in ``intro`` starts a new paragraph."""
    body = [f"<h1>{html.escape(title)}</h1>"] + [f"<p>{html.escape(p)}</p>" for p in intro.split("\n\n")]
    for s in sections:
        body += [f"<h2>{html.escape(s.title)}</h2>", f"<p>{html.escape(s.text)}</p>"]
        body += [_part_html(p) for p in s.parts]
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )


def _agreement(profile: Profile, name: str, fs: Any, seeds: Sequence[int]) -> Section:
    # its probes serve every section (the fit cache): the same fits, one per seed or fold
    study = run_agreement_study(fs, profile.experiment_config(name, seeds=tuple(seeds)))
    pairs = study.pair_means().round(3).rename(index=short_name)
    pairs.index.names = ["backbone", "with"]
    bounds = study.bounds[["best_single", "mean_single", "oracle"]].mean().mul(100).round(2)
    return Section(
        "Do the backbones agree?",
        "Each backbone's linear probe on the test images (mean over fits): how often each pair gives the "
        "same answer, Cohen's kappa on the answers and on being right (agreement beyond what the two "
        "accuracies imply), and the share both get wrong (double fault). Fusion has room only where they "
        "differ; the oracle, right whenever some backbone is, bounds what any per-image choice can reach.",
        [
            pairs.rename(columns={"kappa_correct": "kappa on correctness", "double_fault": "double fault"}),
            bounds.rename({"best_single": "best single (chosen on validation)", "mean_single": "mean single"})
            .rename("test accuracy %")
            .to_frame(),
            agreement_matrices_figure(AgreementStudies([StudyRun(Path(name).name, EXPERTS, study, fs)])),
        ],
    )


def _word_vectors(
    profile: Profile, name: str, fs: Any, seeds: Sequence[int], aliases: Mapping[str, str]
) -> Section:

    title = "Do word vectors of the class names help? (C3)"
    used = {**aliases_for(fs.class_names), **aliases}
    try:
        vectors = class_vectors(fs.class_names, load_vectors(), used)
    except (KeyError, ValueError) as exc:
        message = str(exc.args[0] if exc.args else exc).rstrip(".")
        return Section(
            title,
            "Skipped: the label-space models need a word vector for every class name.",
            [
                f"{message}. On the command line, alias a name with --alias NAME 'some words' "
                "(repeatable), e.g. --alias my_cat_breed 'cat'."
            ],
        )
    config = profile.experiment_config(name, aliases=used, seeds=tuple(seeds))
    study = run_label_study(fs, vectors, config, progress=True)
    if isinstance(fs, FoldedPool):  # one row per repeat holding every image, as for the fusion result
        correct, ids = merge_runs(study.correct, study.image_ids, fs)
        study = replace(study, correct=correct, image_ids=ids)
    # the notebook's C3 comparisons, worded as one Holm family
    c3 = LabelStudies([LabelRun(Path(name).name, fs, config, vectors, study)]).c3_comparisons()
    shown = c3.set_index(["a", "b"])[["text", "word"]]
    return Section(
        title,
        "The visual fusion blended with a model that maps features into the GloVe space of the class "
        "names (weight chosen on validation), against the visual fusion alone and against the same "
        "blend with random class vectors; paired differences in accuracy points, 95% intervals over seeds "
        "and test images (repeats and images where the folder is cross-validated), worded together "
        "(Holm-adjusted).",
        [shown.rename(columns={"text": "difference (points, 95% CI)", "word": "verdict"})],
    )


def study_folder(
    path: str | Path,
    profile: str = "book",
    aliases: Mapping[str, str] | None = None,
    cv: CrossValidation | None = None,
    **overrides: Any,
) -> tuple[str, list[Section], pd.DataFrame]:
    """Run the book's study on an ImageFolder: the report's intro (its paragraphs separated by blank
    lines, the recommendation first), its sections and the metrics frame. ``cv`` decides whether the
    folder is cross-validated (``CrossValidation.applies``) or split once per seed."""

    start = time.perf_counter()
    name = str(Path(path).expanduser())
    sizes = overrides.pop("sizes", None) or folder_sizes(name)
    P = get_profile(profile, datasets=[name], sizes=sizes, **overrides)
    n_images = sizes.train + sizes.val + sizes.test
    cv = cv or CrossValidation()
    fs = P.feature_set(name)
    seeds = P.seeds_for(name)
    pool = folded(fs, cv, seeds) if cv.applies(n_images) else fs
    if isinstance(pool, FoldedPool):
        runs, design = pool.run_seeds, cv.describe(n_images, pool.folds, list(pool.repeats))
    else:
        runs, design = seeds, cv.describe(n_images, cv.folds, seeds)
    log.info("%s: %s images, profile %s. %s", name, n_images, P.name, design)
    methods = [f"{SINGLE_PREFIX}{b}" for b in P.backbones] + list(REPORT_METHODS)
    config = P.experiment_config(name, methods=methods, seeds=runs)
    fits = run_experiment(config, feature_set=pool, progress=True)
    result = merge_folds(fits, pool) if isinstance(pool, FoldedPool) else fits
    label = Path(name).name  # what tables and figures call the folder
    study = Study([StudyRun(label, EXPERTS, result, pool)])
    comparisons = study.compare_pairs()
    advice = _advice(result, pool, config)
    # C2's two questions with the words of the C2 section's Holm family, then the oracle's room (a bound)
    worded = comparisons.set_index(["method", "baseline"])
    room = result.compare("oracle", "best_single")
    rows = [
        {
            "question": q,
            "comparison": f"{m} − {b}",
            **worded.loc[(m, b), ["difference (points, 95% CI)", "verdict"]],
        }
        for q, (m, b) in C2_QUESTIONS.items()
    ]
    rows.append(
        {
            "question": "Room left for any per-image choice",
            "comparison": "oracle − best_single",
            "difference (points, 95% CI)": room.text(),
            "verdict": room.word(),
        }
    )
    verdicts = pd.DataFrame(rows).set_index("question")
    over = "repeats and images" if isinstance(pool, FoldedPool) else "seeds and test images"
    sections = [
        _what_to_use(advice),
        _per_class(result, advice, fs.class_names),
        Section(
            "At a glance",
            f"The report's answers on this folder, each a paired difference in test accuracy (points) with "
            f"its 95% interval over {over}: better (or worse) when the interval excludes 0 (the two C2 "
            "questions Holm-adjusted with the other comparisons of the C2 section, as there), "
            f"equivalent when it lies within ±{MARGIN} points, inconclusive when it is too wide to tell (more "
            "test images narrow it). The sections below give the detail.",
            [verdicts],
        ),
        _agreement(P, name, pool, runs),
        Section(
            "Does fusion help, and does routing? (C2)",
            "Does fusion help: the thumbnail-gated mixture (moe_thumbnail) against the single backbone "
            "best on validation. Does per-image adaptivity help: the same mixture against the strongest "
            "fusion that weighs every image alike (best_fixed, chosen on validation). Differences in "
            f"accuracy points with 95% intervals over {over}; better / worse when the "
            f"interval excludes 0 (Holm-adjusted), equivalent when it lies within ±{MARGIN} points.",
            # one folder: a pooled row would repeat it
            [study.question_table(comparisons, pooled=False), forest_figure(comparisons)],
        ),
        Section(
            "Every method",
            "Test accuracy with its 95% interval, test NLL, backbone compute per image and the paired "
            "difference to best_fixed. oracle peeks at the label: a bound, not a method.",
            [result.table("best_fixed").rename(index=short_name)],
        ),
        _word_vectors(P, name, pool, runs, aliases or {}),
    ]
    first = runs[0]
    try:
        gallery = disagreement_gallery(
            Study([StudyRun(label, EXPERTS, fits, pool)]), lambda _: P.dataset_splits(name), first, n=3
        )
        sections.append(
            Section(
                "Where the experts disagree",
                f"Test images of the first fit (seed {first}) where some backbones are right and some wrong, each "
                "beside the thumbnail the gate saw; bars are the gate's weight on each expert (green: that "
                "expert is right), labelled with its answer. The gate is shrunk towards a fixed fusion (by a "
                "weight chosen on validation), so where the bars are about equal that fusion decides.",
                [gallery],
            )
        )
    except ValueError as exc:  # every expert right (or wrong) on every test image: nothing to show
        sections.append(Section("Where the experts disagree", str(exc)))
    minutes = (time.perf_counter() - start) / 60
    intro = (
        f"{advice.sentence()}\n\n"
        f"The book's study (profile {P.name}: backbones {', '.join(P.backbones)}; features at "
        f"{P.input_size or 'native'} px, {P.thumbnail_size} px thumbnails) on {name}: {fs.n_classes} classes "
        f"({', '.join(fs.class_names)}), {n_images} images. {design} "
        f"Images read upright (EXIF orientation), first frame only, transparent pixels on "
        f"{_colour_name(P.background)}. Computed in {minutes:.1f} min."
    )
    return intro, sections, result.metrics


def _advice(result: Any, pool: Any, config: Any) -> Recommendation:
    """``recommend`` on the result, with leave-one-out refits of the recommended method only (each
    refit costs a run of that method per fit; every method's would multiply the report's time)."""

    first = recommend(result)
    if is_single(first.method):
        return first
    table = leave_one_out(result, pool, config, first.method)
    return recommend(result, leave_one_out=table)


def _what_to_use(advice: Recommendation) -> Section:
    parts: list[Any] = [advice.candidates.round(2).rename_axis("method")]
    text = (
        f"The recommendation above, and how it was chosen: each method's validation accuracy (mean over "
        f"fits) and backbone compute; every method within {advice.margin:g} points of the best on "
        "validation qualifies, and the cheapest of them is recommended, without looking at test data. "
        f"The test check compares {advice.compared} with the single backbone best on validation."
    )
    if advice.leave_one_out is not None:
        parts.append(advice.leave_one_out.round(2))
        text += (
            f" The second table refits {advice.method} without each of its backbones in turn (only this "
            "method: refitting every method would multiply the report's time); a backbone whose removal "
            f"costs at most {advice.margin:g} points of validation accuracy could be dropped."
        )
    return Section("What to use", text, parts)


def _per_class(result: Any, advice: Recommendation, class_names: Sequence[str]) -> Section:
    table = per_class_changes(result, advice.compared, class_names)
    return Section(
        "Where the gain comes from",
        f"Per class, the test images {advice.compared} classifies right and the best single backbone "
        f"(chosen on validation) wrong (gained), and the reverse (lost), counted over every repeat's or "
        f"seed's test images ({len(result.seeds)} of them). The accuracies are per class, in percent.",
        [table.round(1), _per_class_figure(table, advice.compared, BASELINE)],
    )


def _per_class_figure(table: pd.DataFrame, method: str, baseline: str) -> Figure:
    """Gained (right of 0) and lost (left of 0) test images per class, one bar each."""

    y = range(len(table))[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.35 * len(table)))
    ax.barh(y, table["gained"], color="#2e7d32", label="gained (right, baseline wrong)")
    ax.barh(y, -table["lost"], color="#c62828", label="lost (wrong, baseline right)")
    ax.axvline(0, color="#444", linewidth=0.8)
    ax.set_yticks(list(y), list(table.index))
    ax.set(xlabel=f"test images: {method} against {baseline}", ylabel="class")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def _colour_name(colour: tuple[int, int, int]) -> str:
    """A background colour as the report names it: white, black, or its R,G,B values."""

    names = {c: n for n, c in BACKGROUNDS.items()}
    return names.get(tuple(colour), "RGB " + ",".join(map(str, colour)))


def write_report(path: str | Path, out: str | Path, profile: str = "book", **kwargs: Any) -> Path:
    """Run ``study_folder`` and write ``out/report.html`` and ``out/metrics.csv``; the report's path."""
    intro, sections, metrics = study_folder(path, profile, **kwargs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    page = render(f"Fusing pre-trained backbones on {Path(path).name}", intro, sections)
    write_text_atomic(out / REPORT_NAME, page)
    write_text_atomic(out / METRICS_NAME, metrics.to_csv(index=False))
    return out / REPORT_NAME


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``report`` subcommand of ``python -m fusion_lib.book``."""
    report = sub.add_parser(
        "report",
        parents=[common],
        help="run the book's study on your own ImageFolder and write an HTML report",
        description=__doc__.split("\n\n")[1],
    )
    report.add_argument("path", help="an ImageFolder: one sub-folder of images per class")
    report.add_argument("--out", type=Path, required=True, help="folder for report.html and metrics.csv")
    report.add_argument(
        "--alias",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "WORDS"),
        help="words for a class name (or token) without a word vector, e.g. --alias tabby 'cat'",
    )
    report.add_argument(
        "--background",
        default=None,
        metavar="COLOUR",
        help="what transparent pixels show: white (the default), black or R,G,B (e.g. 128,128,128)",
    )
