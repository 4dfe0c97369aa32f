"""Hyperparameters of the agents, checked against the algorithm's own parameters before anything is built.

Hyperparameters reach an agent's constructor from a recipe's ``defaults`` and per-env entries,
a study variant's ``hyperparams``, ``rls.make(recipe, env_id, **overrides)`` and
``rlsurgery train --hyperparams NAME:VALUE ...``. All of them go through
:func:`hyperparam_problem`, which says what is wrong with the first bad setting:

- a name that is not a parameter of the algorithm's constructor (read from its signature, so a
  parameter SB3 adds is known at once) gets "unknown hyperparameter ... did you mean";
- a value is checked against :data:`RULES`, the table of the constructor parameters of DQN,
  PPO, A2C, SAC, TD3 and TRPO (types and ranges, from SB3's docstrings), with
  :data:`ALGORITHM_RULES` where one algorithm reads a name differently (SAC's ``ent_coef``
  may be ``"auto"``); ``policy_kwargs`` entries are checked by name too.

Problems name the field and what it accepts, e.g. ``gamma: 2.5 is not a number in [0, 1]``.
A parameter of a signature that the table does not describe is passed through unchecked (a
test keeps the table complete for the installed SB3).

>>> from rlsurgery.agents import SurgicalDQN
>>> hyperparam_problem(SurgicalDQN, {"gamma": 2.5}).message
'gamma: 2.5 is not a number in [0, 1]'
>>> hyperparam_problem(SurgicalDQN, {"policy_kwargs": {"net_arch": "abc"}}).path
('policy_kwargs', 'net_arch')
>>> parse_hyperparams(["learning_rate:1e-3", 'policy_kwargs:dict(net_arch=[64, 64])'])
{'learning_rate': 0.001, 'policy_kwargs': {'net_arch': [64, 64]}}
"""

from __future__ import annotations

import ast
import difflib
import inspect
import math
import numbers
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch as th
import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer, RolloutBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import TrainFrequencyUnit

from rlsurgery.core.errors import ParameterError
from rlsurgery.core.params import MAX_N_STEP, MAX_WIDTH

#: settings of a recipe that describe the run rather than the agent's constructor
RUN_KEYS = ("n_timesteps", "n_envs", "policy", "env_kwargs", "surgeries")
#: constructor parameters that are not hyperparameters (given by rlsurgery itself)
NOT_HYPERPARAMS = ("self", "policy", "env", "surgeries", "_init_setup_model")

#: most parallel environments of one run (each is a Python env object, a process with subprocesses)
MAX_ENVS = 1024
#: most transitions a replay buffer may hold (SB3 allocates the whole buffer up front)
MAX_BUFFER_SIZE = 100_000_000


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Problem:
    """What is wrong with one setting: its key path, and a message naming it."""

    path: tuple[str, ...]
    message: str

    @property
    def name(self) -> str:
        """The top-level setting."""
        return self.path[0]


class Rule:
    """What one hyperparameter accepts: ``accepts(value)``, and ``allowed``, said in words."""

    def __init__(self, allowed: str, accepts: Callable[[Any], bool]) -> None:
        self.allowed = allowed
        self.accepts = accepts

    def problem(self, value: Any) -> tuple[tuple[str, ...], str] | None:
        """``None`` if ``value`` is acceptable, else (sub-path, "VALUE is not ALLOWED")."""
        if _safely(self.accepts, value):
            return None
        hint = ""
        if isinstance(value, str) and _looks_numeric(value):
            hint = " (a string: YAML reads 1e-3 as text, write 1.0e-3)"
        return (), f"{_show(value)} is not {self.allowed}{hint}"

    def convert(self, value: Any) -> Any:
        """The value the constructor gets (integral floats of integer parameters become ints)."""
        return value

    def __or__(self, other: Rule) -> Rule:
        return _Either(self, other)


def _safely(accepts: Callable[[Any], bool], value: Any) -> bool:
    try:
        return bool(accepts(value))
    except (TypeError, ValueError, AttributeError):
        return False


