"""The search space of ``rlsurgery tune``: a recipe's hyperparameters, surgery parameters, and which
surgeries are switched on, read from YAML and checked before any trial runs.

A space file::

    hyperparams:
      learning_rate: {low: 1.0e-5, high: 1.0e-2, log: true}   # float range (log-uniform)
      batch_size: {choices: [32, 64, 128]}                    # categorical
      target_update_interval: {low: 100, high: 1000, step: 100}  # int range (int ends)
      gamma: 0.99                                             # a fixed value
    surgeries:                                                # added to the recipe's surgeries
      prioritized_replay:
        alpha: {low: 0.2, high: 1.0}
        beta: 0.4
      double_q_learning: {}
    switch: [prioritized_replay, double_q_learning]           # each subset of these is a choice
    architecture:                                             # the networks' shape (lists of choices)
      depth: [1, 2, 3]                                        # hidden layers: net_arch = [width] * depth
      width: [32, 64, 128]
      activation: [default, tanh, relu]                       # activation_replacement:to=… (default: none)
      normalization: [none, layer_normalization]              # a normalization surgery, or none
      skip: [false, true]                                     # skip_connection_addition
      dropout: [0.0, 0.1]                                     # dropout:p=… (0: none)
      cell: [linear_relu, linear_tanh, identity, zero]        # cell_based_nas: each of 3 edges picks one
      repeats: [1, 2]                                         # cells stacked after the first hidden layer

A dimension is a mapping with ``low`` and ``high`` (floats, or ints for an integer range; ``log``,
``step``) or with ``choices``; anything else is a fixed value. ``switch`` names surgeries of
``surgeries`` (or keys without parameters) that the search turns on and off: one categorical over
the 2^n subsets, ``"none"`` or the keys joined with ``+``; the surgeries not in ``switch`` are always
on. Every end of every range and every choice is validated against the recipe's algorithm and the
surgeries' parameter dataclasses, so a bad space fails with the file and line before any training.

``architecture`` choices become the networks' ``policy_kwargs`` ``net_arch`` (merged into the
recipe's own ``policy_kwargs`` for the env) and the network surgeries above, added to the trial's;
every sampler searches them, and ``evolutionary_nas`` mutates one of them at a time.

Optuna's parameter names: ``hp.NAME`` for hyperparameters, ``KEY.PARAM`` for surgery parameters,
``switch`` for the subset, ``arch.NAME`` for the architecture.
A tune file (``rlsurgery tune TUNE.yaml``) is a space file that also gives
the tune's settings (``recipe``, ``env``, ``sampler`` …: :data:`rlsurgery.tune.tuner.TUNE_FILE_KEYS`).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlsurgery import catalog
from rlsurgery.core.errors import StudyError, SurgeryError
from rlsurgery.core.spec import SurgerySpec
from rlsurgery.core.yamlfile import check_keys, read_yaml
from rlsurgery.hyperparams import hyperparam_problem
from rlsurgery.recipes import load_recipe

SPACE_KEYS = ("hyperparams", "surgeries", "switch", "architecture")
#: the architecture choices of a space, and the surgery each adds
ARCHITECTURE_KEYS = ("depth", "width", "activation", "normalization", "skip", "dropout", "cell", "repeats")
#: the edges of the searched cell (cell_based_nas with 2 nodes)
CELL_EDGES = 3
#: the network surgeries that the architecture choices add
ARCHITECTURE_SURGERIES = ("activation_replacement", "skip_connection_addition", "dropout", "cell_based_nas")
RANGE_KEYS = ("low", "high", "log", "step")
#: the name of the subset choice among Optuna's parameters
SWITCH = "switch"
#: how an empty subset is written
NO_SURGERY = "none"


class TuneError(StudyError):
    """A search space or tuning setting that cannot be used (raised before any trial)."""


@dataclass(frozen=True)
class Dimension:
    """One searched value: a float or int range (``low``, ``high``, ``log``, ``step``) or ``choices``."""

    name: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    @property
    def is_int(self) -> bool:
        return not self.choices and isinstance(self.low, int) and isinstance(self.high, int)

    def ends(self) -> list[Any]:
        """The values validation tries: both ends of a range, every choice."""
        return list(self.choices) if self.choices else [self.low, self.high]

    def suggest(self, trial: Any) -> Any:
        """This dimension's value for an Optuna ``trial``."""
        if self.choices:
            return decode_choice(
                trial.suggest_categorical(self.name, [encode_choice(c) for c in self.choices])
            )
        if self.is_int:
            return trial.suggest_int(self.name, self.low, self.high, step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def grid(self) -> list[Any]:
        """Every value of the dimension, for grid search (a float range needs a ``step``)."""
        if self.choices:
            return [encode_choice(c) for c in self.choices]
        if self.is_int:
            return list(range(self.low, self.high + 1, int(self.step or 1)))
        if self.step is None:
            raise TuneError(f"{self.name}: grid search needs 'choices' or a 'step' for a float range")
        count = round((self.high - self.low) / self.step) + 1
        return [
            float(v) for v in np.round(self.low + self.step * np.arange(count), 12) if v <= self.high + 1e-12
        ]


def encode_choice(value: Any) -> Any:
    """A choice as Optuna stores it: None, bool, int, float and str as they are, lists and mappings
    (``net_arch: [64, 64]``) as their JSON text."""
    return (
        value if value is None or isinstance(value, bool | int | float | str) else "json:" + json.dumps(value)
    )


def decode_choice(value: Any) -> Any:
    """The value :func:`encode_choice` encoded."""
    return json.loads(value[5:]) if isinstance(value, str) and value.startswith("json:") else value


@dataclass
class Config:
    """One point of the space: the hyperparameters and the surgeries (specs) of a trial."""

    hyperparams: dict[str, Any] = field(default_factory=dict)
    surgeries: list[SurgerySpec] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    """recipe surgeries the switch turned off"""

    def as_dict(self) -> dict[str, Any]:
        return {
            "hyperparams": dict(self.hyperparams),
            "surgeries": [{"key": s.key, **s.params} for s in self.surgeries],
            "remove": list(self.remove),
        }


@dataclass
class SearchSpace:
    """Fixed values and dimensions of the hyperparameters and surgery parameters, and the switch."""

    hyperparams: dict[str, Any] = field(default_factory=dict)
    surgeries: dict[str, dict[str, Any]] = field(default_factory=dict)
    switch: list[str] = field(default_factory=list)
    recipe_keys: set[str] = field(default_factory=set)
    """the recipe's own surgeries: one in ``switch`` that is off is removed from the recipe"""
    architecture: dict[str, Dimension] = field(default_factory=dict)
    """the architecture choices (``arch.depth`` …), each a :class:`Dimension` of choices"""
    base_policy_kwargs: dict[str, Any] = field(default_factory=dict)
    """the recipe's ``policy_kwargs`` for the env, which an architecture's ``net_arch`` goes into"""

    def dimensions(self) -> list[Dimension]:
        found = [v for v in self.hyperparams.values() if isinstance(v, Dimension)]
        for params in self.surgeries.values():
            found += [v for v in params.values() if isinstance(v, Dimension)]
        return found + list(self.architecture.values())

    def subsets(self) -> list[str]:
        """The switch's choices: every subset of ``switch``, as ``a+b`` (``none`` for the empty one)."""
        names = []
        for size in range(len(self.switch) + 1):
            names += ["+".join(c) or NO_SURGERY for c in itertools.combinations(self.switch, size)]
        return names

    def suggest(self, trial: Any) -> Config:
        """The trial's configuration: each dimension suggested, switched-off surgeries left out."""
        on = set(self.switch)
        if self.switch:
            chosen = trial.suggest_categorical(SWITCH, self.subsets())
            on = set() if chosen == NO_SURGERY else set(chosen.split("+"))
        hyperparams = {
            k: v.suggest(trial) if isinstance(v, Dimension) else v for k, v in self.hyperparams.items()
        }
        specs = []
        for key, params in self.surgeries.items():
            if key in self.switch and key not in on:
                continue  # its parameters are not suggested: Optuna's samplers handle the conditional space
            specs.append(
                SurgerySpec(
                    key, {p: v.suggest(trial) if isinstance(v, Dimension) else v for p, v in params.items()}
                )
            )
        off = [k for k in self.switch if k not in on and k in self.recipe_keys]  # the recipe's own, removed
        if self.architecture:
            chosen_arch = {name.split(".", 1)[1]: d.suggest(trial) for name, d in self.architecture.items()}
            net_arch, arch_specs = architecture_changes(chosen_arch)
            specs += arch_specs
            if net_arch is not None:
                fixed = hyperparams.get("policy_kwargs", self.base_policy_kwargs)
                hyperparams["policy_kwargs"] = {**(fixed or {}), "net_arch": net_arch}
        return Config(hyperparams, specs, off)

    def grid(self) -> dict[str, list[Any]]:
        """Optuna's ``GridSampler`` search space: every dimension's values, and the switch's subsets."""
        space = {d.name: d.grid() for d in self.dimensions()}
        if self.switch:
            space[SWITCH] = self.subsets()
        return space

    def grid_size(self) -> int:
        return int(np.prod([len(v) for v in self.grid().values()])) if self.grid() else 1


def architecture_changes(choices: dict[str, Any]) -> tuple[list[int] | None, list[SurgerySpec]]:
    """An architecture's ``net_arch`` (None: the recipe's) and the network surgeries it adds.

    >>> arch = {"depth": 2, "width": 64, "activation": "tanh", "dropout": 0.1}
    >>> net_arch, specs = architecture_changes(arch)
    >>> net_arch, [(s.key, s.params) for s in specs]
    ([64, 64], [('activation_replacement', {'to': 'tanh'}), ('dropout', {'p': 0.1})])
    """
    net_arch = None
    if "depth" in choices or "width" in choices:
        net_arch = [int(choices["width"])] * int(choices["depth"])
    specs = []
    if choices.get("activation", "default") != "default":
        specs.append(SurgerySpec("activation_replacement", {"to": choices["activation"]}))
    if choices.get("normalization", "none") != "none":
        specs.append(SurgerySpec(choices["normalization"]))
    if choices.get("skip"):
        specs.append(SurgerySpec("skip_connection_addition"))
    if choices.get("dropout"):
        specs.append(SurgerySpec("dropout", {"p": float(choices["dropout"])}))
    if f"cell_{CELL_EDGES - 1}" in choices:
        operations = [choices[f"cell_{e}"] for e in range(CELL_EDGES)]
        specs.append(
            SurgerySpec(
                "cell_based_nas",
                {"operations": operations, "nodes": 2, "repeats": int(choices.get("repeats", 1))},
            )
        )
    return net_arch, specs


def _architecture(raw: Any, surgeries: dict[str, Any], hyperparams: dict[str, Any], fail: Any) -> dict:
    """The ``architecture`` section as ``arch.NAME`` choice dimensions, every choice checked."""
    if not isinstance(raw, dict) or not raw:
        raise fail(
            f"'architecture' must map some of {', '.join(ARCHITECTURE_KEYS)} to lists of choices",
            "architecture",
        )
    check_keys(raw, ARCHITECTURE_KEYS, fail, "architecture")
    if ("depth" in raw) != ("width" in raw):
        raise fail(
            "architecture: give 'depth' and 'width' together (net_arch = [width] * depth)", "architecture"
        )
    fixed_arch = (
        isinstance(hyperparams.get("policy_kwargs"), dict) and "net_arch" in hyperparams["policy_kwargs"]
    )
    if "depth" in raw and fixed_arch:
        raise fail(
            "architecture: depth and width replace hyperparams policy_kwargs net_arch; keep one",
            "architecture",
        )
    if "repeats" in raw and "cell" not in raw:
        raise fail(
            "architecture: 'repeats' counts cells; give 'cell' (its candidate operations) too", "architecture"
        )
    dims = {}
    for name, choices in raw.items():
        if not isinstance(choices, list) or not choices:
            raise fail(f"architecture: {name} must be a non-empty list of choices", "architecture", name)
        if name in ("cell", "repeats"):
            dims.update(_cell_dimensions(name, choices, surgeries, fail))
            continue
        for i, value in enumerate(choices):
            if name in ("depth", "width") and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise fail(
                    f"architecture: {name} choices must be positive integers (got {value!r})",
                    "architecture",
                    name,
                    i,
                )
            if name == "skip" and not isinstance(value, bool):
                raise fail(
                    f"architecture: skip choices must be true or false (got {value!r})",
                    "architecture",
                    name,
                    i,
                )
            if name == "normalization" and value != "none":
                try:
                    entry = catalog.get(value) if isinstance(value, str) else None
                except SurgeryError:
                    entry = None
                if entry is None or 12 not in entry.sections:
                    raise fail(
                        f"architecture: {value!r} is not a normalization key (or none)",
                        "architecture",
                        name,
                        i,
                    )
            _, specs = architecture_changes({name: value}) if name not in ("depth", "width") else (None, [])
            for spec in specs:
                if spec.key in surgeries:
                    raise fail(
                        f"architecture: {name} adds {spec.key}, which 'surgeries' also gives; keep one",
                        "architecture",
                        name,
                    )
                try:
                    catalog.create(spec)
                except SurgeryError as exc:
                    raise fail(f"architecture: {name}: {exc}", "architecture", name, i) from None
        dims[f"arch.{name}"] = Dimension(f"arch.{name}", choices=tuple(choices))
    return dims


def _cell_dimensions(name: str, choices: list, surgeries: dict[str, Any], fail: Any) -> dict[str, Dimension]:
    """``cell``: one choice among its candidates per edge of a 2-node cell; ``repeats``: the cells stacked."""
    from rlsurgery.nets.cells import OPERATIONS

    if "cell_based_nas" in surgeries:
        raise fail(
            "architecture: cell adds cell_based_nas, which 'surgeries' also gives; keep one",
            "architecture",
            name,
        )
    for i, value in enumerate(choices):
        if name == "cell" and value not in OPERATIONS:
            raise fail(
                f"architecture: cell: unknown operation {value!r} (known: {', '.join(OPERATIONS)})",
                "architecture",
                name,
                i,
            )
        if name == "repeats" and (
            isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16
        ):
            raise fail(
                f"architecture: repeats choices must be integers 1-16 (got {value!r})",
                "architecture",
                name,
                i,
            )
    if name == "repeats":
        return {"arch.repeats": Dimension("arch.repeats", choices=tuple(choices))}
    return {f"arch.cell_{e}": Dimension(f"arch.cell_{e}", choices=tuple(choices)) for e in range(CELL_EDGES)}


def _dimension(name: str, raw: Any, fail: Any, *where: Any) -> Any:
    """A :class:`Dimension` for a range or choices mapping, else the fixed value itself."""
    if not isinstance(raw, dict) or not ({"choices", "low", "high"} & set(raw)):
        return raw
    if "choices" in raw:
        check_keys(raw, ("choices",), fail, "dimension", *where)
        choices = raw["choices"]
        if not isinstance(choices, list) or not choices:
            raise fail(f"{name}: 'choices' must be a non-empty list", *where, "choices")
        return Dimension(name, choices=tuple(choices))
    check_keys(raw, RANGE_KEYS, fail, "range", *where)
    low, high = raw.get("low"), raw.get("high")
    for end, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail(
                f"{name}: '{end}' must be a number (got {value!r})", *where, *([end] if end in raw else [])
            )
    if not low < high:
        raise fail(f"{name}: 'low' must be below 'high' (got {low} and {high})", *where)
    log, step = bool(raw.get("log", False)), raw.get("step")
    if log and low <= 0:
        raise fail(f"{name}: a log range needs low > 0 (got {low})", *where, "low")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int | float) or step <= 0):
        raise fail(f"{name}: 'step' must be a positive number (got {step!r})", *where, "step")
    if log and step is not None:
        raise fail(f"{name}: a log range takes no 'step'", *where, "step")
    integer = isinstance(low, int) and isinstance(high, int) and (step is None or isinstance(step, int))
    if not integer:
        low, high = float(low), float(high)
    return Dimension(name, low, high, log, step)


