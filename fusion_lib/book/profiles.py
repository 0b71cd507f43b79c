"""Notebook parameter profiles: how large a run every notebook of the book does.

Three profiles share one schema: ``ci`` (tiny, so the test suite executes each notebook in about
two minutes on a laptop CPU), ``book`` (the offline default the published book is built with) and
``paper`` (the paper's datasets and hub backbones, for a GPU machine with internet).

Every notebook follows one convention, so papermill, nbval and readers drive it the same way::

    profile = os.environ.get("FUSION_PROFILE", "book")   # the cell tagged `parameters`
    overrides = {}                                        # e.g. {"seeds": 1, "datasets": "digits"}
    P = get_profile(profile, **overrides)                 # first cell after `parameters`

papermill (``-p profile paper``) overrides the parameters cell, ``FUSION_PROFILE=ci`` picks a profile
for runs without papermill (nbval), and a bad name or value fails in that first cell.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence, TypeVar

from fusion_lib.data import checks as V
from fusion_lib.data.backbones import OFFLINE_BACKBONES, ZOOS, hub_or_offline, min_input_size, short_name
from fusion_lib.data.datasets import (
    DATA_ROOT_ENV,
    OFFLINE_DATASETS,
    OFFLINE_SPLIT_SIZES,
    ONLINE_DATASETS,
    WHITE,
    Colour,
    DatasetSplits,
    SplitSizes,
    check_background,
    load_dataset,
)
from fusion_lib.data.extraction import load_feature_set
from fusion_lib.data.feature_set import FeatureSet
from fusion_lib.data.spec import (
    DEFAULT_BACKBONES,
    DEFAULT_INPUT_SIZE,
    DEFAULT_SIZES,
    DEFAULT_THUMBNAIL_SIZE,
    FeatureSpec,
    check_backbones,
    check_input_size,
)
from fusion_lib.fusion.gates import ThumbnailGate
from fusion_lib.fusion.training import TrainConfig
from fusion_lib.studies.ablation_study import AblationStudy, AccuracyPush
from fusion_lib.studies.ablations import AblationRuns, subsample_train
from fusion_lib.studies.agreement import AgreementStudies, run_agreement_study
from fusion_lib.studies.config import ExperimentConfig
from fusion_lib.studies.label_studies import LabelStudies
from fusion_lib.studies.label_study import aliases_for
from fusion_lib.studies.runner import ExperimentResult, run_experiment
from fusion_lib.studies.runs import EXPERTS, Runs, StudyRun
from fusion_lib.studies.study import Study

DEFAULT_PROFILE = "book"
R = TypeVar("R")
# The pool of images whose features are extracted is drawn once, with this seed; each of a profile's
# ``seeds`` then draws its own split inside the pool (FeatureSet.draw) and trains its own models.
DATA_SEED = 0

# The paper's datasets (torchvision downloads); they need the internet on first use.
PAPER_DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "stl10", "oxford_pets")
# The paper's Keras backbones under their timm names (timm's `legacy_xception` is the Keras port).
PAPER_BACKBONES: tuple[str, ...] = ("resnet50", "vgg16", "inception_v3", "legacy_xception")
KNOWN_DATASETS: tuple[str, ...] = OFFLINE_DATASETS + ONLINE_DATASETS
CANDIDATES_DATASET = "cifar_cats_dogs"
# Notebook 04's accuracy push: its own small subset (train, val, test), extracted at several input sizes.
PUSH_SIZES = (1000, 500, 500)


@dataclass(frozen=True)
class Profile:
    """One consistent set of notebook parameters.

    ``sizes`` are the split sizes of every dataset except those listed in ``dataset_sizes``
    (digits has only 1,797 images); ``max_seeds`` caps the number of ``seeds`` (the first n) run on
    some datasets (a large fixed test set needs fewer seeds than a small one redrawn per seed);
    ``zero_shot_splits`` is the number of held-out class triples of the zero-shot study (every triple
    where there are at most that many, else a random draw of that many); ``input_size=None`` extracts
    features at each backbone's own input size; ``device`` is "auto", "cpu", "cuda[:N]" or "mps".
    ``zoos`` are the sets of experts of equal size that notebooks 02 and 03 compare ({} for none): one
    architecture family against several, on ``zoo_datasets`` (None: every dataset).
    ``background`` is the colour an ImageFolder's transparent pixels are composited on.
    """

    name: str
    datasets: tuple[str, ...]
    backbones: tuple[str, ...]
    sizes: SplitSizes
    seeds: tuple[int, ...]
    epochs: int
    input_size: int | None
    thumbnail_size: int
    device: str
    dataset_sizes: Mapping[str, SplitSizes] = field(default_factory=lambda: MappingProxyType({}))
    max_seeds: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    zero_shot_splits: int = 120
    zoos: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    zoo_datasets: tuple[str, ...] | None = None
    download: bool = False
    data_root: str | None = None
    background: Colour = WHITE

    def split_sizes(self, dataset: str) -> SplitSizes:
        """The train/val/test sizes this profile uses for ``dataset``."""
        if dataset not in self.datasets:
            raise ValueError(
                f"dataset {dataset!r} is not in profile {self.name!r}; "
                f"its datasets are {', '.join(self.datasets)}"
            )
        return self.dataset_sizes.get(dataset, self.sizes)

    def seeds_for(self, dataset: str) -> tuple[int, ...]:
        """The seeds this profile runs on ``dataset``: its ``seeds``, or the first ``max_seeds[dataset]``."""
        self.split_sizes(dataset)  # the same error for a dataset outside the profile
        return self.seeds[: self.max_seeds.get(dataset, len(self.seeds))]

    def all_backbones(self) -> tuple[str, ...]:
        """The profile's experts and every zoo's, once each, in order."""
        return tuple(dict.fromkeys([*self.backbones, *(b for zoo in self.zoos.values() for b in zoo)]))

    def zoo_dataset_names(self) -> tuple[str, ...]:
        """The datasets the zoos are compared on: those of ``zoo_datasets`` (every dataset when None), in
        the profile's order."""
        return tuple(d for d in self.datasets if self.zoo_datasets is None or d in self.zoo_datasets)

    def backbones_for(self, dataset: str) -> tuple[str, ...]:
        """The backbones whose features ``dataset`` needs: every zoo's on the zoos' datasets
        (``all_backbones``), else the profile's experts."""
        self.split_sizes(dataset)  # the same error for a dataset outside the profile
        return self.all_backbones() if dataset in self.zoo_dataset_names() else self.backbones

    def feature_spec(self, dataset: str, backbones: Sequence[str] | None = None) -> FeatureSpec:
        """The data spec of one of the profile's datasets (its experts, or ``backbones``)."""
        return FeatureSpec(
            dataset,
            tuple(backbones or self.backbones),
            self.split_sizes(dataset),
            seed=DATA_SEED,
            input_size=self.input_size,
            thumbnail_size=self.thumbnail_size,
            root=self.data_root,
            download=self.download,
            background=self.background,
        )

    def feature_set(self, dataset: str, backbones: Sequence[str] | None = None) -> FeatureSet:
        """The cached features of ``feature_spec(dataset, backbones)``, loaded the one way every notebook
        (and the book build's cache warm-up) loads them."""
        return load_feature_set(self.feature_spec(dataset, backbones), self.device, progress=False)

    def pools(self, backbones: Sequence[str] | None = None) -> list[FeatureSet]:
        """``feature_set`` of every dataset of the profile, in its order (each names its dataset)."""
        return [self.feature_set(name, backbones) for name in self.datasets]

    def images(self) -> list[DatasetSplits]:
        """``dataset_splits`` of every dataset of the profile, in its order (each names its dataset)."""
        return [self.dataset_splits(name) for name in self.datasets]

    def dataset_splits(self, dataset: str) -> DatasetSplits:
        """The images of one of the profile's datasets, split as its features were (the pool
        ``feature_set`` draws its seeds' splits from), for showing them."""
        return load_dataset(
            dataset,
            self.split_sizes(dataset),
            seed=DATA_SEED,
            root=self.data_root,
            download=self.download,
            background=self.background,
        )

    def candidates_dataset(self) -> str:
        """The dataset the experts are chosen on (notebook 02): CIFAR cats and dogs, the one offline natural-
        image dataset, where the profile has it; else its first dataset."""
        return CANDIDATES_DATASET if CANDIDATES_DATASET in self.datasets else self.datasets[0]

    def candidates_feature_set(self) -> FeatureSet:
        """Every offline backbone's features of ``candidates_dataset()``."""
        return self.feature_set(self.candidates_dataset(), OFFLINE_BACKBONES)

    def zoo_runs(
        self, experts: Runs[StudyRun[R]], run: Callable[[FeatureSet, ExperimentConfig], R], **settings: Any
    ) -> list[StudyRun[R]]:
        """Every zoo's run on each of ``zoo_dataset_names()``, zoo by zoo in the profile's order:
        ``run(pool, config)`` on the zoo's features (``settings`` go to ``experiment_config``), except for a
        zoo equal to the profile's experts, which takes the run ``experts`` already made on that dataset.
        Each dataset's features are loaded once for all its zoos."""
        runs = []
        for name in self.zoo_dataset_names():
            union = self.feature_set(name, self.backbones_for(name))
            for zoo, members in self.zoos.items():
                if tuple(members) == tuple(self.backbones):
                    runs.append(replace(experts.get(name), zoo=zoo))
                    continue
                pool = union.subset_backbones(list(members))
                runs.append(
                    StudyRun(name, zoo, run(pool, self.experiment_config(name, members, **settings)), pool)
                )
        return sorted(runs, key=lambda r: list(self.zoos).index(r.zoo))

    def ablation_study(self, dataset: str, max_train: int) -> AblationStudy:
        """The ablation study of ``dataset`` on a stratified subset of at most ``max_train`` of its training
        images (drawn once with the data seed); validation and test keep the profile's sizes."""
        full = self.feature_set(dataset)
        pool = subsample_train(full, min(1.0, max_train / len(full.labels["train"])), seed=DATA_SEED)
        return AblationStudy(
            dataset, pool, AblationRuns(self.experiment_config(dataset)), self.thumbnail_size
        )

    def accuracy_push(self, dataset: str) -> AccuracyPush:
        """Notebook 04's accuracy push on ``dataset``: ``push_feature_sets`` against the profile's input size."""
        return AccuracyPush(self.push_feature_sets(dataset), self.input_size)

    def agreement_studies(self, pools: Sequence[FeatureSet]) -> AgreementStudies:
        """The agreement study of each dataset's experts (``pools``: the profile's, ``pools()``), under the
        profile's experiment config."""
        return AgreementStudies(
            StudyRun(fs.dataset, EXPERTS, run_agreement_study(fs, self.experiment_config(fs.dataset)), fs)
            for fs in pools
        )

    def agreement_zoos(self, experts: AgreementStudies) -> AgreementStudies:
        """Each zoo's agreement study on each dataset, zoo by zoo (``zoo_runs``: the zoo equal to the
        profile's experts takes ``experts``' runs)."""
        return AgreementStudies(self.zoo_runs(experts, run_agreement_study))

    def study(self, **settings: Any) -> Study:
        """Every dataset's experiment on its cached features (``run_experiment``; ``settings`` go to
        ``experiment_config``, e.g. ``methods``), as one study of the profile's experts."""

        def run(name: str) -> tuple[ExperimentResult, FeatureSet]:
            pool = self.feature_set(name)
            return _experiment(pool, self.experiment_config(name, **settings)), pool

        return Study.of(self.datasets, run)

    def zoo_study(self, experts: Study, **settings: Any) -> Study:
        """Every zoo's experiment on every dataset (``zoo_runs``: the zoo equal to the profile's experts
        takes ``experts``' runs), zoo as a column; ``settings`` as for ``study``."""
        return Study(self.zoo_runs(experts, _experiment, **settings))

    def label_studies(self, vectors: Any) -> LabelStudies:
        """The label-space study of every dataset, ready to run: its cached features, its experiment config
        with the book's aliases for its class names, and its class vectors from ``vectors`` through them."""

        def inputs(name: str) -> tuple[str, FeatureSet, ExperimentConfig]:
            fs = self.feature_set(name)
            return name, fs, self.experiment_config(name, aliases=aliases_for(fs.class_names))

        return LabelStudies.prepare(map(inputs, self.datasets), vectors)

    def push_inputs(self) -> tuple[int | None, ...]:
        """The input sizes notebook 04's accuracy push compares: 64 px where every expert takes it (Xception
        needs 71 px, Inception-v3 75 px), the profile's own and 96 px; the paper profile only its own."""
        if self.name == "paper" or self.input_size is None:
            return (self.input_size,)
        small = {64} if all(min_input_size(b) <= 64 for b in self.backbones) else set()
        return tuple(sorted(small | {self.input_size, 96}))

    def push_feature_sets(self, dataset: str) -> dict[int | None, FeatureSet]:
        """Notebook 04's accuracy-push pools: the same small subset of ``dataset`` (``PUSH_SIZES``, capped
        at the profile's sizes) at each of ``push_inputs()``. The book build extracts them up front."""
        sizes = SplitSizes(*(min(a, b) for a, b in zip(PUSH_SIZES, astuple(self.split_sizes(dataset)))))
        return {
            px: replace(self, input_size=px, sizes=sizes, dataset_sizes={}).feature_set(dataset)
            for px in self.push_inputs()
        }

    def train_config(self) -> TrainConfig:
        """The training settings every model of the profile's studies is fit with."""
        return TrainConfig(epochs=self.epochs, device=self.device)

    def experiment_config(
        self, dataset: str, backbones: Sequence[str] | None = None, **settings: Any
    ) -> ExperimentConfig:
        """The ``ExperimentConfig`` of one of the profile's datasets (its experts, or ``backbones``);
        ``settings`` replace any other field (e.g. ``methods="prob_avg,moe_thumbnail"``). The fit cache
        is on: notebooks that train the same models for a seed (03 and 05) fit them once."""

        base = dict(
            data=self.feature_spec(dataset, backbones),
            train=self.train_config(),
            seeds=self.seeds_for(dataset),
            fit_cache=True,
        )
        return ExperimentConfig(**{**base, **settings})

    def describe(self) -> dict[str, str]:
        """Every setting as display text (one column of the book's profiles table)."""

        def fmt(s: SplitSizes) -> str:
            return f"{s.train}/{s.val}/{s.test}"

        sizes = [f"{d}: {fmt(self.split_sizes(d))}" for d in self.datasets]
        capped = [
            f"{d}: {', '.join(map(str, self.seeds_for(d)))}" for d in self.datasets if d in self.max_seeds
        ]
        return {
            "datasets": ", ".join(self.datasets),
            "backbones": ", ".join(self.backbones),
            "zoos compared": "; ".join(f"{k}: {', '.join(map(short_name, v))}" for k, v in self.zoos.items())
            + (f" (on {', '.join(self.zoo_dataset_names())})" if self.zoo_datasets is not None else ""),
            "train/val/test": "; ".join(sizes),
            "seeds": ", ".join(map(str, self.seeds)) + (f" ({'; '.join(capped)})" if capped else ""),
            "epochs (max)": str(self.epochs),
            "input size": "backbone default" if self.input_size is None else f"{self.input_size} px",
            "thumbnail": f"{self.thumbnail_size} px",
            "zero-shot splits (max)": str(self.zero_shot_splits),
            "device": self.device,
            "datasets from": ("download (torchvision)" if self.download else "local files")
            + f", {self.data_root or '$' + DATA_ROOT_ENV + ' or $FUSION_CACHE/datasets'}",
        }


