"""``rlsurgery tune``: hyperparameter and surgery search on Optuna, ending in a check on fresh seeds.

Everything that searches is Optuna's: its samplers (grid, random, TPE, GP), its pruners (median,
successive halving, Hyperband) fed by each trial's intermediate evaluations
(:mod:`rlsurgery.tune.objective`), its RDB storage (SQLite in the output folder by default, a server
database URL for many machines; ``optuna-dashboard sqlite:///OUT/tune.db`` shows it). A tune is
resumed by running the same command again: the finished trials stay, and the trials that were
running when a tune was killed are marked failed and their configurations queued again.

The output folder::

    tune.db          Optuna's storage (unless --storage names another)
    trials.csv       one row per trial: number, state, value, parameters, wall time
    best.yaml        the best configuration as a recipe ``rlsurgery train best.yaml ENV_ID`` takes
    final-HASH/      the final check: a study (rlsurgery compare) of the recipe's defaults against
                     the best configuration (HASH: of best.yaml), on fresh seeds (never the tuning seeds)
    tune.json        the summary (also what ``--json`` prints)

Tuning seeds are ``TUNE_SEEDS_FROM`` + 0 … K − 1, the same for every trial (common random numbers:
trials differ by their configuration, not by their luck); the final check uses seeds 0 … N − 1.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import multiprocessing
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from rlsurgery.core.checks import check_int
from rlsurgery.core.spec import parse_spec
from rlsurgery.recipes import find_recipe, load_recipe
from rlsurgery.tune.objective import METRICS, TUNE_SEEDS_FROM, TrialBudget, requeue_lost, trial_objective
from rlsurgery.tune.space import Config, SearchSpace, TuneError, load_space

STORAGE_FILE = "tune.db"
STUDY_NAME = "tune"


@dataclass
class TuneSettings:
    """What ``tune`` searches, how, and where it keeps the results (see :func:`tune`)."""

    recipe: str
    env_id: str
    space: str
    out: str
    sampler: str = "tpe"
    pruner: str = "none"
    trials: int = 20
    seeds_per_trial: int = 1
    steps: int | None = None
    eval_freq: int | None = None
    n_eval_episodes: int = 5
    metric: str = "final"
    workers: int = 1
    storage: str | None = None
    seed: int = 0
    final_seeds: int = 5
    device: str = "cpu"
    backend: str = "local"
    ray_address: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        search_method(self.sampler, "sampler")
        if self.backend not in ("local", "ray"):
            raise TuneError(f"backend must be local or ray (got {self.backend!r})")
        if self.pruner not in ("none", "median"):
            search_method(self.pruner, "pruner")
        if self.metric not in METRICS:
            raise TuneError(f"metric must be one of {', '.join(METRICS)} (got {self.metric!r})")
        for name in ("trials", "seeds_per_trial", "n_eval_episodes", "workers"):
            check_int(getattr(self, name), name, 1, error=TuneError)
        check_int(self.final_seeds, "final_seeds", 0, error=TuneError)
        for name in ("steps", "eval_freq"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name, 1, error=TuneError)
        if self.seeds_per_trial > TUNE_SEEDS_FROM or self.final_seeds > TUNE_SEEDS_FROM:
            raise TuneError(f"at most {TUNE_SEEDS_FROM} seeds per trial and in the final check")

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(Path(self.out) / STORAGE_FILE).resolve()}"

    def optuna_storage(self) -> Any:
        """What Optuna opens: the folder's SQLite file (its lock proves no other tune runs on it), or,
        for a ``--storage`` database that several machines may share, an RDB storage whose running
        trials send heartbeats, so that only trials whose machine went silent count as lost."""
        if self.storage is None:
            return self.storage_url
        import optuna

        interval, grace = HEARTBEAT
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        return optuna.storages.RDBStorage(
            self.storage,
            heartbeat_interval=interval,
            grace_period=grace,
            heartbeat_stale_trial_callback=requeue_lost,
        )

    def budget(self) -> TrialBudget:
        steps = self.steps or load_recipe(self.recipe).resolve(self.env_id).n_timesteps
        eval_freq = min(self.eval_freq or max(steps // 10, 1), steps)
        return TrialBudget(steps, eval_freq, self.n_eval_episodes, self.metric, self.device)  # type: ignore[arg-type]

    def tuning_seeds(self) -> list[int]:
        return [TUNE_SEEDS_FROM + k for k in range(self.seeds_per_trial)]


#: ``--sampler`` / ``--pruner`` short names -> catalog specs (section 15)
SAMPLER_KEYS = {
    "grid": "grid_search",
    "random": "random_search",
    "tpe": "bayesian_optimization",
    "gp": "bayesian_optimization:model=gp",
    "evolution": "evolutionary_nas",
    "random-nas": "random_search_nas",
}
PRUNER_KEYS = {"successive-halving": "successive_halving", "hyperband": "hyperband"}


def search_method(spec: str, role: str) -> Any:
    """The :class:`~rlsurgery.tune.methods.base.SearchMethod` of a ``--sampler`` / ``--pruner`` value:
    a short name (``tpe``) or a catalog spec (``bayesian_optimization:n_startup_trials=5``)."""
    from rlsurgery import catalog
    from rlsurgery.core.errors import SurgeryError
    from rlsurgery.tune.methods.base import SearchMethod

    names = SAMPLER_KEYS if role == "sampler" else PRUNER_KEYS
    try:
        method = catalog.create(names.get(spec, spec))
    except SurgeryError as exc:
        raise TuneError(f"--{role}: {exc}") from None
    if not isinstance(method, SearchMethod) or method.role != role:
        known = ", ".join([*names, *sorted({k.split(":")[0] for k in names.values()})])
        raise TuneError(f"--{role}: {spec!r} is not a {role} of rlsurgery tune (known: {known})")
    return method


#: what a tune file gives besides the space: TuneSettings' fields (``env`` for ``env_id``)
TUNE_FILE_KEYS = (
    "recipe",
    "env",
    "sampler",
    "pruner",
    "trials",
    "seeds_per_trial",
    "steps",
    "eval_freq",
    "n_eval_episodes",
    "metric",
    "workers",
    "storage",
    "seed",
    "final_seeds",
    "device",
    "backend",
    "ray_address",
    "out",
)


def load_tune_file(path: str | Path, **overrides: Any) -> TuneSettings:
    """The settings of a tune file: a search space with the tune's settings beside it (``recipe`` and
    ``env`` required); ``overrides`` (not None) win. Problems name the file and line."""
    from rlsurgery.core.errors import SurgeryError
    from rlsurgery.core.yamlfile import read_yaml

    path = Path(path)
    if not path.is_file():
        raise TuneError(f"tune file not found: {path}")
    data, fail = read_yaml(path, TuneError)
    if not isinstance(data, dict):
        raise fail("a tune file must be a mapping: recipe, env, the space and the tune's settings")
    for key in ("recipe", "env"):
        if key not in data and overrides.get("recipe" if key == "recipe" else "env_id") is None:
            raise fail(f"a tune file needs '{key}'")
    values = {k: data[k] for k in TUNE_FILE_KEYS if k in data}
    values["env_id"] = values.pop("env", None)
    recipe = values.get("recipe")
    if isinstance(recipe, str) and recipe.endswith((".yaml", ".yml")) and not Path(recipe).is_absolute():
        values["recipe"] = str(path.parent / recipe)
    values.update({k: v for k, v in overrides.items() if v is not None})
    values.setdefault("out", f"tunes/{path.stem}")
    try:
        settings = TuneSettings(space=str(path), **values)
    except TypeError as exc:
        raise fail(str(exc)) from None
    given = {
        "env_id" if k == "env" else k: k for k in data if k in TUNE_FILE_KEYS and k not in ("recipe", "env")
    }
    for field_name, key in given.items():  # each setting of the file alone, so a bad one names its line
        if overrides.get(field_name) is not None:
            continue
        try:
            replace(TuneSettings("recipe", "env", str(path), "out"), **{field_name: data[key]}).check()
        except (TuneError, SurgeryError) as exc:
            raise fail(str(exc), key) from None
    return settings


def make_sampler(spec: str, space: SearchSpace, budget: TrialBudget, seed: int) -> Any:
    """Optuna's sampler of ``spec`` (see :func:`search_method`)."""
    return search_method(spec, "sampler").build(space, budget, seed)