def load_space(path: str | Path, recipe: str | Path, env_id: str | None = None) -> SearchSpace:
    """Read ``path`` and check it against ``recipe``'s algorithm and the surgeries' parameters; every
    problem names the file and line (:class:`TuneError`). With ``env_id``, each searched surgery is
    also applied alone to the recipe's agent for that env (built, not trained), so one that cannot
    act on it (a DQN-only surgery in a PPO recipe …) fails here and not in every trial."""
    path = Path(path)
    if not path.is_file():
        raise TuneError(f"search space file not found: {path}")
    data, fail = read_yaml(path, TuneError)
    if not isinstance(data, dict) or not data:
        raise fail("a search space must be a mapping with 'hyperparams' and/or 'surgeries' (and 'switch')")
    from rlsurgery.tune.tuner import TUNE_FILE_KEYS  # a tune file holds its settings beside the space

    check_keys(data, SPACE_KEYS + TUNE_FILE_KEYS, fail, "search space")
    algorithm = load_recipe(recipe).algorithm
    raw_hyper = data.get("hyperparams") or {}
    if not isinstance(raw_hyper, dict):
        raise fail("'hyperparams' must map hyperparameter names to values or ranges", "hyperparams")
    hyperparams = {}
    for name, raw in raw_hyper.items():
        value = _dimension(f"hp.{name}", raw, fail, "hyperparams", name)
        for sample in value.ends() if isinstance(value, Dimension) else [value]:
            problem = hyperparam_problem(algorithm, {name: sample})
            if problem is not None:
                raise fail(f"hyperparams: {problem.message}", "hyperparams", name)
        hyperparams[str(name)] = value
    raw_surgeries = data.get("surgeries") or {}
    if not isinstance(raw_surgeries, dict):
        raise fail("'surgeries' must map surgery keys to their parameters", "surgeries")
    surgeries: dict[str, dict[str, Any]] = {}
    for key, raw in raw_surgeries.items():
        raw = raw or {}
        if not isinstance(raw, dict):
            raise fail(f"{key}: the parameters must be a mapping", "surgeries", key)
        params = {p: _dimension(f"{key}.{p}", v, fail, "surgeries", key, p) for p, v in raw.items()}
        _check_surgery(str(key), params, fail)
        surgeries[str(key)] = params
    switch = data.get("switch") or []
    if not isinstance(switch, list) or not all(isinstance(k, str) for k in switch):
        raise fail("'switch' must be a list of surgery keys", "switch")
    for i, key in enumerate(switch):
        if switch.index(key) != i:
            raise fail(f"switch: {key} is listed twice", "switch", i)
        if key not in surgeries:
            try:
                catalog.create(SurgerySpec(key))
            except SurgeryError as exc:
                raise fail(f"switch: {exc}", "switch", i) from None
            surgeries[key] = {}
    recipe_keys = {spec.key for spec in load_recipe(recipe).base_specs()}
    architecture = (
        _architecture(data["architecture"], surgeries, hyperparams, fail) if "architecture" in data else {}
    )
    space = SearchSpace(hyperparams, surgeries, list(switch), recipe_keys, architecture)
    if not space.dimensions() and not space.switch:
        raise fail(
            "the space searches nothing: give at least one range, 'choices' list, 'switch' or 'architecture'"
        )
    if env_id is not None:
        _check_builds(space, recipe, env_id, fail)
    return space