def _experiment(pool: FeatureSet, config: ExperimentConfig) -> ExperimentResult:
    """``run_experiment`` of ``config`` on the cached ``pool``, without progress bars (a notebook's run)."""
    return run_experiment(config, feature_set=pool, progress=False)


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci",
        datasets=("digits",),
        backbones=("tf_efficientnet_lite0", "squeezenet1_1"),
        sizes=SplitSizes(200, 100, 150),
        seeds=(0, 1),
        epochs=5,
        # 80 px: the Inception-v3 port of the small diverse zoo needs 75 px
        input_size=80,
        thumbnail_size=DEFAULT_THUMBNAIL_SIZE,
        device="cpu",
        zoos=_frozen(
            {
                "homogeneous": ("tf_efficientnet_lite0", "squeezenet1_1"),
                "diverse": ("tf_efficientnet_lite0", "fid_inception_v3"),
            }
        ),
    ),
    # the library's defaults (fusion_lib.data.spec: experts, sizes, input size), so that the command
    # line reads the features this profile cached
    "book": Profile(
        name="book",
        datasets=("fashion_mnist", "cifar_cats_dogs", "digits", "mnist"),
        backbones=DEFAULT_BACKBONES,
        sizes=DEFAULT_SIZES,
        # five seeds: the intervals resample seeds as well as images, and fewer leave the seed level of
        # that bootstrap coarse. Fashion-MNIST gets three (max_seeds below): its 10,000 training images
        # make a seed of every method cost about 2.3 min, five times any other dataset's, and five would
        # take a cold build past its 35 minutes; its official test set is shared by the seeds.
        # They are the first five of the confirmatory plan's seeds (plan/confirmatory-plan.yml, a test
        # holds them equal), so that the exploratory notebooks load the models notebook 06 fits for the
        # plan instead of fitting the same methods again on other seeds. Seeds 0-4 were the ones the
        # plan's choices were made on; their numbers are in the history (methods chapter).
        seeds=(100, 101, 102, 103, 104),
        epochs=60,
        input_size=DEFAULT_INPUT_SIZE,
        thumbnail_size=DEFAULT_THUMBNAIL_SIZE,
        device="cpu",
        dataset_sizes=OFFLINE_SPLIT_SIZES,
        max_seeds=_frozen({"fashion_mnist": 3}),
        # 40 of the 120 held-out triples of ten classes: all 120 took 4.7 of the build's minutes
        zero_shot_splits=40,
        zoos=_frozen(ZOOS),
        # where the plan's zoo sweep runs and every candidate backbone is extracted anyway: the two zoos
        # are compared there, and the homogeneous zoo's EfficientNet-Lite1/2 are not extracted on the
        # 25,000 images of Fashion-MNIST and MNIST
        zoo_datasets=("cifar_cats_dogs", "digits"),
    ),
    "paper": Profile(
        name="paper",
        datasets=PAPER_DATASETS,
        backbones=PAPER_BACKBONES + ZOOS["homogeneous"],
        sizes=SplitSizes(10000, 2000, 5000),
        seeds=(0, 1, 2, 3, 4),
        epochs=100,
        input_size=None,
        thumbnail_size=DEFAULT_THUMBNAIL_SIZE,
        device="auto",
        dataset_sizes=_frozen(
            {"stl10": SplitSizes(4000, 1000, 8000), "oxford_pets": SplitSizes(3000, 680, 3669)}
        ),
        download=True,
        zoos=_frozen({"homogeneous": ZOOS["homogeneous"], "diverse": PAPER_BACKBONES}),
    ),
}