def make_pruner(spec: str, space: SearchSpace, budget: TrialBudget) -> Any:
    """Optuna's pruner of ``spec``; the resource is environment steps, one report per evaluation.
    ``none`` and ``median`` (Optuna's median-stopping rule) are Optuna's own, without a catalog key;
    the median rule waits for 5 finished trials and, within a trial, for a quarter of its budget
    (at least one evaluation): early RL returns say little about the final ones."""
    import optuna

    if spec == "none":
        return optuna.pruners.NopPruner()
    if spec == "median":
        warmup = max(budget.eval_freq, budget.steps // 4)
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup)
    return search_method(spec, "pruner").build(space, budget, 0)


def space_of(settings: TuneSettings, check_builds: bool = True) -> SearchSpace:
    """The settings' search space, with the recipe's ``policy_kwargs`` for the env (where an
    architecture's ``net_arch`` goes); ``check_builds``: each searched surgery is tried on the
    recipe's agent first (see :func:`~rlsurgery.tune.space.load_space`)."""
    space = load_space(settings.space, settings.recipe, settings.env_id if check_builds else None)
    resolved = load_recipe(settings.recipe).resolve(settings.env_id)  # the recipe takes the env
    space.base_policy_kwargs = dict(resolved.kwargs.get("policy_kwargs") or {})
    return space


