"""The :class:`Surgery` base class.

A surgery is one named modification of an agent. It declares

* its catalog ``key`` and a parameters dataclass (``Params``, see :mod:`rlsurgery.core.params`),
* what it attaches to (:class:`Attachment`): network, replay, loss stage, exploration,
  schedule or post-training,
* the agent families it supports and the train/act *stages* it fills
  (see :mod:`rlsurgery.core.pipeline`).

The life cycle on a surgical agent is::

    validate(agent)          before anything is built; raises with the surgery's key
    configure(agent)         hyper-parameters and replay buffer class, before the networks exist
    modify_networks(agent)   network surgery, after the networks exist (replayed on ``load``)
    after_build(agent)       once, on a freshly built agent only (e.g. imitation pre-training)
    stage hooks              called by the agent's train step / action selection

Stage hooks are plain methods named after the stage (``next_action``, ``target`` …); a
surgery lists the stages it fills in ``stages`` and the agent's pipeline dispatches to it.
Two stages exist on every surgical agent and have one signature everywhere:

* ``aux_loss(agent, role, batch) -> Tensor | dict[str, Tensor] | None``: extra loss terms for
  the loss of ``role`` (``"q"`` on the DQN family; ``"critic"``, ``"actor"`` on SAC/TD3;
  ``"policy"``, ``"value"`` on PPO/A2C, whose two roles share one loss; ``"value"`` on TRPO),
  added before the backward pass and logged as ``train/aux/<name>`` (a bare tensor is named
  after the surgery's key);
* ``before_step(agent, role, batch, loss)``: after the backward pass and gradient clipping,
  right before the optimizer of ``role`` (``"policy"``, ``"actor"``, ``"critic"``) steps, with
  the batch and the loss of that update (loss watchers, SAM).

On a trained model (``rls.operate``, ``rlsurgery operate``, or at ``at_step`` during training) one
template, :meth:`Surgery.operate`, runs every surgery::

    check_operable(model, env_id)   validate: a surgical agent, not applied twice, validate(model)
    transform(model, env_id)        what the subclass writes; returns the operated model
    record(result)                  the provenance record of the operation (surgery_log)
    report                          with a meter: OperationReport in the record (core/report.py)

A subclass writes :meth:`~Surgery.transform` and sets the hooks the template reads
(``operates_in_place``, ``needs_surgical_agent``, ``repeatable``)::

    class Halve(Surgery):
        key, operates_in_place = "halve", True

        def transform(self, model, env_id):
            with th.no_grad():
                for p in model.policy.parameters():
                    p.mul_(0.5)
            return model
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, ClassVar

from gymnasium import spaces

from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import build_params, params_to_dict
from rlsurgery.core.report import Meter, OperationReport
from rlsurgery.core.state import states_of

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm


def surgery_record(surgery: Surgery, step: int, applied: str = "build") -> dict[str, Any]:
    """One provenance record: key, full parameters (defaults filled in), step, how applied."""
    return {
        "key": surgery.key,
        "params": params_to_dict(surgery.params),
        "step": int(step),
        "applied": applied,
    }


#: families of the surgical on-policy agents (actor-critic policies, rollout hooks)
ON_POLICY_FAMILIES = ("ppo", "a2c")
#: families whose acting network can be fit to expert actions (imitation, distillation)
IMITATION_FAMILIES = ("dqn", *ON_POLICY_FAMILIES, "trpo", "sac")


class Attachment(str, enum.Enum):
    """What part of an agent a surgery modifies."""

    NETWORK = "network"
    REPLAY = "replay"
    LOSS = "loss-stage"
    EXPLORATION = "exploration"
    SCHEDULE = "schedule"
    POST_TRAINING = "post-training"
    #: not a change to an agent: a way of searching over agents (``rlsurgery tune``'s samplers and pruners)
    SEARCH = "search"


def require_discrete_actions(key: str, action_space: spaces.Space) -> None:
    """Raise unless ``action_space`` is ``Discrete``, naming the surgery ``key``."""
    if not isinstance(action_space, spaces.Discrete):
        raise IncompatibleSurgeryError(
            f"{key}: needs a discrete action space, got {type(action_space).__name__}"
        )


def reject_dict_observations(key: str, observation_space: spaces.Space) -> None:
    """Raise for ``Dict`` observation spaces, naming the surgery ``key``."""
    if isinstance(observation_space, spaces.Dict):
        raise IncompatibleSurgeryError(f"{key}: Dict observation spaces are not supported yet")


class Surgery:
    """Base class of every surgery.

    Subclasses set the class attributes below and override the hooks they need.

    :param params: the surgery's parameters, validated against ``Params``
    """

    #: catalog key, e.g. ``"double_q_learning"``
    key: ClassVar[str] = ""
    #: what the surgery modifies
    attaches_to: ClassVar[tuple[Attachment, ...]] = ()
    #: parameters dataclass (``None``: the surgery takes no parameters)
    Params: ClassVar[type | None] = None
    #: agent families the surgery supports (``agent.algorithm_family``)
    families: ClassVar[tuple[str, ...]] = ("dqn",)
    #: family -> what the surgery acts on in that family, where it is less than on the others: a short
    #: phrase, then ": " and why (``{"trpo": "critic only: ..."}``); shown by the catalog
    family_notes: ClassVar[dict[str, str]] = {}
    #: why the surgery refuses a family it does not list (said in the refusal), family -> reason
    refusals: ClassVar[dict[str, str]] = {}
    #: train/act stages this surgery fills (see ``rlsurgery.core.pipeline``); a mapping
    #: family -> stages when they differ between agent families
    stages: ClassVar[tuple[str, ...] | dict[str, tuple[str, ...]]] = ()
    #: where a surgery's extra wall time goes and why its method needs that work (e.g. SAM: a second
    #: gradient per update). Required of every key measured above 1.5× the plain agent; shown on its
    #: ``cost`` line in ``docs/surgeries.md`` and appended to its class docstring as "Cost: ..."
    cost_note: ClassVar[str] = ""
    #: whether the surgery decides how actions are chosen while collecting experience
    #: (ε-greedy, Boltzmann, UCB, noisy networks): an agent takes one such surgery at most
    selects_actions: ClassVar[bool] = False
    #: keys this surgery cannot be combined with, and why (checked before anything is built)
    conflicts: ClassVar[tuple[str, ...]] = ()
    conflict_reason: ClassVar[str] = ""
    #: whether ``operate(model)`` changes the model in place (such surgeries can take ``at_step``);
    #: otherwise :meth:`transform` returns a new model that was built with the surgery (distillation)
    operates_in_place: ClassVar[bool] = False
    #: whether ``operate`` needs a surgical agent (with a provenance log, so that the change is saved
    #: and restored on ``load``); those that do not also work on a plain SB3 model, unrecorded
    needs_surgical_agent: ClassVar[bool] = True
    #: whether ``operate`` may apply the surgery to a model whose log already holds it
    repeatable: ClassVar[bool] = True
    #: whether the networks the surgery leaves are SB3's own for the algorithm, once reparametrized
    #: weights are folded (pruning masks, weight / spectral norm): then plain SB3's ``ALGO.load`` opens
    #: the saved zip and acts the same. False for surgeries that change the architecture or what a layer
    #: computes (dueling or distributional heads, noisy or inserted layers, normalization layers, new
    #: activations, skip connections): plain SB3 is told to load the zip with ``rls.load``
    #: (:mod:`rlsurgery.agents.sb3_zip`, which also checks the claim on every save)
    sb3_representable: ClassVar[bool] = True
    #: env step at which to apply the surgery during training (``at_step`` in a spec); None: at build
    at_step: int | None = None
    #: order of network transforms: lower runs first (output representation, then
    #: architecture, then layer replacement), whatever order the user listed them in
    build_order: ClassVar[int] = 50
    #: order among the fillers of a composable stage: lower runs first (loss watchers 3, SAM 5)
    stage_order: ClassVar[int] = 50
    #: the surgery's mutable state on an agent: a dataclass with defaults (see :meth:`state`)
    State: ClassVar[type | None] = None

    def __init__(self, **params: Any) -> None:
        if self.Params is None:
            if params:
                from rlsurgery.core.errors import ParameterError

                raise ParameterError(f"{self.key}: takes no parameters (got {', '.join(sorted(params))})")
            self.params = None
        else:
            self.params = build_params(self.Params, self.key, params)

    # ------------------------------------------------------------------ life cycle
    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        """Raise :class:`IncompatibleSurgeryError` if the env's spaces do not fit this surgery.

        Surgical agents call it as soon as the environment exists, before the SB3 parent
        checks its own constraints, so the error names the surgery.
        """

    def validate(self, agent: BaseAlgorithm) -> None:
        """Raise :class:`IncompatibleSurgeryError` if this surgery cannot apply to ``agent``.

        Called before the agent builds its networks or collects a single step.
        """
        family = getattr(agent, "algorithm_family", None)
        if family is None:
            raise IncompatibleSurgeryError(
                f"{self.key}: a plain SB3 {type(agent).__name__}, not a surgical agent (load the zip with "
                f"rls.load, or build the agent as rlsurgery's Surgical{type(agent).__name__})"
            )
        if family not in self.families:
            reason = self.refusals.get(family)
            raise IncompatibleSurgeryError(
                f"{self.key}: not available for {type(agent).__name__} "
                + (f"({reason}; " if reason else "(")
                + f"supports: {', '.join(self.families)})"
            )
        self.check_spaces(agent.observation_space, agent.action_space)

    def configure(self, agent: BaseAlgorithm) -> None:
        """Set hyper-parameters or the replay buffer class before the networks are built."""

    def modify_networks(self, agent: BaseAlgorithm) -> None:
        """Change the agent's networks after they are built (replayed on ``load``)."""

    def after_build(self, agent: BaseAlgorithm) -> None:
        """Work on a freshly built agent, once (not replayed on ``load``): e.g. pre-training
        the policy by imitation before any RL step."""

    # ------------------------------------------------------------------ on a trained model
    @classmethod
    def can_operate(cls) -> bool:
        """Whether the surgery works on an existing model (it defines :meth:`transform`)."""
        return cls.transform is not Surgery.transform

    def operate(
        self, model: BaseAlgorithm, env_id: str | None = None, meter: Meter | None = None
    ) -> BaseAlgorithm:
        """Apply the surgery to a trained model: check, transform, record, report.

        1. :meth:`check_operable` (before anything changes or is measured);
        2. with a ``meter``: measure the model as it is;
        3. :meth:`transform` (what subclasses write): the operated model, ``model`` itself for
           in-place surgeries, a new model for distillation's student;
        4. :meth:`record`: a provenance record ``{"key", "params", "step", "applied": "operate"}``
           appended to the model's ``surgery_log`` (and the surgery joins its surgeries, as it will
           after ``load``); a new model already holds the record it was built with;
        5. with a ``meter``: measure the result and keep the :class:`OperationReport` in that
           record, as plain data (``record["report"]``).

        :param model: the trained model
        :param env_id: its Gymnasium id when it does not record one (``rls_env_id``)
        :param meter: measures models for the report (``rls.operate(..., report=True)`` makes one)
        :return: the operated model
        """
        env_id = env_id or getattr(model, "rls_env_id", None)
        self.check_operable(model, env_id)
        if meter is not None and self.operates_in_place and getattr(model, "surgery_log", None) is None:
            raise IncompatibleSurgeryError(
                f"{self.key}: a report is kept in the provenance log; operate on a surgical agent (load "
                f"the zip with rls.load or rlsurgery operate), not a plain {type(model).__name__}"
            )
        before = meter.measure(model) if meter is not None else None
        result = self.transform(model, env_id)
        record = self.record(result)
        if meter is not None and before is not None and record is not None:
            report = OperationReport.from_costs(
                self.key,
                before,
                meter.measure(result),
                env_id=meter.env_id,
                episodes=meter.episodes,
                eval_seed=meter.eval_seed,
                device=str(result.device),
            )
            record["report"] = report.as_dict()
        return result

    def check_operable(self, model: BaseAlgorithm, env_id: str | None) -> None:
        """Raise before ``operate`` changes anything if the surgery cannot apply to ``model``.

        A surgery that :attr:`needs_surgical_agent` refuses a model without a provenance log; one
        that is not :attr:`repeatable` refuses a model whose log holds it; a surgical agent is then
        checked by :meth:`validate`, a plain SB3 model by :meth:`check_spaces`. Subclasses add
        their own checks (a role, an env id) and call this one.
        """
        log = getattr(model, "surgery_log", None)
        if self.needs_surgical_agent and log is None:
            raise IncompatibleSurgeryError(
                f"{self.key}: operate on a surgical agent (load the zip with rls.load or rlsurgery operate), "
                f"not a plain {type(model).__name__}, so that the change is saved and restored"
            )
        applied = [r["key"] for r in log or [] if r["applied"] != "scheduled"]
        if not self.repeatable and self.key in applied:
            raise IncompatibleSurgeryError(f"{self.key}: already applied to this model (see its surgery log)")
        if self.needs_surgical_agent or getattr(model, "algorithm_family", None) is not None:
            self.validate(model)
        else:
            self.check_spaces(model.observation_space, model.action_space)

    def transform(self, model: BaseAlgorithm, env_id: str | None) -> BaseAlgorithm:
        """Operate on ``model`` and return the result (``model`` itself when in place).

        :param model: the trained model, already checked by :meth:`check_operable`
        :param env_id: the model's Gymnasium id (the recorded one unless given), or None
        """
        raise IncompatibleSurgeryError(
            f"{self.key}: cannot be applied to an existing model; apply it when building the agent"
        )

    def record(self, model: BaseAlgorithm) -> dict[str, Any] | None:
        """The provenance record of this operation on ``model`` (the operated model), or None
        for a model without a log: appended for an in-place surgery; for a new model, the record of
        the surgery it was built with."""
        log = getattr(model, "surgery_log", None)
        if log is None:
            return None
        if not self.operates_in_place:
            return next((r for r in reversed(log) if r["key"] == self.key), None)
        record = surgery_record(self, step=model.num_timesteps, applied="operate")
        log.append(record)
        surgeries = getattr(model, "_surgeries", None)
        if surgeries is not None:  # as on load, where the surgeries are rebuilt from the log
            surgeries.append(self)
        return record

    def state(self, agent: Any) -> Any:
        """This surgery's state on ``agent`` (a ``State`` dataclass, created on first use and saved
        with the model; see :mod:`rlsurgery.core.state`)."""
        if self.State is None:
            raise TypeError(f"{type(self).__name__} declares no State")
        return states_of(agent).get_or_create(self.key, self.State)

    # ------------------------------------------------------------------ helpers
    def stages_for(self, family: str | None) -> tuple[str, ...]:
        """The stages this surgery fills on an agent of ``family``."""
        if isinstance(self.stages, dict):
            return tuple(self.stages.get(family or "", ()))
        return tuple(self.stages)

    @classmethod
    def notes_by_family(cls) -> dict[str, str]:
        """The :attr:`family_notes` of the families the surgery supports, in the order of ``families``."""
        return {f: cls.family_notes[f] for f in cls.families if f in cls.family_notes}

    @classmethod
    def all_stages(cls) -> list[str]:
        """Every stage name the surgery may fill, over all families (for the catalog)."""
        if isinstance(cls.stages, dict):
            return sorted({name for names in cls.stages.values() for name in names})
        return list(cls.stages)

    def spec(self) -> dict[str, Any]:
        """The mapping form of this surgery: ``{"key": ..., **params}``."""
        extra = {"at_step": self.at_step} if self.at_step is not None else {}
        return {"key": self.key, **params_to_dict(self.params), **extra}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in params_to_dict(self.params).items())
        return f"{type(self).__name__}({args})"
