"""What every surgical agent shares: surgeries from specs, provenance, stage dispatch.

A surgical agent keeps one source of truth, ``surgery_log``: a list of records
``{"key", "params", "step", "applied"}`` saved inside the model zip. On construction
the log is written from the ``surgeries`` argument; on ``load`` the surgeries are
rebuilt from the log *before* the saved parameters are set, so architecture changes
are replayed and the parameter names match exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import tempfile
import warnings
from abc import ABCMeta
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm, maybe_make_env

from rlsurgery import catalog
from rlsurgery.agents import sb3_zip
from rlsurgery.agents.scheduled import ScheduledSurgeries
from rlsurgery.core.errors import AgentBuildError, IncompatibleSurgeryError, ParameterError
from rlsurgery.core.model_zip import (
    PLAIN_DATA_KEY,
    PLAIN_LOAD_GUARD_KEY,
    load_without_unpickling,
    plain_data_record,
)
from rlsurgery.core.pipeline import Stage, StagePipeline
from rlsurgery.core.state import SAVED_ATTRIBUTE, SurgeryStates, states_of
from rlsurgery.core.surgery import Surgery, surgery_record
from rlsurgery.nets.forward_hooks import reattach_forward_hooks
from rlsurgery.nets.layout import NetworkLayout, resolve
from rlsurgery.nets.optim import prefer_foreach
from rlsurgery.runtime.wrappers import surgery_wrappers, unwrap_surgery_wrappers


def env_id_of(env: Any) -> str | None:
    """The Gymnasium id of ``env`` (a string id, an env, or a VecEnv), or ``None``."""
    if isinstance(env, str):
        return env
    try:
        spec = env.get_attr("spec")[0] if hasattr(env, "get_attr") else env.spec
        return spec.id if spec is not None else None
    except Exception:
        return None


def surgery_objects(surgeries: Any) -> list[Surgery]:
    """The ``surgeries`` argument of a surgical agent as surgery objects: ``None``, one spec or a list
    of them (keys, ``"key:p=v,..."`` strings, mappings, :class:`Surgery` objects)."""
    if surgeries is None:
        items: list[Any] = []
    elif isinstance(surgeries, (list, tuple)):
        items = list(surgeries)
    else:
        items = [surgeries]
    for item in items:
        if isinstance(item, type):
            raise ParameterError(
                f"surgeries: got the class {item.__name__}; pass an instance ({item.__name__}(...)) "
                "or a spec string such as 'key:param=value'"
            )
    return [s if isinstance(s, Surgery) else catalog.create(s) for s in items]


class SurgicalAgentMeta(ABCMeta):
    """The metaclass of the surgical agents: ``SurgicalPPO(ppo_model)`` (a plain SB3 model in place of
    ``policy``) converts the model (:meth:`SurgicalMixin.from_model`) instead of building an agent;
    any other call builds one with SB3's arguments, as the class's ``__init__`` documents."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        policy = args[0] if args else kwargs.get("policy")
        if isinstance(policy, BaseAlgorithm):
            return cls._from_model_call(*args, **kwargs)  # type: ignore[attr-defined]
        return super().__call__(*args, **kwargs)

    @property
    def __signature__(cls) -> inspect.Signature:  # help() and IDEs show __init__'s, not __call__'s
        signature = inspect.signature(cls.__init__)  # type: ignore[misc]
        return signature.replace(parameters=list(signature.parameters.values())[1:])