def prepare(settings: TuneSettings) -> SearchSpace:
    """Check the settings and the space (before any trial); a grid search also checks its grid."""
    settings.check()
    find_recipe(settings.recipe)
    space = space_of(settings)
    search_method(settings.sampler, "sampler").check_space(space)
    if search_method(settings.sampler, "sampler").key == "grid_search":
        try:
            space.grid()  # a float range without a step fails here
        except TuneError as exc:
            raise TuneError(f"{settings.space}: {exc}") from None
    if search_method(settings.sampler, "sampler").key == "population_based_training":
        from rlsurgery.tune.pbt import check_space

        check_space(space)
    settings.budget()
    return space


@contextlib.contextmanager
def _only_tune_in(folder: Path) -> Iterator[None]:
    """Hold ``folder/tune.lock`` while tuning: a second ``tune`` on the same folder fails at once."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "tune.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TuneError(f"{folder}: another rlsurgery tune is running on this folder") from None
        yield


#: (seconds between heartbeats, seconds of silence after which a running trial is lost) on a
#: ``--storage`` database
HEARTBEAT = (60, 300)


def _requeue_lost_trials(study: Any, settings: TuneSettings) -> int:
    """Trials left RUNNING by a killed tune (this folder's lock proves none is running): marked
    failed, their parameters queued again; on a ``--storage`` database only those whose heartbeat
    stopped. Returns how many."""
    import optuna

    if settings.storage is not None:  # a shared database: other machines' trials may be running
        failed = optuna.trial.TrialState.FAIL
        before = {t.number for t in study.get_trials(deepcopy=False, states=(failed,))}
        optuna.storages.fail_stale_trials(study)  # only the silent ones; requeue_lost runs on each
        return len({t.number for t in study.get_trials(deepcopy=False, states=(failed,))} - before)
    lost = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
    for trial in lost:
        study._storage.set_trial_user_attr(trial._trial_id, "lost", True)  # not a failure of its own
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        requeue_lost(study, trial)
    return len(lost)


def _finished(study: Any, trained_only: bool = False) -> int:
    """Finished (complete or pruned) trials; ``trained_only``: not counting the twins that reused an
    earlier trial's result."""
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    trials = study.get_trials(deepcopy=False, states=states)
    return sum(not (trained_only and "duplicate_of" in t.user_attrs) for t in trials)


def _stop_at(trials: int, trained_only: bool) -> Any:
    """Optuna callback: stop once ``trials`` trials finished (see :func:`_finished`)."""

    def stop(study: Any, trial: Any) -> None:
        if _finished(study, trained_only) >= trials:
            study.stop()

    return stop


def _work(task: tuple[dict[str, Any], int]) -> None:
    """Worker ``index``: trials until the study has ``trials`` finished ones (a grid: trained ones), or
    the grid is done.

    Each worker's sampler is seeded with ``seed + 7919 · index +`` the trials already stored, so
    workers do not suggest the same points, and a resumed tune does not repeat its first ones."""
    import optuna

    payload, index = task
    settings = TuneSettings(**payload)
    space = space_of(settings, check_builds=False)  # prepare() checked them
    budget = settings.budget()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stored = optuna.load_study(study_name=STUDY_NAME, storage=settings.optuna_storage())
    sampler_seed = settings.seed + 7919 * index + len(stored.get_trials(deepcopy=False))
    study = optuna.load_study(
        study_name=STUDY_NAME,
        storage=stored._storage,
        sampler=make_sampler(settings.sampler, space, budget, sampler_seed),
        pruner=make_pruner(settings.pruner, space, budget),
    )
    objective = trial_objective(settings.recipe, settings.env_id, space, settings.tuning_seeds(), budget)
    # a grid's parallel workers can draw the same point (a race in Optuna's GridSampler): those twins
    # cost nothing and do not use up the budget, so the grid is covered (the sampler stops at its end)
    grid = search_method(settings.sampler, "sampler").key == "grid_search"
    stop = _stop_at(settings.trials, trained_only=grid)
    if _finished(study, trained_only=grid) < settings.trials:
        study.optimize(
            objective, callbacks=[stop, _stop_on_failures], catch=(Exception,), gc_after_trial=True
        )


#: a tune stops after this many trials failed (crashed) with none finished: a configuration that
#: cannot train would otherwise be retried for ever
MAX_FAILURES = 3


def _stop_on_failures(study: Any, trial: Any) -> None:
    """Optuna callback: stop when ``MAX_FAILURES`` trials failed and none finished (lost trials of a
    killed tune do not count)."""
    import optuna

    if _finished(study):
        return
    trials = study.get_trials(deepcopy=False)
    requeued = {t.user_attrs.get("requeued_from") for t in trials}
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL and t.number not in requeued]
    if sum(not t.user_attrs.get("lost") for t in failed) >= MAX_FAILURES:
        study.stop()


