from __future__ import annotations

import pytest

from rlsurgery import SurgicalDQN
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.pipeline import Stage, StagePipeline
from rlsurgery.core.surgery import Surgery

STAGES = [Stage("target", False, "TD target"), Stage("after_update", True, "hooks")]


class FillsTarget(Surgery):
    key = "fills_target"
    stages = ("target",)

    def target(self, log):
        log.append(self.key)


class AlsoTarget(FillsTarget):
    key = "also_target"


class Hook(Surgery):
    key = "hook"
    stages = ("after_update",)

    def after_update(self, log):
        log.append(self.key)


class Hook2(Hook):
    key = "hook2"


def test_exclusive_stage_conflict_names_both():
    with pytest.raises(
        IncompatibleSurgeryError, match="'fills_target' and 'also_target' both fill the 'target' stage"
    ):
        StagePipeline("Agent", STAGES, [FillsTarget(), AlsoTarget()])


def test_composable_stage_runs_all_in_order():
    pipe = StagePipeline("Agent", STAGES, [Hook2(), FillsTarget(), Hook()])
    log: list[str] = []
    pipe.run_all("after_update", log)
    assert log == ["hook2", "hook"]
    pipe.run("target", lambda log: log.append("default"), log)
    assert log[-1] == "fills_target"
    assert pipe.table() == {"target": ["fills_target"], "after_update": ["hook2", "hook"]}


def test_default_runs_when_stage_unfilled():
    pipe = StagePipeline("Agent", STAGES, [Hook()])
    log: list[str] = []
    pipe.run("target", lambda log: log.append("default"), log)
    assert log == ["default"]


def test_unknown_stage_is_rejected():
    class Bad(Surgery):
        key = "bad"
        stages = ("nonexistent",)

    with pytest.raises(IncompatibleSurgeryError, match="bad: fills stage 'nonexistent'"):
        StagePipeline("Agent", STAGES, [Bad()])


def test_agent_rejects_two_distributional_variants_and_duplicates():
    with pytest.raises(IncompatibleSurgeryError, match="distributional_rl: given twice"):
        SurgicalDQN(
            "MlpPolicy",
            "CartPole-v1",
            surgeries=["distributional_rl:variant=c51", "distributional_rl:variant=qr"],
        )