class _Either(Rule):
    def __init__(self, first: Rule, second: Rule) -> None:
        super().__init__(
            f"{first.allowed} or {second.allowed}",
            lambda v: _safely(first.accepts, v) or _safely(second.accepts, v),
        )
        self.first, self.second = first, second

    def convert(self, value: Any) -> Any:
        return self.first.convert(value) if _safely(self.first.accepts, value) else self.second.convert(value)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(float(value))


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Integral):
        return True
    return isinstance(value, float) and value.is_integer()


def _bounds_text(ge: Any, gt: Any, le: Any, lt: Any) -> str:
    if (ge is not None or gt is not None) and (le is not None or lt is not None):
        left = f"[{ge}" if ge is not None else f"({gt}"
        right = f"{le}]" if le is not None else f"{lt})"
        return f" in {left}, {right}"
    parts = [f"{op} {b}" for op, b in ((">=", ge), (">", gt), ("<=", le), ("<", lt)) if b is not None]
    return " " + " and ".join(parts) if parts else ""


def _within(value: float, ge: Any, gt: Any, le: Any, lt: Any) -> bool:
    return (
        (ge is None or value >= ge)
        and (gt is None or value > gt)
        and (le is None or value <= le)
        and (lt is None or value < lt)
    )


class Number(Rule):
    """A number (or an integer) within bounds."""

    def __init__(
        self, *, integer: bool = False, ge: Any = None, gt: Any = None, le: Any = None, lt: Any = None
    ) -> None:
        kind = "an integer" if integer else "a number"
        self.integer = integer

        def accepts(value: Any) -> bool:
            if not _is_number(value) or (integer and not _is_integer(value)):
                return False
            return _within(float(value), ge, gt, le, lt)

        super().__init__(kind + _bounds_text(ge, gt, le, lt), accepts)

    def convert(self, value: Any) -> Any:
        return int(value) if self.integer and isinstance(value, float) else value


def exactly(*choices: Any) -> Rule:
    """One of ``choices``."""
    return Rule(
        " or ".join(_show(c) for c in choices),
        lambda v: any(v == c and type(v) is type(c) for c in choices),
    )


def instance_of(kind: type | tuple[type, ...], allowed: str) -> Rule:
    """An instance of ``kind`` (bools are not numbers)."""
    return Rule(allowed, lambda v: isinstance(v, kind))


def subclass_of(base: type, allowed: str) -> Rule:
    """A class deriving from ``base``."""
    return Rule(allowed, lambda v: isinstance(v, type) and issubclass(v, base))


NONE = exactly(None)
BOOL = Rule("true or false", lambda v: isinstance(v, bool))
MAPPING = Rule("a mapping", lambda v: isinstance(v, Mapping) and all(isinstance(k, str) for k in v))
UNIT = Number(ge=0, le=1)
COUNT = Number(integer=True, ge=1)
STEPS = Number(integer=True, ge=0)
POSITIVE = Number(gt=0)
NON_NEGATIVE = Number(ge=0)

_LINEAR = re.compile(r"^lin_(.+)$")


def schedule(*, gt: Any = None, ge: Any = None, le: Any = None) -> Rule:
    """A constant, the zoo's ``"lin_<number>"`` (linear decay from the number), or a callable of the
    remaining progress."""

    def accepts(value: Any) -> bool:
        if callable(value) and not isinstance(value, type):
            return True
        if isinstance(value, str):
            match = _LINEAR.match(value)
            if not match or not _looks_numeric(match.group(1)):
                return False
            value = float(match.group(1))
        return _is_number(value) and _within(float(value), ge, gt, le, None)

    bounds = _bounds_text(ge, gt, le, None)
    return Rule(f"a number{bounds}, 'lin_<number>' (a linear schedule) or a callable", accepts)