OVERRIDABLE: tuple[str, ...] = tuple(f.name for f in fields(Profile) if f.name != "name")


def get_profile(name: str, **overrides: Any) -> Profile:
    """The profile ``name`` ("ci", "book" or "paper") with some settings replaced.

    ``overrides`` may set any of ``OVERRIDABLE``: ``datasets``/``backbones`` take a list or a
    comma-separated string ("offline" expands to the offline set), ``sizes`` a ``SplitSizes`` or a
    (train, val, test) triple applied to every dataset, ``dataset_sizes`` a {dataset: sizes} dict,
    ``seeds`` a count n (seeds 0..n-1) or a list. Anything unknown or invalid raises ValueError
    (the rules are ``fusion_lib.data.checks``'s, shared with the command line and ``ExperimentConfig``).
    """
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise ValueError(
            f"unknown profile setting(s) {', '.join(map(repr, unknown))}; "
            f"valid settings: {', '.join(OVERRIDABLE)}"
        )
    base = PROFILES[name]
    # an online profile takes each hub backbone, or its offline port where the hub is unreachable
    if base.download:
        swap = {b: hub_or_offline(b) for b in base.all_backbones()}
        base = replace(
            base,
            backbones=tuple(swap[b] for b in base.backbones),
            zoos=_frozen({k: tuple(swap[b] for b in v) for k, v in base.zoos.items()}),
        )
    changes = {key: _VALIDATORS[key](value) for key, value in overrides.items()}
    if "sizes" in changes and "dataset_sizes" not in changes:
        changes["dataset_sizes"] = _frozen({})  # an explicit size is meant for every dataset
    if "seeds" in changes and "max_seeds" not in changes:
        changes["max_seeds"] = _frozen({})  # explicit seeds are meant for every dataset
    if "datasets" in changes and "zoo_datasets" not in changes:
        changes["zoo_datasets"] = None  # explicit datasets are meant for the zoos too
    profile = replace(base, **changes)
    for key in ("dataset_sizes", "max_seeds", "zoo_datasets"):
        missing = sorted(set(getattr(profile, key) or ()) - set(profile.datasets))
        if key in overrides and missing:
            raise ValueError(
                f"{key} names {missing}, which are not among the profile's datasets "
                f"{list(profile.datasets)}; add them to `datasets` or drop them"
            )
    _check(profile)
    return profile