def _check_builds(space: SearchSpace, recipe: str | Path, env_id: str, fail: Any) -> None:
    """Build the recipe's agent for ``env_id`` with each searched surgery alone (first values), and
    with the architecture's first choices."""
    resolved_recipe = load_recipe(recipe)
    defaults = resolved_recipe.resolve(env_id).kwargs
    small = {"buffer_size": 1_000} if "buffer_size" in defaults else {}
    small.update({k: v for k, v in space.hyperparams.items() if not isinstance(v, Dimension)})
    tries = []
    for key, params in space.surgeries.items():
        values = {p: v.ends()[0] if isinstance(v, Dimension) else v for p, v in params.items()}
        tries.append((("surgeries", key), key, [{"key": key, **values}], {}))
    if space.architecture:
        first = {name.split(".", 1)[1]: d.choices[0] for name, d in space.architecture.items()}
        net_arch, specs = architecture_changes(first)
        extra = (
            {}
            if net_arch is None
            else {
                "policy_kwargs": {
                    **(small.get("policy_kwargs", defaults.get("policy_kwargs")) or {}),
                    "net_arch": net_arch,
                }
            }
        )
        tries.append(
            (("architecture",), "the architecture", [{"key": s.key, **s.params} for s in specs], extra)
        )
    for where, key, surgeries, extra in tries:
        try:
            resolved = resolved_recipe.resolve(
                env_id, surgeries=surgeries, seed=0, device="cpu", verbose=0, **{**small, **extra}
            )
            env = resolved.make_env(seed=0)
            try:
                resolved.build(env=env)
            finally:
                env.close()
        except SurgeryError as exc:
            raise fail(
                f"{key} cannot be used with {resolved_recipe.name} on {env_id}: {exc}", *where
            ) from None


def _check_surgery(key: str, params: dict[str, Any], fail: Any) -> None:
    """Every range end and choice of the surgery's parameters, one at a time, through its dataclass."""
    fixed = {p: v for p, v in params.items() if not isinstance(v, Dimension)}
    tries = [(None, fixed)] + [
        (p, {**fixed, p: value}) for p, v in params.items() if isinstance(v, Dimension) for value in v.ends()
    ]
    for param, values in tries:
        try:
            catalog.create(SurgerySpec(key, values))
        except SurgeryError as exc:
            raise fail(str(exc), "surgeries", key, *([param] if param else [])) from None