def _train_freq(value: Any) -> bool:
    if _is_integer(value):
        return int(value) >= 1
    if isinstance(value, (list, tuple)) and len(value) == 2:
        count, unit = value
        units = ("step", "episode")
        return (
            _is_integer(count)
            and int(count) >= 1
            and (unit in units if isinstance(unit, str) else isinstance(unit, TrainFrequencyUnit))
        )
    return False


class _TrainFreq(Rule):
    def __init__(self) -> None:
        super().__init__("an integer >= 1 or [integer >= 1, 'step' | 'episode']", _train_freq)

    def convert(self, value: Any) -> Any:
        if isinstance(value, list):  # YAML lists: SB3 wants a tuple
            return (int(value[0]), value[1])
        return int(value) if isinstance(value, float) else value


def _device(value: Any) -> bool:
    if isinstance(value, th.device):
        return True
    if not isinstance(value, str):
        return False
    if value == "auto":
        return True
    th.device(value)  # raises RuntimeError on a bad name
    return True


def _device_rule() -> Rule:
    def accepts(value: Any) -> bool:
        try:
            return _device(value)
        except RuntimeError:
            return False

    return Rule("'auto', 'cpu', 'cuda', 'cuda:<index>' or a torch.device", accepts)


def _named_class(module: Any, base: type) -> Callable[[Any], bool]:
    """A class deriving from ``base``, or the name of one in ``module`` (YAML: ``activation_fn: Tanh``)."""

    def accepts(value: Any) -> bool:
        if isinstance(value, str):
            value = getattr(module, value, None)
        return isinstance(value, type) and issubclass(value, base)

    return accepts


