"""Surgery on a saved or trained model: ``rls.operate`` and ``rlsurgery operate``.

Every surgery that works on an existing model goes through one template,
:meth:`rlsurgery.core.surgery.Surgery.operate` (check → transform → record → report); it
returns the operated model (for distillation: a new, smaller student of the same algorithm,
with the surgery in its provenance log).

With ``report=True`` the operation is measured (:mod:`rlsurgery.core.report`: parameters,
non-zero parameters, zip bytes, predict latency at batch 1 and 256, greedy return before and
after over ``episodes`` episodes) and the report is kept in the provenance record of the
operation, so it is saved with the model; :func:`last_report` reads it back::

    pruned = rls.operate(model, "magnitude_pruning:amount=0.5", report=True, episodes=10)
    rls.last_report(pruned).nonzero_params      # also pruned.surgery_log[-1]["report"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery import catalog
from rlsurgery.agents import ALGORITHMS
from rlsurgery.agents.convert import surgical
from rlsurgery.core.checks import MAX_SEED, check_int
from rlsurgery.core.errors import IncompatibleSurgeryError, ModelFileError, ParameterError
from rlsurgery.core.model_zip import zips_trusted
from rlsurgery.core.report import OperationReport
from rlsurgery.core.spec import parse_spec
from rlsurgery.io import algorithm_of, load_saved_model, read_model_data
from rlsurgery.measure import ReportMeter
from rlsurgery.zoo import model_source, record_zoo_env, write_zoo_copy

#: greedy episodes of each return measurement of a report, unless told
REPORT_EPISODES = 10


def operable_keys() -> list[str]:
    """Catalog keys whose surgery can be applied to an existing model (it defines ``transform``)."""
    return [e.key for e in catalog.entries(status="implemented") if e.surgery.can_operate()]


def operate(
    model: BaseAlgorithm,
    surgery: Any,
    env_id: str | None = None,
    *,
    report: bool = False,
    episodes: int | None = None,
    eval_seed: int = 0,
    onnx: bool = False,
    **params: Any,
) -> BaseAlgorithm:
    """Apply ``surgery`` to ``model`` and return the result.

    :param model: a trained model (any SB3 algorithm rlsurgery knows); a plain SB3 model is first
        converted to its surgical agent (:func:`~rlsurgery.agents.convert.surgical`), so the result is a
        new surgical agent and ``model`` is left as it was
    :param surgery: a surgery key or spec (``"policy_distillation:net_arch=[32]"``)
    :param env_id: the model's Gymnasium id when the model does not record it
    :param report: measure the operation and keep its :class:`~rlsurgery.core.report.OperationReport`
        in the provenance record (``rls.last_report(result)``); costs ``2 × episodes`` episodes
    :param episodes: greedy episodes of each return measurement (default 10; only with ``report``;
        a surgery parameter named ``episodes`` goes in the spec)
    :param eval_seed: seed of the report's evaluation env
    :param onnx: the report also times the policy exported to ONNX, in ONNX Runtime
        (``ort_latency_ms_b1`` / ``_b256``; each export takes a second or two)
    :param params: surgery parameters (added to those of the spec)
    :return: the operated model

    >>> import rlsurgery as rls  # doctest: +SKIP
    >>> student = rls.operate(teacher, "policy_distillation", net_arch=[32], steps=5000)  # doctest: +SKIP
    >>> pruned = rls.operate(model, "magnitude_pruning:amount=0.5", report=True, episodes=5)  # doctest: +SKIP
    >>> rls.last_report(pruned).nonzero_params  # doctest: +SKIP
    """
    spec = parse_spec(surgery)
    instance = catalog.create({"key": spec.key, **spec.params, **params})
    if not instance.can_operate():
        raise IncompatibleSurgeryError(
            f"{spec.key}: cannot be applied to an existing model; apply it when building the agent "
            f"(operable now: {', '.join(operable_keys())})"
        )
    if not report and episodes is not None:
        raise ParameterError(
            f"{spec.key}: 'episodes' is the number of episodes of the report; pass report=True "
            "(a surgery parameter named episodes goes in the spec)"
        )
    if instance.needs_surgical_agent:  # a plain SB3 model in memory: as its surgical agent first
        model = surgical(model)
    if onnx and not report:
        raise ParameterError(f"{spec.key}: 'onnx' adds ONNX Runtime latency to the report; pass report=True")
    meter = report_meter(model, spec.key, env_id, episodes, eval_seed, onnx) if report else None
    return instance.operate(model, env_id=env_id, meter=meter)


def report_meter(
    model: BaseAlgorithm,
    key: str,
    env_id: str | None,
    episodes: int | None,
    eval_seed: int = 0,
    onnx: bool = False,
) -> ReportMeter:
    """The meter of a report on ``model``: its recorded env (or ``env_id``), with its env arguments."""
    recorded = getattr(model, "rls_env_id", None)
    env = env_id or recorded
    if env is None:
        raise IncompatibleSurgeryError(
            f"{key}: the report measures returns, and the model does not record its environment; "
            "pass env_id / --env"
        )
    episodes = REPORT_EPISODES if episodes is None else episodes
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ParameterError(f"{key}: the report's 'episodes' must be an integer >= 1 (got {episodes!r})")
    eval_seed = check_int(eval_seed, f"{key}: the report's eval_seed", 0, MAX_SEED, ParameterError)
    env_kwargs = getattr(model, "rls_env_kwargs", None) if env == recorded else None
    return ReportMeter(
        env, episodes=episodes, eval_seed=eval_seed, env_kwargs=dict(env_kwargs or {}), onnx=onnx
    )


def last_report(model: BaseAlgorithm) -> OperationReport | None:
    """The report of the latest operation on ``model`` that was measured (``operate(..., report=True)``),
    read from its provenance log (after ``load`` too), or None."""
    for record in reversed(getattr(model, "surgery_log", None) or []):
        if isinstance(record.get("report"), dict):
            return OperationReport.from_dict(record["report"])
    return None


def load_surgical(path: str | Path) -> BaseAlgorithm:
    """A saved model as a surgical agent (a plain SB3 zip as the surgical subclass of its algorithm)."""
    path, zoo = model_source(path)
    try:
        algorithm = algorithm_of(read_model_data(path))
    except ModelFileError:
        raise
    except ValueError:
        return load_saved_model(path)
    for cls in ALGORITHMS.values():
        if cls is algorithm or cls.__bases__[-1] is algorithm:
            return record_zoo_env(cls.load(path, device="cpu", trust=zips_trusted()), zoo)
    return load_saved_model(path)


def saved_path(out: str | Path) -> Path:
    """Where SB3's ``save(out)`` writes: ``out`` itself, or ``out.zip`` when ``out`` has no suffix.

    >>> str(saved_path("models/small")), str(saved_path("models/small.zip"))
    ('models/small.zip', 'models/small.zip')
    """
    out = Path(out)
    return Path(f"{out}.zip") if out.suffix == "" else out


def check_output(out: str | Path, force: bool = False) -> Path:
    """The file ``save(out)`` would write, refused when it exists (a file, unless ``force``; a folder,
    always: SB3 would save to ``<out>_2`` instead).

    :raises FileExistsError: naming the file
    """
    path = saved_path(out)
    if path.is_dir():
        raise FileExistsError(f"{path} is a folder; give the operated model a file name (-o FILE.zip)")
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")
    return path


def operate_file(
    path: str | Path,
    surgery: Any,
    out: str | Path,
    env_id: str | None = None,
    force: bool = False,
    *,
    report: bool = False,
    episodes: int | None = None,
    eval_seed: int = 0,
    zoo_layout: bool = False,
    onnx: bool = False,
) -> BaseAlgorithm:
    """Load ``path``, operate, save to ``out`` (an existing file is kept unless ``force``).

    With ``zoo_layout``, ``out`` is an rl-zoo3 log folder and the model is saved as its next run
    (:func:`~rlsurgery.zoo.write_zoo_copy`: ``out/ALGO/ENV_N/ENV.zip``, the source run's settings
    beside it), so that rl-zoo3's ``enjoy`` plays it; the path is in ``result.rls_saved_path``.

    ``out`` without a suffix is saved as ``out.zip`` (as SB3 saves), and that is the file checked:
    :func:`saved_path` says which it is. A plain SB3 zip is loaded as its surgical agent class
    (same weights, on the CPU), so that what the surgery does is recorded in the provenance log
    and restored on load. ``report``, ``episodes``, ``eval_seed`` and ``onnx`` are those of :func:`operate`;
    the report is saved in ``out``.

    :raises FileExistsError: the file to write exists (without ``force``) or is a folder
    """
    target = None if zoo_layout else check_output(out, force)
    result = operate(
        load_surgical(path),
        surgery,
        env_id=env_id,
        report=report,
        episodes=episodes,
        eval_seed=eval_seed,
        onnx=onnx,
    )
    if zoo_layout:
        result.rls_saved_path = str(write_zoo_copy(result, path, out))
        return result
    target.parent.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
    result.save(target)
    return result