def best_config(study: Any) -> tuple[Config, Any]:
    """The best finished trial's configuration (as the objective recorded it) and the trial."""
    from rlsurgery.core.spec import SurgerySpec

    best = study.best_trial
    saved = best.user_attrs["config"]
    specs = [SurgerySpec(s["key"], {k: v for k, v in s.items() if k != "key"}) for s in saved["surgeries"]]
    return Config(dict(saved["hyperparams"]), specs, list(saved.get("remove", []))), best


def tuned_recipe(settings: TuneSettings, config: Config, note: str) -> dict[str, Any]:
    """A recipe (as YAML data) of ``settings.recipe`` with ``config`` for ``settings.env_id``."""
    recipe = load_recipe(settings.recipe)
    data = yaml.safe_load(recipe.path.read_text(encoding="utf-8"))
    surgeries = [
        {"key": spec.key, **spec.params}
        for spec in map(parse_spec, data.get("surgeries") or [])
        if spec.key not in config.remove
    ]
    for spec in config.surgeries:
        same = next((s for s in surgeries if s["key"] == spec.key), None)
        if same is None:
            surgeries.append({"key": spec.key, **spec.params})
        else:
            same.update(spec.params)
    env_block = dict((data.get("hyperparams") or {}).get(settings.env_id) or {})
    env_block.update(config.hyperparams)
    if settings.steps:
        env_block["n_timesteps"] = settings.steps
    out = {
        "algo": data["algo"],
        "description": f"{recipe.name} tuned on {settings.env_id} by rlsurgery tune: {note}",
        "surgeries": surgeries,
        "defaults": data.get("defaults") or {},
        "hyperparams": {settings.env_id: env_block},
    }
    exploration = [e for e in data.get("exploration") or [] if parse_spec(e).key not in config.remove]
    if exploration:
        out["exploration"] = exploration
    return out