def _layers(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(
        _is_integer(w) and 1 <= int(w) <= MAX_WIDTH for w in value
    )


def _net_arch(value: Any) -> bool:
    if isinstance(value, Mapping):
        return bool(value) and all(k in ("pi", "vf", "qf") and _layers(v) for k, v in value.items())
    return _layers(value)


NET_ARCH = Rule(
    f"a list of layer widths (integers in [1, {MAX_WIDTH}]) or a mapping of such lists by "
    "network (pi, vf, qf)",
    _net_arch,
)

#: entries of ``policy_kwargs`` with a known meaning; other names are checked against the policy classes
POLICY_KWARGS_RULES: dict[str, Rule] = {
    "net_arch": NET_ARCH | NONE,
    "activation_fn": Rule(
        "a torch.nn module class or its name (ReLU, Tanh, ...)", _named_class(th.nn, th.nn.Module)
    ),
    "optimizer_class": Rule(
        "a torch.optim optimizer class or its name (Adam, RMSprop, ...)",
        _named_class(th.optim, th.optim.Optimizer),
    ),
    "optimizer_kwargs": MAPPING | NONE,
    "features_extractor_class": subclass_of(BaseFeaturesExtractor, "a BaseFeaturesExtractor subclass"),
    "features_extractor_kwargs": MAPPING | NONE,
    "normalize_images": BOOL,
    "share_features_extractor": BOOL,
    "ortho_init": BOOL,
    "squash_output": BOOL,
    "full_std": BOOL,
    "use_expln": BOOL,
    "use_sde": BOOL,
    "log_std_init": Number(),
    "clip_mean": Number(gt=0),
    "n_critics": Number(integer=True, ge=1, le=100),
}


def policy_kwargs_names(algo: type[BaseAlgorithm]) -> list[str]:
    """The keyword arguments the policies of ``algo`` (its ``policy_aliases``) take, read from their
    signatures (up the class hierarchy where a signature passes ``**kwargs`` on)."""
    names: set[str] = set()
    skip = ("self", "observation_space", "action_space", "lr_schedule", "args", "kwargs")
    for policy in getattr(algo, "policy_aliases", {}).values():
        for cls in policy.__mro__:
            if "__init__" not in vars(cls):
                continue
            parameters = inspect.signature(cls.__init__).parameters
            names |= {p for p in parameters if p not in skip}
            if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
                break
    return sorted(names)


class PolicyKwargs(Rule):
    """``policy_kwargs``: a mapping whose entries are checked by name."""

    def __init__(self, names: Sequence[str] | None = None) -> None:
        super().__init__("a mapping of policy arguments", lambda v: v is None or isinstance(v, Mapping))
        self.names = names

    def for_algorithm(self, algo: type[BaseAlgorithm]) -> PolicyKwargs:
        """The rule knowing the policy arguments of ``algo``."""
        return PolicyKwargs(policy_kwargs_names(algo))

    def problem(self, value: Any) -> tuple[tuple[str, ...], str] | None:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            return (), f"{_show(value)} is not {self.allowed}"
        for key, item in value.items():
            if not isinstance(key, str):
                return (), f"{_show(key)} is not the name of a policy argument"
            rule = POLICY_KWARGS_RULES.get(key)
            if rule is None and self.names is not None and key not in self.names:
                close = difflib.get_close_matches(key, self.names, n=3)
                hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
                return (key,), f"{key}: unknown policy argument{hint}"
            if rule is not None:
                found = rule.problem(item)
                if found is not None:
                    return (key, *found[0]), f"{key}: {found[1]}"
        return None


#: constructor parameters of DQN, PPO, A2C, SAC, TD3 and TRPO (sb3_contrib), by name
RULES: dict[str, Rule] = {
    # shared
    # 0 is allowed: a control run that keeps the loaded weights (scripts/bench/pruning_trained.yaml)
    "learning_rate": schedule(ge=0),
    "gamma": UNIT,
    "batch_size": COUNT,
    "policy_kwargs": PolicyKwargs(),
    "verbose": Number(integer=True, ge=0),
    "seed": Number(integer=True, ge=0, lt=2**32) | NONE,
    "device": _device_rule(),
    "tensorboard_log": instance_of((str, os.PathLike), "a folder path") | NONE,
    "stats_window_size": COUNT,
    # off-policy (DQN, SAC, TD3)
    "buffer_size": Number(integer=True, ge=1, le=MAX_BUFFER_SIZE),
    "learning_starts": STEPS,
    "tau": UNIT,
    "train_freq": _TrainFreq(),
    "gradient_steps": Number(integer=True, ge=1) | exactly(-1),
    "replay_buffer_class": subclass_of(ReplayBuffer, "a ReplayBuffer subclass") | NONE,
    "replay_buffer_kwargs": MAPPING | NONE,
    "optimize_memory_usage": BOOL,
    "n_steps": Number(integer=True, ge=1, le=MAX_N_STEP),
    "action_noise": instance_of(ActionNoise, "an ActionNoise") | NONE,
    # DQN
    "target_update_interval": COUNT,
    "exploration_fraction": UNIT,
    "exploration_initial_eps": UNIT,
    "exploration_final_eps": UNIT,
    "max_grad_norm": POSITIVE,
    # on-policy (PPO, A2C, TRPO)
    "gae_lambda": UNIT,
    "n_epochs": COUNT,
    "clip_range": schedule(gt=0),
    "clip_range_vf": schedule(gt=0) | NONE,
    "normalize_advantage": BOOL,
    "ent_coef": NON_NEGATIVE,
    "vf_coef": NON_NEGATIVE,
    "use_sde": BOOL,
    "sde_sample_freq": Number(integer=True, ge=-1),
    "rollout_buffer_class": subclass_of(RolloutBuffer, "a RolloutBuffer subclass") | NONE,
    "rollout_buffer_kwargs": MAPPING | NONE,
    "target_kl": POSITIVE | NONE,
    # A2C
    "rms_prop_eps": POSITIVE,
    "use_rms_prop": BOOL,
    # SAC
    "target_entropy": exactly("auto") | Number(),
    "use_sde_at_warmup": BOOL,
    # TD3
    "policy_delay": COUNT,
    "target_policy_noise": NON_NEGATIVE,
    "target_noise_clip": NON_NEGATIVE,
    # TRPO
    "cg_max_steps": COUNT,
    "cg_damping": NON_NEGATIVE,
    "line_search_shrinking_factor": Number(gt=0, lt=1),
    "line_search_max_iter": COUNT,
    "n_critic_updates": COUNT,
    "sub_sampling_factor": COUNT,
}


def _auto_coefficient(value: Any) -> bool:
    if value == "auto":
        return True
    if isinstance(value, str) and value.startswith("auto_") and _looks_numeric(value[5:]):
        return float(value[5:]) > 0
    return False


#: where an algorithm reads a name differently, by the name of its SB3 class
ALGORITHM_RULES: dict[str, dict[str, Rule]] = {
    "SAC": {"ent_coef": Rule("'auto', 'auto_<initial value > 0>'", _auto_coefficient) | NON_NEGATIVE},
    "PPO": {"n_steps": COUNT},
    "A2C": {"n_steps": COUNT},
    "TRPO": {"n_steps": COUNT, "target_kl": POSITIVE},
}

#: the run settings of a recipe (not constructor arguments), for every algorithm
RUN_RULES: dict[str, Rule] = {
    "n_timesteps": Number(integer=True, ge=1),
    "n_envs": Number(integer=True, ge=1, le=MAX_ENVS),
    "env_kwargs": MAPPING | NONE,
}


def constructor_parameters(algo: type[BaseAlgorithm]) -> list[str]:
    """The hyperparameters ``algo``'s constructor takes (its signature, less policy, env, surgeries)."""
    return [p for p in inspect.signature(algo.__init__).parameters if p not in NOT_HYPERPARAMS]


def rule_for(algo: type[BaseAlgorithm], name: str) -> Rule | None:
    """The rule of hyperparameter ``name`` of ``algo`` (``None``: not in the table, unchecked)."""
    for cls in algo.__mro__:
        special = ALGORITHM_RULES.get(cls.__name__, {})
        if name in special:
            return special[name]
    if name in RUN_RULES:
        return RUN_RULES[name]
    if name == "policy":
        return _policy_rule(algo)
    rule = RULES.get(name)
    if isinstance(rule, PolicyKwargs):
        return rule.for_algorithm(algo)
    return rule


def _policy_rule(algo: type[BaseAlgorithm]) -> Rule:
    aliases = list(getattr(algo, "policy_aliases", {}))
    return Rule(
        f"one of {', '.join(aliases)} or a policy class",
        lambda v: v in aliases if isinstance(v, str) else isinstance(v, type) and issubclass(v, BasePolicy),
    )


def unknown_hyperparam_message(algo: type[BaseAlgorithm], name: str) -> str:
    """ "unknown hyperparameter NAME for ALGO; did you mean ...?" (or where the name belongs)."""
    valid = constructor_parameters(algo)
    if name in policy_kwargs_names(algo) or name in POLICY_KWARGS_RULES:
        return (
            f"unknown hyperparameter {name!r} for {algo.__name__}: it is a policy argument, "
            f"give it inside policy_kwargs (policy_kwargs: {{{name}: ...}})"
        )
    close = difflib.get_close_matches(str(name), [*valid, *RUN_KEYS], n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown hyperparameter {name!r} for {algo.__name__}{hint}"


def hyperparam_problem(
    algo: type[BaseAlgorithm], settings: Mapping[str, Any], *, run_keys: bool = True
) -> Problem | None:
    """The first problem with ``settings`` for ``algo``, or ``None``.

    :param settings: constructor arguments, and with ``run_keys`` the run settings
        ``n_timesteps``, ``n_envs``, ``policy`` and ``env_kwargs``
    """
    valid = set(constructor_parameters(algo))
    allowed_run = set(RUN_KEYS) - {"surgeries"} if run_keys else set()
    for name, value in settings.items():
        if name not in valid and name not in allowed_run:
            return Problem((str(name),), unknown_hyperparam_message(algo, str(name)))
        rule = rule_for(algo, name)
        if rule is None:
            continue
        found = rule.problem(value)
        if found is not None:
            return Problem((name, *found[0]), f"{name}: {found[1]}")
    return None


def check_hyperparams(
    algo: type[BaseAlgorithm],
    settings: Mapping[str, Any],
    where: str,
    error: type[Exception] = ParameterError,
    *,
    run_keys: bool = True,
) -> dict[str, Any]:
    """Raise ``error("WHERE: PROBLEM")`` on the first bad setting; else the settings as the
    constructor takes them (an integral float of an integer parameter becomes an int)."""
    problem = hyperparam_problem(algo, settings, run_keys=run_keys)
    if problem is not None:
        raise error(f"{where}: {problem.message}" if where else problem.message)
    out = {}
    for name, value in settings.items():
        rule = rule_for(algo, name)
        out[name] = rule.convert(value) if rule is not None else value
    return out


# ------------------------------------------------------------------------ --hyperparams NAME:VALUE
class _NotLiteral(ValueError):
    pass


_WORDS = {"true": True, "false": False, "null": None}


def _literal(node: ast.AST) -> Any:
    """The value of a literal expression: constants, lists, tuples, dicts, ``dict(k=v)``; a bare
    name is its text (``nn.ReLU`` and ``th.nn.ReLU`` too: the policy resolves the name)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if not _is_number(value):
            raise _NotLiteral
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.List):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise _NotLiteral
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        if node.args or any(k.arg is None for k in node.keywords):
            raise _NotLiteral
        return {k.arg: _literal(k.value) for k in node.keywords}
    if isinstance(node, ast.Name):
        return _WORDS.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        parts = []
        inner: ast.AST = node
        while isinstance(inner, ast.Attribute):
            parts.append(inner.attr)
            inner = inner.value
        if isinstance(inner, ast.Name) and inner.id in ("nn", "th", "torch", "optim"):
            return parts[0]  # nn.ReLU -> "ReLU", th.optim.Adam -> "Adam"
    raise _NotLiteral


def parse_hyperparam_value(text: str) -> Any:
    """Read one ``--hyperparams`` value without running it: a Python literal (``dict(net_arch=[64])``
    included), else YAML, else the text.

    >>> [parse_hyperparam_value(text) for text in ("0.99", "lin_0.001", "(4, 'step')", "true")]
    [0.99, 'lin_0.001', (4, 'step'), True]
    >>> parse_hyperparam_value("dict(net_arch=[64, 64], activation_fn=nn.Tanh)")
    {'net_arch': [64, 64], 'activation_fn': 'Tanh'}
    >>> parse_hyperparam_value("__import__('os').system('true')")
    "__import__('os').system('true')"
    """
    text = text.strip()
    try:
        return _literal(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError, RecursionError):
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


#: names ``--hyperparams`` cannot set: they have options (or are set by the run)
CLI_OWNED = {
    "surgeries": "--surgery",
    "explore": "--explore",
    "remove": "a recipe of your own",
    "seed": "--seed",
    "device": "--device",
    "verbose": "--verbose",
    "tensorboard_log": "the run folder",
}


def parse_hyperparams(
    items: Sequence[str] | None, flag: str = "--hyperparams", owned: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``["learning_rate:0.001", "batch_size:64"]`` -> ``{"learning_rate": 0.001, "batch_size": 64}``
    (rl-zoo3's notation; values are read by :func:`parse_hyperparam_value`, never evaluated).

    :param owned: names that have their own option (default: those of ``rlsurgery train``)
    :raises ParameterError: an item that is not NAME:VALUE, a name given twice, or one with its own option
    """
    out: dict[str, Any] = {}
    for item in items or []:
        name, colon, text = str(item).partition(":")
        name = name.strip()
        if not colon or not name or not text.strip():
            raise ParameterError(f"{flag}: {item!r} is not NAME:VALUE (e.g. learning_rate:0.001)")
        if name in out:
            raise ParameterError(f"{flag}: {name} is given twice; give each hyperparameter once")
        owners = CLI_OWNED if owned is None else owned
        if name in owners:
            raise ParameterError(f"{flag}: {name} is not set here; use {owners[name]}")
        out[name] = parse_hyperparam_value(text)
    return out
