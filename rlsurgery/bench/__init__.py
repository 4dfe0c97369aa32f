"""Studies: variants × environments × seeds, run locally or on Ray, stored, summarised, plotted.

>>> from rlsurgery.bench import StudySpec, Variant, select_envs
>>> spec = StudySpec("demo", [Variant("dqn", "dqn"), Variant("rainbow", "rainbow")],
...                  select_envs(None, ["CartPole-v1"], steps=20_000), seeds=[0, 1, 2], baseline="dqn")
>>> len(spec.runs())
6

``run_study(spec, "studies/demo")`` runs it (resuming if the folder holds a partial run) and
writes the report; ``write_study_report(folder)`` rebuilds the outputs from the store.
"""

from rlsurgery.bench.runner import run_study, write_study_report
from rlsurgery.bench.store import ResultStore
from rlsurgery.bench.study import StudySpec, Variant, ablation_variants, load_study, select_envs
from rlsurgery.bench.suites import available_suites, load_suite

__all__ = [
    "ResultStore",
    "StudySpec",
    "Variant",
    "ablation_variants",
    "available_suites",
    "load_study",
    "load_suite",
    "run_study",
    "select_envs",
    "write_study_report",
]
