"""The confirmatory plan (``plan/confirmatory-plan.yml``), read and checked in one place.

The plan fixes, before the confirmatory run, each claim's primary test, the statistic and its margin,
the bootstrap, the decision rule and the design (datasets, experts, fresh seeds, methods). The book
prints its sha256 (``ConfirmatoryPlan.sha256``), so a reader can match the words it shows to the plan
version that decided them, and to the commit that added that version.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fusion_lib.studies.label_study import STUDY_MODELS
from fusion_lib.studies.registry import method_names

PLAN_FILE = Path(__file__).resolve().parents[2] / "plan" / "confirmatory-plan.yml"


@dataclass(frozen=True)
class PlannedTest:
    """One claim's primary test (``method`` against ``reference``) and its secondary tests."""

    claim: str
    question: str
    method: str
    reference: str
    secondary: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ZooSweepPlan:
    """The exploratory zoo sweep the plan fixes: ``zoos`` zoos of ``zoo_size`` experts drawn with
    ``draw_seed`` among the offline backbones, on ``datasets`` over ``seeds``."""

    datasets: tuple[str, ...]
    zoos: int
    zoo_size: int
    draw_seed: int
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class ConfirmatoryPlan:
    """The plan's content: ``margin`` in percent of the reference's errors, ``reseeds`` bootstraps that
    flag a borderline word, and the design the confirmatory run must use."""

    sha256: str
    version: int
    tests: tuple[PlannedTest, ...]
    margin: float
    replicates: int
    reseeds: int
    datasets: tuple[str, ...]
    experts: tuple[str, ...]
    seeds: tuple[int, ...]
    methods: tuple[str, ...]
    sweep: "ZooSweepPlan"

    @property
    def short_hash(self) -> str:
        """The first 12 hex digits of the sha256, as the book prints it."""
        return self.sha256[:12]


def _pair(entry: Any, where: str) -> tuple[str, str]:
    if not isinstance(entry, dict) or set(entry) != {"method", "reference"}:
        raise ValueError(f"{where}: a test is {{method: NAME, reference: NAME}}, got {entry!r}")
    return str(entry["method"]), str(entry["reference"])


def load_plan(path: Path | None = None) -> ConfirmatoryPlan:
    """Read, hash and check the plan: every model it names must be a registered method or one of the label
    study's models, and its seeds must be distinct."""
    path = PLAN_FILE if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no confirmatory plan at {path}; it is plan/confirmatory-plan.yml in the repository"
        )
    raw = path.read_bytes()
    doc = yaml.safe_load(raw)
    tests = []
    for claim, spec in doc["claims"].items():
        method, reference = _pair(spec["primary_test"], f"{claim} primary_test")
        secondary = tuple(_pair(t, f"{claim} secondary_tests") for t in spec.get("secondary_tests", []))
        tests.append(PlannedTest(claim, spec["question"], method, reference, secondary))
    design, sweep = doc["design"], doc["zoo_sweep"]
    plan = ConfirmatoryPlan(
        sha256=hashlib.sha256(raw).hexdigest(),
        version=int(doc["version"]),
        tests=tuple(tests),
        margin=100.0 * float(doc["margin"]["relative_error_reduction"]),
        replicates=int(doc["interval"]["replicates"]),
        reseeds=20,  # the plan's decision_rule.borderline: 20 reseeded bootstraps
        datasets=tuple(design["datasets"]),
        experts=tuple(design["experts"]),
        seeds=tuple(int(s) for s in design["seeds"]),
        methods=tuple(design["methods"]),
        sweep=ZooSweepPlan(
            datasets=tuple(sweep["datasets"]),
            zoos=int(sweep["zoos"]),
            zoo_size=int(sweep["zoo_size"]),
            draw_seed=int(sweep["draw_seed"]),
            seeds=tuple(int(s) for s in sweep["seeds"]),
        ),
    )
    known = set(method_names()) | set(STUDY_MODELS)
    named = {m for t in plan.tests for pair in ((t.method, t.reference), *t.secondary) for m in pair}
    unknown = sorted((named | set(plan.methods)) - known)
    if unknown:
        raise ValueError(f"{path}: unknown method(s) {unknown}; registered: {', '.join(sorted(known))}")
    if len(set(plan.seeds)) != len(plan.seeds):
        raise ValueError(f"{path}: the confirmatory seeds repeat: {plan.seeds}")
    return plan
