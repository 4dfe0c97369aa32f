"""Surgery on a saved or trained model: ``rls.operate`` and ``rlsurgery operate``.

Every surgery that works on an existing model goes through one template,
:meth:`rlsurgery.core.surgery.Surgery.operate` (check → transform → record → report); it
returns the operated model (for distillation: a new, smaller student of the same algorithm,
with the surgery in its provenance log).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery import catalog
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.spec import parse_spec


def operable_keys() -> list[str]:
    """Catalog keys whose surgery can be applied to an existing model (it defines ``transform``)."""
    return [e.key for e in catalog.entries(status="implemented") if e.surgery.can_operate()]


def operate(model: BaseAlgorithm, surgery: Any, env_id: str | None = None, **params: Any) -> BaseAlgorithm:
    """Apply ``surgery`` to ``model`` and return the result.

    :param model: a trained model (any SB3 algorithm rlsurgery knows)
    :param surgery: a surgery key or spec (``"policy_distillation:net_arch=[32]"``)
    :param env_id: the model's Gymnasium id when the model does not record it
    :param params: surgery parameters (added to those of the spec)
    :return: the operated model

    >>> import rlsurgery as rls  # doctest: +SKIP
    >>> student = rls.operate(teacher, "policy_distillation", net_arch=[32], steps=5000)  # doctest: +SKIP
    """
    spec = parse_spec(surgery)
    instance = catalog.create({"key": spec.key, **spec.params, **params})
    if not instance.can_operate():
        raise IncompatibleSurgeryError(
            f"{spec.key}: cannot be applied to an existing model; apply it when building the agent "
            f"(operable now: {', '.join(operable_keys())})"
        )
    return instance.operate(model, env_id=env_id)


def load_surgical(path: str | Path) -> BaseAlgorithm:
    """A saved model as a surgical agent (a plain SB3 zip as the surgical subclass of its algorithm)."""
    from rlsurgery.agents import ALGORITHMS
    from rlsurgery.io import algorithm_of, read_model_data
    from rlsurgery.policy.imitation import load_expert

    try:
        algorithm = algorithm_of(read_model_data(path))
    except ValueError:
        return load_expert(path)
    for cls in ALGORITHMS.values():
        if cls is algorithm or cls.__bases__[-1] is algorithm:
            return cls.load(path, device="cpu")
    return algorithm.load(path, device="cpu")


def operate_file(
    path: str | Path, surgery: Any, out: str | Path, env_id: str | None = None, force: bool = False
) -> BaseAlgorithm:
    """Load ``path``, operate, save to ``out`` (an existing ``out`` is kept unless ``force``).

    A plain SB3 zip is loaded as its surgical agent class (same weights), so that what the
    surgery does is recorded in the provenance log and restored on load.
    """
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force to overwrite it")
    result = operate(load_surgical(path), surgery, env_id=env_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.save(out)
    return result