class SurgicalMixin(metaclass=SurgicalAgentMeta):
    """Mixed into SB3 algorithm subclasses: surgeries, provenance and the stage pipeline.

    The subclass defines ``algorithm_family`` (what surgeries check they support) and
    ``STAGES`` (its stage definitions).
    """

    algorithm_family: ClassVar[str] = ""
    STAGES: ClassVar[tuple[Stage, ...]] = ()
    #: where the agent's policy keeps its networks (see :mod:`rlsurgery.nets.layout`)
    LAYOUT: ClassVar[NetworkLayout]

    surgery_log: list[dict[str, Any]]
    _surgeries: list[Surgery]
    _pipeline: StagePipeline

    def _init_surgeries(self, surgeries: Any, env: Any, verbose: int = 0) -> Any:
        """Parse the ``surgeries`` argument and check them against the env's spaces.

        Runs before SB3 builds anything. Returns the environment, made from its id if a
        string was given (SB3 would make the same one), so space errors name the surgery.
        """
        #: Gymnasium id of the training env when known (used by ``rlsurgery evaluate``)
        self.rls_env_id = env_id_of(env)
        #: recipe the agent was made from, and the env's keyword arguments, if any
        self.rls_recipe: str | None = None
        self.rls_env_kwargs: dict[str, Any] = {}
        #: which class wrote a saved zip (read by ``rls.load``)
        self.rlsurgery_algorithm = type(self).__name__
        objects = surgery_objects(surgeries)
        self._check_duplicates(objects)
        #: surgeries waiting for their ``at_step`` (logged as "scheduled" until applied)
        self._scheduled = [s for s in objects if s.at_step is not None]
        objects = [s for s in objects if s.at_step is None]
        self.surgery_log = [surgery_record(s, step=0) for s in objects] + [
            surgery_record(s, step=s.at_step, applied="scheduled")
            for s in self._scheduled  # type: ignore[arg-type]
        ]
        self._surgeries = objects
        #: True while a freshly constructed agent is being built (``after_build`` hooks run)
        self._rls_fresh = bool(objects)
        if env is not None and objects:
            env = maybe_make_env(env, verbose)
            for s in objects:
                s.check_spaces(env.observation_space, env.action_space)
        return env

    def _construct(self, arguments: dict[str, Any]) -> None:
        """The shared body of every surgical agent's ``__init__``: ``arguments`` are its ``locals()``
        (the SB3 parent's arguments plus ``surgeries``); the surgeries are parsed and checked against the
        env, the SB3 parent is initialised with the rest, and the model is built unless
        ``_init_setup_model`` is False (``load``)."""
        arguments = {k: v for k, v in arguments.items() if k not in ("self", "__class__")}
        surgeries = arguments.pop("surgeries")
        setup = arguments.pop("_init_setup_model")
        arguments["env"] = self._init_surgeries(surgeries, arguments["env"], arguments.get("verbose", 0))
        with self._sb3_input_errors():  # the SB3 class that follows the mixins in the MRO
            super().__init__(**arguments, _init_setup_model=False)  # type: ignore[call-arg]
        if setup:
            self._setup_model()

    @staticmethod
    def _check_duplicates(surgeries: Sequence[Surgery]) -> None:
        """Each key once; at most one surgery that chooses actions (intrinsic rewards stack)."""
        seen: set[str] = set()
        for s in surgeries:
            if s.key in seen:
                raise IncompatibleSurgeryError(
                    f"{s.key}: given twice; give each surgery once with all its parameters"
                )
            seen.add(s.key)
        keys = {s.key for s in surgeries}
        for s in surgeries:
            clash = [k for k in s.conflicts if k in keys]
            if clash:
                raise IncompatibleSurgeryError(
                    f"{s.key}: does not compose with {', '.join(clash)}"
                    + (f" ({s.conflict_reason})" if s.conflict_reason else "")
                )
        selecting = [s.key for s in surgeries if s.selects_actions]
        if len(selecting) > 1:
            raise IncompatibleSurgeryError(
                f"{selecting[0]} and {selecting[1]} both choose how the agent explores (action "
                "selection); keep one of them (intrinsic-reward surgeries such as curiosity_driven "
                "or ucb_bonus with c=0 stack with any)"
            )

    def _prepare_surgeries(self) -> None:
        """Validate the surgeries and build the stage pipeline.

        On a fresh agent the surgery objects given to the constructor are used (custom,
        unregistered surgeries included); on ``load`` they are rebuilt from the log, which
        needs their keys to be registered in the catalog.
        """
        all_records = getattr(self, "surgery_log", None) or []
        records = [r for r in all_records if r["applied"] != "scheduled"]
        current = getattr(self, "_surgeries", None) or []
        if [s.key for s in current] != [r["key"] for r in records]:
            self._surgeries = [catalog.create({"key": r["key"], **r["params"]}) for r in records]
        pending = [r for r in all_records if r["applied"] == "scheduled"]
        if len(pending) != len(getattr(self, "_scheduled", None) or []):  # e.g. on load
            self._scheduled = [
                catalog.create({"key": r["key"], **r["params"], "at_step": r["step"]}) for r in pending
            ]
        # a key may come back in later operations (widen twice); at build time each key comes once
        self._check_duplicates(
            [s for s, r in zip(self._surgeries, records) if r["applied"] == "build"]
            if records
            else self._surgeries
        )
        for s in self._surgeries:
            s.validate(self)  # type: ignore[arg-type]
        self._pipeline = StagePipeline(
            type(self).__name__, self.STAGES, self._surgeries, family=self.algorithm_family
        )
        #: modules owned by surgeries (intrinsic-reward models, visit counts), saved with the model
        self.rls_modules = th.nn.ModuleDict()
        #: (order, hook) run before every optimizer step, and learning-rate factors (nets.step_hooks)
        self._rls_step_hooks: list[Any] = []
        self._rls_lr_factors: list[Any] = []
        #: values of the auxiliary loss terms since the last log dump, by name
        self._aux_values: dict[str, list[float]] = {}

    # ------------------------------------------------------------------ losses and optimizer steps
    def _with_aux_losses(self, role: str, batch: Any, loss: th.Tensor) -> th.Tensor:
        """``loss`` plus the ``aux_loss`` terms that the surgeries give for ``role`` (see
        :class:`~rlsurgery.core.surgery.Surgery`); each term's value is kept for ``train/aux/<name>``."""
        for surgery in self._pipeline.fillers("aux_loss"):
            terms = surgery.aux_loss(self, role, batch)  # type: ignore[attr-defined]
            if terms is None:
                continue
            if isinstance(terms, th.Tensor):
                terms = {surgery.key: terms}
            for name, term in terms.items():
                loss = loss + term
                self._aux_values.setdefault(name, []).append(float(term.detach()))
        return loss

    def _record_aux_losses(self) -> None:
        """Log the mean of each auxiliary term over this ``train()`` call as ``train/aux/<name>``."""
        for name, values in self._aux_values.items():
            if values:
                self.logger.record(f"train/aux/{name}", float(np.mean(values)))  # type: ignore[attr-defined]
        self._aux_values = {}

    def _optimizer_step(
        self,
        role: str,
        optimizer: th.optim.Optimizer,
        batch: Any,
        loss: th.Tensor,
        clip: tuple[Any, float] | None = None,
        no_grad: Sequence[th.Tensor] = (),
    ) -> None:
        """One gradient step of the optimizer of ``role`` on ``loss``, as SB3 takes it: zero the
        gradients, backward, drop the gradients of ``no_grad`` (TRPO's actor in its value step),
        clip the norm of ``clip = (parameters, max_norm)``, the ``before_step`` stage, step.

        The step is torch's multi-tensor one where that gives the same parameters bit for bit
        (:func:`~rlsurgery.nets.optim.prefer_foreach`)."""
        prefer_foreach(optimizer)
        optimizer.zero_grad()
        loss.backward()
        for parameter in no_grad:
            parameter.grad = None
        if clip is not None:
            th.nn.utils.clip_grad_norm_(clip[0], clip[1])
        self._pipeline.run_all("before_step", self, role, batch, loss)
        optimizer.step()

    def clip_norm(self, role: str) -> float | None:
        """The gradient-norm bound the update of ``role`` applies (SB3's ``max_grad_norm``), or None."""
        return getattr(self, "max_grad_norm", None)

    def step_loss(self, role: str, batch: Any) -> th.Tensor:
        """The loss that the optimizer of ``role`` minimises, on ``batch`` (already augmented, left as
        it was), at the current parameters: SAM evaluates it at perturbed parameters, the loss probes
        sweep it. Agents define :meth:`_role_loss`."""
        return self._role_loss(role, dataclasses.replace(batch))

    def _role_loss(self, role: str, batch: Any) -> th.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not define its losses by role")

    # ------------------------------------------------------------------ environment wrappers
    def _wrap_with_surgeries(self, env: Any) -> Any:
        """Wrap the training VecEnv with the wrappers of the surgeries (intrinsic rewards).

        Wrappers a previous agent put around ``env`` are peeled off first, so an env handed
        from one agent to another is never wrapped twice.
        """
        if env is None:
            return None
        env = unwrap_surgery_wrappers(env)
        for surgery in self._surgeries:
            wrap = getattr(surgery, "wrap_env", None)
            if wrap is not None:
                env = wrap(self, env)
        return env

    def set_env(self, env: Any, force_reset: bool = True) -> None:
        """Set a new training env (see SB3's ``set_env``), wrapped by the surgeries' wrappers."""
        super().set_env(env, force_reset=force_reset)  # type: ignore[misc]
        self.env = self._wrap_with_surgeries(self.env)
        last_obs = getattr(self, "_last_obs", None)
        if not force_reset and last_obs is not None:  # training goes on from the last observation
            for wrapper in surgery_wrappers(self.env):
                wrapper.continue_from(last_obs)

    def _update_current_progress_remaining(self, num_timesteps: int, total_timesteps: int) -> None:
        """SB3's progress (1 → 0 over a ``learn`` call, which schedules read), or, after a task switch
        (``rls_schedule_start``, :func:`rlsurgery.runtime.tasks.switch_task`), progress over the task's
        own steps: 1 − (t − t_switch) / (T − t_switch)."""
        start = getattr(self, "rls_schedule_start", None)
        if start is None:
            super()._update_current_progress_remaining(num_timesteps, total_timesteps)  # type: ignore[misc]
            return
        span = max(float(total_timesteps - start), 1.0)
        self._current_progress_remaining = 1.0 - float(num_timesteps - start) / span

    def dump_logs(self, *args: Any) -> None:
        """SB3's logs, plus what the surgeries' env wrappers collected (e.g. the mean intrinsic
        bonus and its coefficient: ``rollout/intrinsic_<surgery>``, ``rollout/intrinsic_<surgery>_coef``)."""
        for wrapper in surgery_wrappers(getattr(self, "env", None)):
            for name, value in wrapper.pop_statistics().items():
                suffix = f"_{name}" if name else ""
                self.logger.record(f"rollout/{wrapper.log_prefix}_{wrapper.name}{suffix}", value)  # type: ignore[attr-defined]
        super().dump_logs(*args)  # type: ignore[misc]

    def _init_callback(self, callback: Any, progress_bar: bool = False) -> Any:
        """SB3's callback set-up, with the callbacks of the surgeries that act during training
        (a surgery's ``callback(agent)``, e.g. a pruning schedule) run after the user's."""
        extra = [
            cb for s in self._surgeries if (cb := getattr(s, "callback", lambda _a: None)(self)) is not None
        ]
        if getattr(self, "_scheduled", None):
            extra.append(ScheduledSurgeries())
        if extra:
            callbacks = callback if isinstance(callback, list) else ([] if callback is None else [callback])
            callback = [*callbacks, *extra]
        return super()._init_callback(callback, progress_bar)  # type: ignore[misc]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, tensors = super()._get_torch_save_params()  # type: ignore[misc]
        if len(getattr(self, "rls_modules", ())) > 0:
            state_dicts = [*state_dicts, *sb3_zip.RLSURGERY_STATE_DICTS]
        return state_dicts, tensors

    @contextlib.contextmanager
    def _sb3_input_errors(self) -> Iterator[None]:
        """Turn SB3's input assertions (e.g. an unsupported action space) into clear errors."""
        try:
            yield
        except AssertionError as exc:
            raise AgentBuildError(f"{type(self).__name__} cannot be built: {exc}") from None

    @property
    def surgery_state(self) -> SurgeryStates:
        """Every surgery's state on this agent: key -> its ``State`` dataclass (saved with the model)."""
        return states_of(self)

    @property
    def surgeries(self) -> list[Surgery]:
        """The surgery objects applied to this agent, in the order given."""
        return list(self._surgeries)

    def _surgery_excluded_save_params(self) -> list[str]:
        return [
            "_surgeries",
            "_pipeline",
            "rls_modules",
            "_rls_fresh",
            "_scheduled",
            "_rls_step_hooks",
            "_aux_values",
            "_forward_hook_handles",
            "surgery_state",
            "_rls_lr_factors",
            "rls_saved_path",  # where operate_file(zoo_layout=True) saved it, for the command line
            "_rls_params_to_save",
            "_rls_full_params",
            *self.LAYOUT.bn_stats,  # aliases of the networks' BatchNorm buffers, rebuilt on load
        ]

    # ------------------------------------------------------------------ shared SB3 overrides
    def _setup_model(self) -> None:
        """Surgeries validated and configured, SB3 builds the model, network surgeries applied
        (in ``build_order``), the training env wrapped by the surgeries' wrappers."""
        self._prepare_surgeries()
        # seed before configure builds surgery-owned models (SB3 seeds again, with the same
        # seed, when it builds the policy, so a no-surgery agent is unchanged)
        self.set_random_seed(self.seed)  # type: ignore[attr-defined]
        for surgery in self._surgeries:
            surgery.configure(self)  # type: ignore[arg-type]
        self._build_sb3_model()
        for surgery in self._network_order():
            surgery.modify_networks(self)  # type: ignore[arg-type]
        self._after_network_surgery()
        reattach_forward_hooks(self)  # on load: the recorded hooks (and their modules) before the weights
        self.env = self._wrap_with_surgeries(self.env)
        if getattr(self, "_rls_fresh", False):  # not on load: the saved weights already hold it
            self._rls_fresh = False
            for surgery in self._surgeries:
                surgery.after_build(self)  # type: ignore[arg-type]

    def _network_order(self) -> list[Surgery]:
        """Build-time surgeries in ``build_order``, then those applied later (operate, at_step) in the
        order they were applied, so that ``load`` rebuilds the architecture the way it was made."""
        records = [r for r in getattr(self, "surgery_log", None) or [] if r["applied"] != "scheduled"]
        later = {i for i, r in enumerate(records) if r["applied"] != "build"}
        built = [s for i, s in enumerate(self._surgeries) if i not in later]
        return sorted(built, key=lambda s: s.build_order) + [self._surgeries[i] for i in sorted(later)]

    def _build_sb3_model(self) -> None:
        """The SB3 parent's ``_setup_model`` (agents adjust its inputs by overriding this)."""
        super()._setup_model()  # type: ignore[misc]

    def _after_network_surgery(self) -> None:
        """Refresh what depends on the networks after network surgeries: aliases, BatchNorm statistics."""
        from stable_baselines3.common.utils import get_parameters_by_name

        if hasattr(self, "_create_aliases"):
            self._create_aliases()
        for attribute, path in self.LAYOUT.bn_stats.items():
            module = resolve(self.policy, path)  # type: ignore[attr-defined]
            setattr(self, attribute, get_parameters_by_name(module, ["running_"]))

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), *self._surgery_excluded_save_params()]  # type: ignore[misc]

    def save(self, path: Any, exclude: Any = None, include: Any = None) -> None:
        """Save the model (see SB3's ``save``), every surgery's state included, as plain data, and a
        plain-data copy of every entry SB3 pickles, so that :meth:`load` needs no unpickling.

        Where the networks are SB3's own (pruned, sparse, re-initialised, ...), the ``*.pth`` state
        dicts hold them under SB3's names (masks multiplied in), so plain SB3's ``load`` opens the zip;
        what rlsurgery restores besides goes to a zip entry SB3 skips (:mod:`rlsurgery.agents.sb3_zip`).
        """
        plan = sb3_zip.plan_save(self, super().get_parameters())  # type: ignore[misc]
        self.__dict__[SAVED_ATTRIBUTE] = states_of(self).to_data()
        self.__dict__[sb3_zip.RECORD_KEY] = plan.record
        self.__dict__[PLAIN_DATA_KEY] = plain_data_record(self._saved_entries(exclude, include))
        if plan.guard is not None:  # after the plain copy: rlsurgery never reads it
            self.__dict__[PLAIN_LOAD_GUARD_KEY] = plan.guard
        self.__dict__["_rls_params_to_save"] = plan.params
        added = [SAVED_ATTRIBUTE, sb3_zip.RECORD_KEY, PLAIN_DATA_KEY, PLAIN_LOAD_GUARD_KEY]
        added.append("_rls_params_to_save")
        kept = {key: self.__dict__[key] for key in plan.data if key in self.__dict__}
        self.__dict__.update(plan.data)  # SB3's classes in data, after the plain copy kept ours
        try:
            if plan.extras and not isinstance(path, (str, Path)):  # a file object: extras appended after
                buffer = io.BytesIO()
                super().save(buffer, exclude=exclude, include=include)  # type: ignore[misc]
                sb3_zip.write_extras(buffer, plan.extras)
                path.write(buffer.getvalue())
            else:
                super().save(path, exclude=exclude, include=include)  # type: ignore[misc]
                sb3_zip.write_extras(path, plan.extras)
        finally:
            for key in added:
                self.__dict__.pop(key, None)
            for key in plan.data:  # the model's own entries back (none added)
                if key in kept:
                    self.__dict__[key] = kept[key]
                else:
                    self.__dict__.pop(key, None)

    def get_parameters(self) -> dict[str, dict[str, Any]]:
        """The state dicts of the model (see SB3's ``get_parameters``); while saving, the ones written."""
        saving = self.__dict__.get("_rls_params_to_save")
        return dict(saving) if saving is not None else super().get_parameters()  # type: ignore[misc]

    def set_parameters(self, load_path_or_dict: Any, exact_match: bool = True, device: Any = "auto") -> None:
        """Load parameters (see SB3's ``set_parameters``): from a zip, or the state dicts of one, whose
        SB3-form state dicts get back what rlsurgery keeps beside them (masks, ``weight_orig``, ...)."""
        extras = self.__dict__.pop("_rls_full_params", None)
        for key in (sb3_zip.RECORD_KEY, PLAIN_LOAD_GUARD_KEY):  # read from the loaded data; saves write anew
            self.__dict__.pop(key, None)
        if isinstance(load_path_or_dict, dict):
            params = load_path_or_dict
        else:
            from stable_baselines3.common.save_util import load_from_zip_file

            _, params, _ = load_from_zip_file(load_path_or_dict, device=device, load_data=False)
            extras = sb3_zip.read_extras(load_path_or_dict)
        full = sb3_zip.full_params(params, extras)
        try:
            super().set_parameters(full, exact_match=exact_match, device=device)  # type: ignore[misc]
        except ValueError as exc:  # a kept optimizer state that fits no optimizer of this agent
            sb3_form = {k: params[k] if "optimizer" in k and k in params else v for k, v in full.items()}
            if all(sb3_form[k] is full[k] for k in full):
                raise
            warnings.warn(
                f"the saved optimizer state does not fit this agent's optimizer ({exc}); "
                "its SB3-form state is used instead",
                stacklevel=2,
            )
            super().set_parameters(sb3_form, exact_match=exact_match, device=device)  # type: ignore[misc]

    def _saved_entries(self, exclude: Any, include: Any) -> dict[str, Any]:
        """The attributes SB3's ``save`` writes to ``data`` (the same exclusions, in the same way)."""
        excluded = set(exclude or ()).union(self._excluded_save_params())
        if include is not None:
            excluded = excluded.difference(include)
        state_dicts, tensors = self._get_torch_save_params()
        excluded.update(name.split(".")[0] for name in [*state_dicts, *tensors])
        return {k: v for k, v in self.__dict__.items() if k not in excluded}

    @classmethod
    def _from_model_call(
        cls, policy: BaseAlgorithm, env: Any = None, *others: Any, surgeries: Any = None, **named: Any
    ) -> Any:
        """``Cls(model, env=None, surgeries=None)``: ``model`` converted (:meth:`from_model`), on ``env``
        if given, then each surgery applied to it as ``rls.operate`` applies it."""
        given = [f"argument {i + 3}" for i in range(len(others))] + sorted(named)
        if given:
            raise ParameterError(
                f"{cls.__name__}(model, ...): the model brings its own settings; only env and surgeries "
                f"go with it (got {', '.join(given)}); set the others on the model"
            )
        objects = surgery_objects(surgeries)
        for surgery in objects:  # all checked before anything is converted
            if not surgery.can_operate():
                raise IncompatibleSurgeryError(
                    f"{surgery.key}: cannot be applied to an existing model, only when an agent is built "
                    f"({cls.__name__}('MlpPolicy', env, surgeries=[...]))"
                )
        agent = cls.from_model(policy, env=env)
        for surgery in objects:
            agent = surgery.operate(agent)
        return agent

    @classmethod
    def from_model(cls, model: Any, env: Any = None) -> Any:
        """This surgical agent made from ``model``, a plain SB3 model of the parent algorithm, with
        its weights, optimizer state, counters, last observation, env and (the same) replay buffer;
        SB3's standard policies become this class's policies of the same name (same parameters).
        ``rls.surgical(model)`` picks the class; ``Cls(model)`` calls this.

        :param model: the plain SB3 model (left as it was; its replay buffer is shared)
        :param env: the environment of the result (default: ``model``'s)

        :raises IncompatibleSurgeryError: ``model`` is not of this class's SB3 algorithm
        """
        parent = cls.__bases__[-1]
        if not isinstance(model, parent):
            raise IncompatibleSurgeryError(
                f"{cls.__name__}.from_model: needs a {parent.__name__}, got a {type(model).__name__}"
            )
        custom: dict[str, Any] = {}
        for name, policy in type(model).policy_aliases.items():
            if type(model.policy) is policy and name in cls.policy_aliases:
                custom["policy_class"] = cls.policy_aliases[name]
        with tempfile.TemporaryDirectory(prefix="rlsurgery-convert-") as folder:
            path = Path(folder) / "model.zip"
            model.save(path)
            converted = cls.load(
                path,
                env=model.get_env() if env is None else env,
                device=model.device,
                custom_objects=custom,
                trust=True,
                force_reset=False,
            )
        replay = getattr(model, "replay_buffer", None)
        if replay is not None:
            converted.replay_buffer = replay
        return converted

    @classmethod
    def load(  # type: ignore[override]
        cls,
        path: Any,
        env: Any = None,
        device: Any = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        trust: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Load a model saved by this class (see SB3's ``load``), its surgeries replayed from the log.

        Nothing in the file is unpickled: every entry SB3 would unpickle is rebuilt from the plain
        copy rlsurgery saved beside it (or taken from ``custom_objects``); parameters are read with
        ``torch.load(weights_only=True)``. A zip without that copy (plain SB3, older rlsurgery) is
        refused, since unpickling can run code from the file, unless ``trust=True``.

        :param path: the model zip
        :param env: environment to attach (optional for prediction)
        :param device: ``"auto"``, ``"cpu"`` or ``"cuda"``
        :param custom_objects: objects that replace entries of the saved data (as in SB3)
        :param print_system_info: print the system info the model was saved with
        :param force_reset: reset the env before training goes on
        :param trust: unpickle what the file holds, as SB3 does (only for files you trust)
        :param kwargs: attributes to set on the loaded model
        """
        extras = sb3_zip.read_extras(path)  # set on the model before its parameters (set_parameters)
        return load_without_unpickling(
            super().load,  # type: ignore[misc]
            path,
            trust=trust,
            custom_objects=custom_objects,
            env=env,
            device=device,
            print_system_info=print_system_info,
            force_reset=force_reset,
            **({"_rls_full_params": extras} if extras else {}),
            **kwargs,
        )

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Action for ``observation`` through the ``act`` stage (default: the SB3 parent's
        ``predict``, e.g. DQN's ε-greedy or a sample of PPO's policy).

        :param observation: the input observation
        :param state: recurrent state (unused)
        :param episode_start: episode starts (unused)
        :param deterministic: greedy / the distribution's mode instead of exploring
        :return: the action and the next state
        """
        pipeline = self._pipeline
        owner = pipeline.owner("act") if "act" in pipeline.stages else None
        if owner is None:
            return super().predict(observation, state, episode_start, deterministic)  # type: ignore[misc]
        return owner.act(self, observation, state, episode_start, deterministic)  # type: ignore[attr-defined]
