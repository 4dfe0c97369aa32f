"""Surgeries applied at a step during training (``at_step`` in a spec or recipe).

A spec like ``magnitude_pruning:amount=0.5,at_step=20000`` is kept aside when the agent is
built (logged as ``scheduled``); this callback applies it, in place, at the first env step
≥ ``at_step`` (``surgery.operate(agent)``), and the log then records the step it was
applied at. A model saved before that step still carries the schedule; after it, the
surgery is replayed on ``load`` like any other.
"""

from __future__ import annotations

from stable_baselines3.common.callbacks import BaseCallback


class ScheduledSurgeries(BaseCallback):
    """Applies the agent's scheduled surgeries when their step comes; a surgery that acts during
    training (its ``callback(agent)``) starts acting right away, in the same ``learn`` call."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[BaseCallback] = []

    def _on_step(self) -> bool:
        for callback in self.started:
            callback.on_step()
        agent = self.model
        for surgery in list(agent._scheduled):
            if agent.num_timesteps >= surgery.at_step:
                agent._scheduled.remove(surgery)
                agent.surgery_log[:] = [
                    r
                    for r in agent.surgery_log
                    if not (r["key"] == surgery.key and r["applied"] == "scheduled")
                ]
                surgery.operate(agent)
                agent.surgery_log[-1]["applied"] = "at_step"
                callback = getattr(surgery, "callback", lambda _a: None)(agent)
                if callback is not None:
                    callback.init_callback(agent)
                    self.started.append(callback)
                if agent.verbose >= 1:
                    print(f"applied {surgery.key} at step {agent.num_timesteps}")
        return True