def final_check(settings: TuneSettings, best_recipe: Path, workers: int) -> dict[str, Any]:
    """The recipe's defaults against the best configuration on seeds 0 … N − 1, through the study
    harness (rliable statistics; its folder is ``OUT/final``)."""
    from rlsurgery.bench.runner import run_study
    from rlsurgery.bench.study import StudySpec, Variant, select_envs

    budget = settings.budget()
    spec = StudySpec(
        name="tune-final-check",
        description=f"{settings.recipe} defaults vs the configuration tune found, on fresh seeds",
        variants=[Variant("defaults", settings.recipe), Variant("tuned", str(best_recipe.resolve()))],
        envs=select_envs(
            None,
            [settings.env_id],
            steps=budget.steps,
            eval_freq=budget.eval_freq,
            n_eval_episodes=max(settings.n_eval_episodes, 10),
        ),
        seeds=list(range(settings.final_seeds)),
        baseline="defaults",
        device=settings.device,
        command_line=True,
    )
    digest = hashlib.sha256(best_recipe.read_bytes()).hexdigest()[:8]  # a new best gets a new check
    folder = run_study(
        spec,
        Path(settings.out) / f"final-{digest}",
        backend=settings.backend,
        workers=workers,
        ray_address=settings.ray_address,
        progress=False,
    )
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    return {"folder": str(folder), "seeds": spec.seeds, "tables": summary.get("tables", {})}