def _check(p: Profile) -> None:
    """A whole profile, after its overrides are applied: each dataset's data spec (sizes against the
    dataset, input size against every backbone) and a device this machine has."""
    V.device(p.device)
    for d in p.datasets:
        p.feature_spec(d, p.backbones_for(d))


def _names(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        names = V.split_names(value)
    elif isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        names = list(value)
    else:
        raise ValueError(f"{what} must be a list of names or a comma-separated string, got {value!r}")
    if not names:
        raise ValueError(f"{what} must name at least one entry")
    return names


def _datasets(value: Any) -> tuple[str, ...]:
    names: list[str] = []
    for n in _names(value, "datasets"):
        names.extend(OFFLINE_DATASETS if n == "offline" else [n])
    unknown = [n for n in names if not _is_dataset(n)]
    if unknown:
        raise ValueError(
            f"unknown dataset(s) {unknown}; valid datasets: {', '.join(KNOWN_DATASETS)} "
            f"('offline' for {', '.join(OFFLINE_DATASETS)}), or an ImageFolder directory"
        )
    return tuple(dict.fromkeys(names))


def _is_dataset(name: str) -> bool:
    return name in KNOWN_DATASETS or Path(name).expanduser().is_dir()  # load_dataset takes ImageFolders


def _backbones(value: Any) -> tuple[str, ...]:
    return tuple(check_backbones(_names(value, "backbones")))


def _split_sizes(value: Any) -> SplitSizes:
    if isinstance(value, SplitSizes):
        triple = (value.train, value.val, value.test)
    elif isinstance(value, Mapping) and set(value) == {"train", "val", "test"}:
        triple = (value["train"], value["val"], value["test"])
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 3:
        triple = tuple(value)
    else:
        raise ValueError(
            f"split sizes must be SplitSizes, a (train, val, test) triple or a dict with keys "
            f"train/val/test, got {value!r}"
        )
    train, val, test = (V.integer(v, f"split size {k}", 1) for k, v in zip(("train", "val", "test"), triple))
    return SplitSizes(train, val, test)


def _per_dataset(value: Any, key: str, shape: str, convert: Callable[[str, Any], Any]) -> Mapping[str, Any]:
    """A {dataset: setting} override (``dataset_sizes``, ``max_seeds``): known datasets, converted values."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{key} must be a dict {{dataset: {shape}}}, got {value!r}")
    unknown = [k for k in value if not _is_dataset(k)]
    if unknown:
        raise ValueError(f"{key}: unknown dataset(s) {unknown}; valid datasets: {', '.join(KNOWN_DATASETS)}")
    return _frozen({k: convert(k, v) for k, v in value.items()})


def _dataset_sizes(value: Any) -> Mapping[str, SplitSizes]:
    return _per_dataset(value, "dataset_sizes", "(train, val, test)", lambda _, v: _split_sizes(v))


def _zoos(value: Any) -> Mapping[str, tuple[str, ...]]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"zoos must be a dict {{name: backbones}}, got {value!r}")
    zoos = {name: _backbones(spec) for name, spec in value.items()}
    if len(zoos) < 2:
        raise ValueError(f"zoos must name at least two zoos to compare, got {list(zoos)}")
    if len({len(z) for z in zoos.values()}) > 1:
        raise ValueError(
            f"zoos must have equal numbers of experts (a fair comparison), got "
            f"{ {name: len(z) for name, z in zoos.items()} }"
        )
    return _frozen(zoos)


def _max_seeds(value: Any) -> Mapping[str, int]:
    return _per_dataset(
        value, "max_seeds", "number of seeds", lambda k, v: V.integer(v, f"max_seeds[{k!r}]", 1)
    )


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be true or false, got {value!r}")
    return value


def _data_root(value: Any) -> str | None:
    # None: $FUSION_DATA_ROOT, else $FUSION_CACHE/datasets (fusion_lib.data.datasets.data_root)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ValueError(f"data_root must be a folder path or None, got {value!r}")
    return value


_VALIDATORS = {
    "datasets": _datasets,
    "backbones": _backbones,
    "zoos": _zoos,
    "sizes": _split_sizes,
    "dataset_sizes": _dataset_sizes,
    "max_seeds": _max_seeds,
    "zoo_datasets": lambda v: None if v is None else _datasets(v),
    "zero_shot_splits": lambda v: V.integer(v, "zero_shot_splits", 1),
    "seeds": V.seeds,
    "epochs": lambda v: V.integer(v, "epochs", 1),
    "input_size": check_input_size,
    "thumbnail_size": lambda v: ThumbnailGate.check_size(V.thumbnail_size(v)),
    "device": V.device,
    "download": lambda v: _bool(v, "download"),
    "data_root": _data_root,
    "background": check_background,
}