def tune(settings: TuneSettings, progress: bool = False) -> dict[str, Any]:
    """Run (or resume) the search of ``settings``; return the summary written to ``OUT/tune.json``.

    :raises TuneError: a bad setting or space, before any trial
    """
    space = prepare(settings)
    out = Path(settings.out)
    start = time.perf_counter()
    with _only_tune_in(out):
        method = search_method(settings.sampler, "sampler")
        if method.key == "population_based_training":
            summary = _population(settings, space, method)
        else:
            summary = _trials(settings)
        best_path = out / "best.yaml"
        config = summary.pop("config")
        best_path.write_text(
            "# written by rlsurgery tune\n"
            + yaml.safe_dump(tuned_recipe(settings, config, summary.pop("note")), sort_keys=False),
            encoding="utf-8",
        )
        summary.update(
            settings={k: v for k, v in asdict(settings).items() if k != "extra"},
            best_recipe=str(best_path),
            wall_s=round(time.perf_counter() - start, 1),
        )
        if settings.final_seeds:
            summary["final_check"] = final_check(settings, best_path, settings.workers)
        (out / "tune.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return summary


def _trials(settings: TuneSettings) -> dict[str, Any]:
    """The Optuna search: workers run trials until ``trials`` are finished; the best trial."""
    import optuna

    out = Path(settings.out)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=STUDY_NAME, storage=settings.optuna_storage(), direction="maximize", load_if_exists=True
    )
    _check_same_search(study, settings)
    requeued = _requeue_lost_trials(study, settings)
    payload = asdict(settings)
    if settings.workers == 1:
        _work((payload, 0))
    else:
        # the study workers' set-up: one torch thread, and they die with the driver (a killed tune
        # leaves no orphan trial running, so a rerun may requeue every RUNNING one)
        from rlsurgery.bench.backends import _init_worker

        with multiprocessing.get_context("spawn").Pool(settings.workers, initializer=_init_worker) as pool:
            pool.map(_work, [(payload, i) for i in range(settings.workers)])
    study = optuna.load_study(study_name=STUDY_NAME, storage=settings.optuna_storage())
    study.trials_dataframe().to_csv(out / "trials.csv", index=False)
    if _finished(study) == 0 or not any(t.value is not None for t in study.trials):
        reasons = [t.user_attrs.get("error", "") for t in study.trials if t.state.name == "FAIL"]
        reason = next((r for r in reasons if r), "")
        raise TuneError(
            f"{out}: no trial finished ({len(reasons)} failed); the first failure: {reason.strip()[-500:]}"
        )
    config, best = best_config(study)
    counts = {s.name.lower(): 0 for s in optuna.trial.TrialState}
    for trial in study.trials:
        counts[trial.state.name.lower()] += 1
    return {
        "storage": settings.storage_url,
        "trials": counts,
        "requeued": requeued,
        "best": {"trial": best.number, "value": best.value, "config": config.as_dict()},
        "tuning_seeds": settings.tuning_seeds(),
        "config": config,
        "note": f"trial {best.number}, {settings.metric} {best.value:.4g} "
        f"over {settings.seeds_per_trial} seed(s)",
    }


def _population(settings: TuneSettings, space: SearchSpace, method: Any) -> dict[str, Any]:
    """Population-based training (:mod:`rlsurgery.tune.pbt`); the best member, its model kept as
    ``OUT/best_model.zip``."""
    import shutil

    from rlsurgery.tune.pbt import best_member, run_pbt

    state = run_pbt(settings, space, method, search_key(settings))
    best, config = best_member(state)
    shutil.copyfile(best["model"], Path(settings.out) / "best_model.zip")
    return {
        "population": [
            {"id": m["id"], "seed": m["seed"], "scores": m["scores"], "copies": m["history"]}
            for m in state["members"]
        ],
        "best": {"member": best["id"], "value": best["scores"][-1], "config": config.as_dict()},
        "best_model": str(Path(settings.out) / "best_model.zip"),
        "tuning_seeds": [m["seed"] for m in state["members"]],
        "config": config,
        "note": (
            f"member {best['id']} of a population of {len(state['members'])} (its final hyperparameters; "
            f"PBT found them as a schedule), last evaluation {best['scores'][-1]:.4g}"
        ),
    }


def search_key(settings: TuneSettings) -> dict[str, Any]:
    """What a resumed tune must share with the stored one."""
    key = {
        k: getattr(settings, k) for k in ("recipe", "env_id", "sampler", "metric", "seeds_per_trial", "steps")
    }
    data = yaml.safe_load(Path(settings.space).read_text(encoding="utf-8")) or {}
    key["space"] = {k: data.get(k) for k in ("hyperparams", "surgeries", "switch")}  # not the settings
    if "architecture" in data:  # (only when given: the stores of tunes without one keep their key)
        key["space"]["architecture"] = data["architecture"]
    return key


def _check_same_search(study: Any, settings: TuneSettings) -> None:
    """A resumed tune must search what the stored one did (a changed space would mix two searches)."""
    key = search_key(settings)
    stored = study.user_attrs.get("search")
    if stored is None:
        study.set_user_attr("search", key)
    elif stored != key:
        changed = sorted(k for k in key if stored.get(k) != key[k])
        raise TuneError(
            f"{settings.out}: this folder holds a tune of another search ({', '.join(changed)} differ); "
            "use another --out, or the same settings to resume"
        )
