"""The ``rlsurgery`` command line (``python -m rlsurgery`` is the same).

Subcommands: ``catalog``, ``recipes``, ``train``, ``evaluate``, ``inspect``, ``operate``,
``compare``, ``ablate``, ``report``, ``suites``. Every command that produces results prints
them as JSON with ``--json``.

User errors (bad key, bad parameter, malformed recipe, a number out of range, an occupied run
or study folder, an existing output file, a folder given as a model, an unknown environment, a
damaged study store) print one line to stderr and exit with status 2, before anything is
trained or written. Nothing on disk is overwritten without ``--force``. Any other exception is
an internal error: one line and exit status 1; ``--debug`` shows its traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rlsurgery import __version__
from rlsurgery.core.checks import MAX_SEED, int_problem
from rlsurgery.distillation.surgeries import distillation_report

#: help of ``--trust``, on every command that loads a model zip
TRUST_HELP = (
    "load model zips that hold pickled Python objects (plain SB3 zips, older rlsurgery zips): "
    "unpickling can run code from the file, so only for files you trust (see docs/security.md)"
)


def int_type(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type=``: an integer in ``minimum..maximum``, refused by argparse (exit 2,
    "argument --steps: must be an integer >= 1, got 0") before the command runs."""

    def parse(text: str) -> int:
        try:
            value: Any = int(text)
        except ValueError:
            value = text
        problem = int_problem(value, minimum, maximum)
        if problem is not None:
            got = value if isinstance(value, int) else repr(text)
            raise argparse.ArgumentTypeError(f"{problem}, got {got}")
        return int(value)

    parse.__name__ = "integer"
    return parse


positive_int = int_type(1)
nonnegative_int = int_type(0)
seed_int = int_type(0, MAX_SEED)


def name_list(text: str) -> list[str]:
    """An argparse ``type=``: comma-separated names, at least one (``--agents dqn,rainbow``)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"must name at least one recipe, e.g. dqn,rainbow, got {text!r}")
    return names


def model_file(path: str) -> str:
    """The model zip ``path`` names: a zip, an rlsurgery run folder (its ``model.zip``) or an rl-zoo3
    run folder (its model); any other folder is refused by name (``ModelFileError``)."""
    from rlsurgery.zoo import model_source

    return str(model_source(path)[0]) if Path(path).is_dir() else path


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def cmd_catalog(args: argparse.Namespace) -> int:
    from rlsurgery import catalog
    from rlsurgery.docs import surgeries_markdown, write_surgeries_markdown

    if args.markdown:
        if args.output:
            write_surgeries_markdown(args.output)
            print(f"wrote {args.output}")
        else:
            sys.stdout.write(surgeries_markdown())
        return 0
    entries = catalog.entries(section=args.section, status=args.status)
    if args.json:
        _print_json([e.as_dict() for e in entries])
        return 0
    width = max((len(e.key) for e in entries), default=10)
    print(f"{'key':<{width}}  {'sect':>5}  {'status':<11}  {'attaches to':<24}  name")
    for e in entries:
        sections = ",".join(map(str, e.sections))
        print(
            f"{e.key:<{width}}  {sections:>5}  {e.status:<11}  {','.join(e.attaches_to) or '-':<24}  {e.name}"
        )
        for family, note in (e.surgery.notes_by_family() if e.surgery else {}).items():
            print(f"{'':<{width}}  on {family}: {note.partition(':')[0]}")
    implemented = sum(e.status == "implemented" for e in entries)
    print(f"\n{len(entries)} keys, {implemented} implemented")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from rlsurgery.recipes import available_recipes, load_recipe

    rows = []
    for name in available_recipes():
        recipe = load_recipe(name)
        rows.append(
            {
                "name": name,
                "algo": recipe.algo,
                "surgeries": [str(s) for s in recipe.surgeries],
                "envs": list(recipe.hyperparams),
                "description": recipe.description,
                "path": str(recipe.path),
            }
        )
    if args.json:
        _print_json(rows)
    else:
        for row in rows:
            print(f"{row['name']:<10} {row['algo']:<5} {row['description']}")
            print(f"{'':<10} surgeries: {', '.join(row['surgeries']) or '(none)'}")
            print(f"{'':<10} tuned for: {', '.join(row['envs'])}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from rlsurgery.core.model_zip import trusted_zips
    from rlsurgery.hyperparams import check_hyperparams, parse_hyperparams
    from rlsurgery.recipes import load_recipe
    from rlsurgery.training import train_run

    overrides = parse_hyperparams(args.hyperparams)
    env_kwargs = parse_hyperparams(args.env_kwargs, "--env-kwargs", owned={})
    if overrides:  # checked here too, so that the message names the flag
        check_hyperparams(load_recipe(args.recipe).algorithm, overrides, "--hyperparams")
    with trusted_zips(args.trust):  # zips that surgeries read (an expert, an initialisation source)
        evaluation = train_run(
            args.recipe,
            args.env_id,
            surgeries=args.surgery,
            explore=args.explore,
            steps=args.steps,
            seed=args.seed,
            out=args.out,
            device=args.device,
            force=args.force,
            eval_episodes=args.eval_episodes,
            progress_bar=not args.no_progress,
            verbose=args.verbose,
            overrides=overrides,
            env_kwargs=env_kwargs,
            trained_agent=model_file(args.trained_agent) if args.trained_agent else None,
            save_freq=args.save_freq,
            tensorboard_log=args.tensorboard_log,
            zoo_layout=args.zoo_layout,
        )
    if args.json:
        _print_json(evaluation)
    else:
        print(
            f"{evaluation['recipe']} on {evaluation['env_id']} (seed {evaluation['seed']}, "
            f"{evaluation['n_timesteps']} steps, {evaluation['train_wall_time_s']:.0f} s): "
            f"greedy return {evaluation['mean_return']:.1f} ± {evaluation['std_return']:.1f} "
            f"over {evaluation['episodes']} episodes"
        )
        print(f"run folder: {evaluation['run_dir']}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rlsurgery.core.errors import EnvironmentNotAvailableError, ParameterError
    from rlsurgery.core.model_zip import trusted_zips
    from rlsurgery.envs import ensure_registered
    from rlsurgery.io import load, read_model_data
    from rlsurgery.training import evaluate_model
    from rlsurgery.video import DEFAULT_MAX_FRAMES, check_renderable, check_video_path, record_video
    from rlsurgery.zoo import find_zoo_run

    video_options = {"--video-episodes": args.video_episodes, "--video-length": args.video_length}
    given = [flag for flag, value in {**video_options, "--force": args.force or None}.items() if value]
    if given and not args.video:
        raise ParameterError(f"{given[0]} is an option of the video; add --video OUT.mp4 (or .gif)")
    video = check_video_path(args.video, args.force) if args.video else None
    data = read_model_data(model_file(args.model))
    zoo = find_zoo_run(args.model)  # an rl-zoo3 run (folder or its zip) names its env beside the zip
    recorded = data.get("rls_env_id") or (zoo.env_id if zoo else None)
    env_id = args.env or recorded
    if not env_id:
        raise EnvironmentNotAvailableError("the model does not record its environment; pass --env ID")
    try:
        ensure_registered(str(env_id))
    except EnvironmentNotAvailableError as exc:
        where = "--env" if args.env else "the environment the model records"
        raise EnvironmentNotAvailableError(f"{where}: {exc}") from None
    zoo_kwargs = zoo.env_kwargs if zoo is not None and env_id == zoo.env_id else None
    env_kwargs = data.get("rls_env_kwargs") if env_id == data.get("rls_env_id") else zoo_kwargs
    env_kwargs = env_kwargs if isinstance(env_kwargs, dict) else None
    if video is not None:
        check_renderable(str(env_id), env_kwargs)  # before the evaluation: nothing runs in vain
    model = load(args.model, device=args.device, trust=args.trust)
    zoo_env = zoo is not None and env_id == zoo.env_id  # the run's wrappers and statistics apply
    with trusted_zips(args.trust):  # an rl-zoo3 run's VecNormalize statistics are a pickle
        wrappers = {
            "wrap": zoo.wrap if zoo_env else None,  # type: ignore[union-attr]
            "env_wrapper": zoo.env_wrapper() if zoo_env else None,  # type: ignore[union-attr]
        }
        result = evaluate_model(
            model,
            env_id,
            episodes=args.episodes,
            seed=args.seed,
            deterministic=not args.stochastic,
            env_kwargs=env_kwargs,
            **wrappers,
        )
        result["model"] = str(args.model)
        if video is not None:  # the video sees what the evaluation saw
            result["video"] = str(
                record_video(
                    model,
                    str(env_id),
                    video,
                    episodes=args.video_episodes or 1,
                    seed=args.seed,
                    deterministic=not args.stochastic,
                    env_kwargs=env_kwargs,
                    max_frames=args.video_length or DEFAULT_MAX_FRAMES,
                    force=args.force,
                    **wrappers,
                )
            )
    if args.json:
        _print_json(result)
    else:
        print(
            f"{args.model} on {env_id}: return {result['mean_return']:.1f} ± {result['std_return']:.1f} "
            f"over {result['episodes']} episodes "
            f"(min {result['min_return']:.1f}, max {result['max_return']:.1f})"
        )
        if video is not None:
            print(f"video: {result['video']}")
    return 0


def inspect_model(path: str) -> dict[str, Any]:
    """What ``rlsurgery inspect`` reports about a model zip."""
    from rlsurgery.agents.sb3_zip import sb3_loading
    from rlsurgery.core.errors import UntrustedModelError
    from rlsurgery.core.model_zip import check_surgery_log, safe_custom_objects
    from rlsurgery.io import algorithm_of, read_model_data, surgery_log_of
    from rlsurgery.zoo import find_zoo_run

    data = read_model_data(model_file(path))
    check_surgery_log(path, data)
    try:
        safe_custom_objects(path, data)
        needs_trust = None
    except UntrustedModelError as exc:
        needs_trust = str(exc).partition("refusing to load")[2].lstrip(": ")
    keys = (
        "rls_env_id",
        "rls_recipe",
        "num_timesteps",
        "_n_updates",
        "seed",
        "gamma",
        "learning_rate",
        "batch_size",
    )
    info = {k.removeprefix("rls_").lstrip("_"): readable_entry(data, k) for k in keys}
    zoo = find_zoo_run(path)
    if zoo is not None and not info["env_id"]:  # an rl-zoo3 run names its env in args.yml
        info["env_id"] = zoo.env_id
    if (
        zoo is not None
        and str(info["learning_rate"]).startswith("pickled")
        and "learning_rate" in zoo.hyperparams
    ):
        info["learning_rate"] = f"{describe_value(zoo.hyperparams['learning_rate'])} (the run's config.yml)"
    for schedule in ("lr_schedule", "exploration_schedule", "clip_range"):
        if schedule in data:
            info[schedule] = readable_entry(data, schedule)
    return {
        "model": str(path),
        "algorithm": algorithm_of(data).__name__,
        "policy_module": (data.get("policy_class") or {}).get("__module__", ""),
        **info,
        "policy_kwargs": {
            k: v for k, v in (data.get("policy_kwargs") or {}).items() if not isinstance(v, dict)
        },
        "loads_without_trust": needs_trust is None,
        **({"needs_trust": needs_trust} if needs_trust else {}),
        **(
            {"zoo_run": {"folder": str(zoo.folder), "algo": zoo.algo, "env_kwargs": zoo.env_kwargs}}
            if zoo
            else {}
        ),
        **sb3_loading(data),  # loads_in_sb3; needs_rlsurgery: the surgeries plain SB3 cannot build
        **({"task_log": data["rls_task_log"]} if data.get("rls_task_log") else {}),  # task switches
        "surgery_log": surgery_log_of(data),
    }


def describe_value(value: Any) -> Any:
    """A schedule or callable in words (``constant 0.0023``, ``linear 0.001 → 0``); other values as
    they are."""
    from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule, LinearSchedule

    from rlsurgery.recipes import LinearDecay

    if isinstance(value, FloatSchedule):
        return describe_value(value.value_schedule)
    if isinstance(value, ConstantSchedule):
        return f"constant {value.val:g}"
    if isinstance(value, LinearSchedule):
        share = f" over the first {value.end_fraction:.0%} of training" if value.end_fraction < 1 else ""
        return f"linear {value.start:g} → {value.end:g}{share}"
    if isinstance(value, LinearDecay):
        return f"linear {value.initial:g} → 0"
    if isinstance(value, float):
        return f"constant {value:g}"
    if callable(value):
        return f"a Python callable ({getattr(value, '__qualname__', type(value).__name__)})"
    return value


def readable_entry(data: dict[str, Any], key: str) -> Any:
    """Entry ``key`` of a model's data record, readable: a pickled entry through its plain copy
    (described), or its type if only unpickling could read it (nothing is unpickled)."""
    from rlsurgery.core.model_zip import PLAIN_DATA_KEY
    from rlsurgery.core.plain_data import PlainDataError, decode

    value = data.get(key)
    if not (isinstance(value, dict) and ":serialized:" in value):
        return describe_value(value) if key.endswith(("schedule", "clip_range")) else value
    plain = (data.get(PLAIN_DATA_KEY) or {}).get("entries", {})
    if key in plain:
        try:
            return describe_value(decode(plain[key]))
        except PlainDataError:
            pass
    kind = str(value.get(":type:", "an object")).removeprefix("<class '").removesuffix("'>")
    return f"pickled {kind} (not read: only --trust would unpickle it)"


def cmd_operate(args: argparse.Namespace) -> int:
    from rlsurgery.core.errors import ParameterError
    from rlsurgery.core.model_zip import trusted_zips
    from rlsurgery.operate import check_output, last_report, operate_file

    if args.episodes is not None and not args.report:
        raise ParameterError("--episodes sets the episodes of the report; add --report")
    if args.onnx and not args.report:
        raise ParameterError("--onnx adds ONNX Runtime latency to the report; add --report")
    model_file(args.model)
    output = args.output if args.zoo_layout else check_output(args.output, args.force)  # -o NAME: NAME.zip
    with trusted_zips(args.trust):  # the model, and zips the surgery reads (a teacher)
        result = operate_file(
            args.model,
            args.surgery,
            output,
            env_id=args.env,
            force=args.force,
            report=args.report,
            episodes=args.episodes,
            eval_seed=args.eval_seed,
            zoo_layout=args.zoo_layout,
            onnx=args.onnx,
        )
    output = getattr(result, "rls_saved_path", output)
    report = last_report(result) if args.report else None
    summary = {
        "model": args.model,
        "output": str(output),
        "algorithm": type(result).__name__,
        "surgery_log": getattr(result, "surgery_log", []),
        **({"report": report.as_dict()} if report is not None else {}),
        **({"distillation": distilled} if (distilled := distillation_report(result)) else {}),
    }
    if args.json:
        _print_json(summary)
    else:
        print(f"{args.model} -> {output} ({summary['algorithm']}, {args.surgery})")
        for key, value in summary.get("distillation", {}).items():
            if key != "round_losses":
                print(f"  {key:20s} {value}")
        if report is not None:
            print(report.table(indent="  "))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from rlsurgery.export import export, parity
    from rlsurgery.io import load

    output = Path(args.output)
    if output.is_dir():
        raise FileExistsError(f"{output} is a folder; give the ONNX file a name (-o FILE.onnx)")
    if output.exists() and not args.force:
        raise FileExistsError(f"{output} exists; pass --force to overwrite it")
    model = load(model_file(args.model), device="cpu", trust=args.trust)
    export(model, output, opset=args.opset)
    summary: dict[str, Any] = {"model": args.model, "output": str(output), "bytes": output.stat().st_size}
    if args.check:
        summary["parity"] = parity(model, output, n=args.check, seed=args.seed)
    if args.json:
        _print_json(summary)
    else:
        print(f"{args.model} -> {output} ({summary['bytes']} bytes, {type(model).__name__})")
        for key, value in summary.get("parity", {}).items():
            print(f"  {key:20s} {value}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from rlsurgery.core.report import OperationReport

    info = inspect_model(args.model)
    if args.json:
        _print_json(info)
        return 0
    for key, value in info.items():
        if key == "task_log":
            value = "; ".join(f"task {r['from']} → {r['task']} at step {r['step']}" for r in value)
            print(f"{'task switches':<20} {value}")
        elif key != "surgery_log":
            print(f"{key:<20} {value}")
    log = info["surgery_log"]
    print(f"{'surgeries':<20} {len(log)}")
    for i, record in enumerate(log, 1):
        params = ", ".join(f"{k}={v}" for k, v in record.get("params", {}).items())
        how = f"step {record.get('step', 0)}, {record.get('applied', 'build')}"
        print(f"  {i}. {record['key']} ({how}) {params}")
        if isinstance(record.get("report"), dict):
            print(OperationReport.from_dict(record["report"]).table(indent="     "))
    return 0


def _study_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``compare`` and ``ablate``."""
    p.add_argument(
        "--hyperparams",
        nargs="+",
        action="extend",
        metavar="NAME:VALUE",
        help="hyperparameters over every variant's, rl-zoo3 style (learning_rate:0.001 batch_size:64)",
    )
    p.add_argument(
        "--env-kwargs",
        nargs="+",
        action="extend",
        metavar="NAME:VALUE",
        help="keyword arguments of every env",
    )
    p.add_argument("--suite", help="a bundled suite (classic, minatar, ...) or a suite YAML path")
    p.add_argument("--env", action="append", metavar="ID", help="an environment id (repeatable)")
    p.add_argument("--seeds", type=positive_int, help="number of seeds (0..N-1)")
    p.add_argument("--steps", type=positive_int, help="training steps per run (default: the suite's budget)")
    p.add_argument("--eval-freq", type=positive_int, help="evaluate every N env steps (default: the suite's)")
    p.add_argument(
        "--eval-episodes", type=positive_int, help="greedy episodes per evaluation (default: the suite's)"
    )
    p.add_argument("--workers", type=positive_int, help="local worker processes (default: one per core)")
    p.add_argument("--backend", default="local", choices=["local", "ray"], help="where runs execute")
    p.add_argument("--ray-address", help="address of an existing Ray cluster (default: a local Ray)")
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], help="torch device of each run (default auto)"
    )
    p.add_argument(
        "--out",
        help="study folder (default studies/NAME): new, empty, or this study's own (a rerun resumes it)",
    )
    p.add_argument("--name", help="study name")
    p.add_argument("--save-models", action="store_true", help="keep each run's model zip")
    p.add_argument("--trust", action="store_true", help=TRUST_HELP)
    p.add_argument(
        "--metric",
        action="append",
        metavar="KEY",
        help="keep this logger value of every run, e.g. train/approx_kl (a prefix ending in / keeps "
        "all keys under it; repeatable)",
    )
    p.add_argument(
        "--reps", type=positive_int, default=2000, help="bootstrap resamples of the CIs (default 2000)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress display")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _common_env_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"steps": args.steps, "eval_freq": args.eval_freq, "n_eval_episodes": args.eval_episodes}


def _apply_zoo_options(spec: Any, args: argparse.Namespace) -> None:
    """``--hyperparams`` over every variant's hyperparameters (checked against each variant's
    algorithm, naming the flag) and ``--env-kwargs`` over every env's arguments."""
    from rlsurgery.hyperparams import check_hyperparams, parse_hyperparams
    from rlsurgery.recipes import load_recipe

    hyperparams = parse_hyperparams(args.hyperparams)
    env_kwargs = parse_hyperparams(args.env_kwargs, "--env-kwargs", owned={})
    for variant in spec.variants if hyperparams else ():
        check_hyperparams(
            load_recipe(variant.recipe).algorithm, hyperparams, f"--hyperparams (variant {variant.name})"
        )
        variant.hyperparams = {**variant.hyperparams, **hyperparams}
    if env_kwargs:
        spec.envs = [e.with_overrides(env_kwargs={**e.env_kwargs, **env_kwargs}) for e in spec.envs]


def _run_and_print(spec: Any, args: argparse.Namespace) -> int:
    from rlsurgery.bench.runner import run_study, write_study_report

    _apply_zoo_options(spec, args)

    folder = run_study(
        spec,
        args.out,
        backend=args.backend,
        workers=args.workers,
        ray_address=args.ray_address,
        progress=not args.no_progress,
        report=False,
        trust=args.trust,
    )
    return _print_report(write_study_report(folder, reps=args.reps), folder, args.json)


def _print_report(written: dict[str, Any], folder: Any, as_json: bool) -> int:
    if as_json:
        sys.stdout.write(written["summary"].read_text(encoding="utf-8"))
    else:
        print(written["text"])
        print(f"report: {written['report']}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from rlsurgery.bench.study import StudySpec, Variant, load_study, seed_list, select_envs
    from rlsurgery.core.errors import StudyError

    common = _common_env_settings(args)
    if args.variant and not args.study:
        raise StudyError("--variant selects variants of a STUDY.yaml (with --agents, list only those)")
    if args.study:
        spec = load_study(args.study)
        if spec.tasks and (args.suite or args.env):
            raise StudyError(f"{args.study} trains through its tasks; --suite and --env do not apply to it")
        if spec.tasks:
            spec.tasks = [t.with_overrides(**common) for t in spec.tasks]
        elif args.suite or args.env:
            spec.envs = select_envs(args.suite, args.env, **common)
        else:
            spec.envs = [e.with_overrides(**common) for e in spec.envs]
        spec.seeds = seed_list(args.seeds) if args.seeds is not None else spec.seeds
        spec.name = args.name or spec.name
        spec.device = args.device or spec.device
        spec.save_models = spec.save_models or args.save_models
        spec.baseline = args.baseline or spec.baseline
        spec.metrics = [*spec.metrics, *(args.metric or [])]
        if args.variant:
            _keep_variants(spec, args.variant)
        spec.__post_init__()  # re-check what the options changed
    elif args.agents:
        names = args.agents
        spec = StudySpec(
            name=args.name or "-vs-".join(names),
            variants=[Variant(n, n) for n in names],
            envs=select_envs(args.suite, args.env, **common),
            seeds=seed_list(args.seeds if args.seeds is not None else 5),
            baseline=args.baseline or names[0],
            device=args.device or "auto",
            save_models=args.save_models,
            metrics=args.metric or [],
            command_line=True,
        )
    else:
        raise StudyError("give a STUDY.yaml, or --agents A,B,... with --suite or --env")
    return _run_and_print(spec, args)


def cmd_tune(args: argparse.Namespace) -> int:
    from rlsurgery.tune import TuneError, TuneSettings, tune
    from rlsurgery.tune.tuner import load_tune_file

    options = {
        "sampler": args.sampler,
        "pruner": args.pruner,
        "trials": args.trials,
        "seeds_per_trial": args.seeds_per_trial,
        "steps": args.steps,
        "eval_freq": args.eval_freq,
        "n_eval_episodes": args.n_eval_episodes,
        "metric": args.metric,
        "workers": args.workers,
        "storage": args.storage,
        "seed": args.seed,
        "final_seeds": args.final_seeds,
        "device": args.device,
        "backend": args.backend,
        "ray_address": args.ray_address,
        "out": args.out,
    }
    if args.env_id is None:  # RECIPE is a tune file: its settings, with the options given on top
        if args.space:
            raise TuneError(
                "a tune file holds its space: give TUNE.yaml alone, or RECIPE ENV_ID --space SPACE.yaml"
            )
        settings = load_tune_file(args.recipe, **options)
    else:
        if not args.space:
            raise TuneError("--space SPACE.yaml is needed with RECIPE ENV_ID")
        given = {k: v for k, v in options.items() if v is not None}
        out = given.pop("out", None) or f"tunes/{Path(str(args.recipe)).stem}-{args.env_id.replace('/', '_')}"
        settings = TuneSettings(args.recipe, args.env_id, args.space, out, **given)
    summary = tune(settings)
    if args.json:
        _print_json(summary)
        return 0
    best = summary["best"]
    if "trials" in summary:
        print(f"trials: {', '.join(f'{n} {k}' for k, n in summary['trials'].items() if n)}")
        print(f"best: trial {best['trial']}, {settings.metric} {best['value']:.4g}: {best['config']}")
    else:
        print(
            f"population of {len(summary['population'])}: best member {best['member']}, {best['value']:.4g}"
        )
        print(f"best model: {summary['best_model']}; its final configuration: {best['config']}")
    print(
        f"best recipe: {summary['best_recipe']}  (rlsurgery train {summary['best_recipe']} {settings.env_id})"
    )
    final = summary.get("final_check")
    if final:
        for row in final["tables"].get("per_env", []):
            print(f"final check, {row['variant']}: mean {row['mean']:.4g} over {row['n_done']} fresh seeds")
        for row in final["tables"].get("improvement", []):
            print(
                f"P({row['variant']} > {row['baseline']}) = {row['probability']:.2f} "
                f"[{row['probability_low']:.2f}, {row['probability_high']:.2f}]  ({final['folder']})"
            )
    return 0


def _keep_variants(spec: Any, names: list[str]) -> None:
    """Run only the study's variants ``names`` (the others' stored runs stay in the folder and
    its report; a baseline left out is kept from the stored study)."""
    from rlsurgery.core.errors import StudyError

    unknown = [n for n in names if n not in spec.variant_names]
    if unknown:
        raise StudyError(
            f"--variant: {', '.join(map(repr, unknown))} is not a variant of the study "
            f"(variants: {', '.join(spec.variant_names)})"
        )
    spec.variants = [v for v in spec.variants if v.name in names]
    if spec.baseline not in names:
        spec.baseline = None


def cmd_ablate(args: argparse.Namespace) -> int:
    from rlsurgery.bench.study import StudySpec, ablation_variants, seed_list, select_envs

    variants = ablation_variants(args.recipe, add_one=args.add_one)
    spec = StudySpec(
        name=args.name or f"ablate-{variants[0].name}",
        variants=variants,
        envs=select_envs(args.suite, args.env, **_common_env_settings(args)),
        seeds=seed_list(args.seeds if args.seeds is not None else 5),
        baseline=variants[0].name,
        device=args.device or "auto",
        save_models=args.save_models,
        metrics=args.metric or [],
        command_line=True,
    )
    return _run_and_print(spec, args)


def cmd_report(args: argparse.Namespace) -> int:
    from rlsurgery.bench.runner import write_study_report

    return _print_report(write_study_report(args.study_dir, reps=args.reps), args.study_dir, args.json)


def cmd_suites(args: argparse.Namespace) -> int:
    from rlsurgery.bench.suites import available_suites, load_suite

    rows = []
    for name in available_suites():
        suite = load_suite(name)
        rows.append(
            {"name": name, "description": suite.description, "envs": [e.as_dict() for e in suite.envs]}
        )
    if args.json:
        _print_json(rows)
        return 0
    for row in rows:
        print(f"{row['name']}: {row['description']}")
        for env in row["envs"]:
            print(f"  {env['env_id']:<26} {env['steps'] or '-':>8} steps  ref {env['reference_score']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rlsurgery`` command."""
    parser = argparse.ArgumentParser(
        prog="rlsurgery", description="Composable surgeries on Stable-Baselines3 agents."
    )
    parser.add_argument("--version", action="version", version=f"rlsurgery {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    # also after the command (``rlsurgery train ... --debug``); SUPPRESS keeps the one given before it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_subparser(common)
    )

    p = sub.add_parser("catalog", help="list the surgery catalog")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--section", type=int_type(1, 32), help="only this seed section (1-32)")
    p.add_argument("--status", choices=["implemented", "planned"], help="only this status")
    p.add_argument("--markdown", action="store_true", help="print docs/surgeries.md")
    p.add_argument("-o", "--output", help="with --markdown: write to this file")
    p.set_defaults(func=cmd_catalog)

    p = sub.add_parser("recipes", help="list the bundled recipes")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("train", help="train a recipe on an environment")
    p.add_argument("recipe", help="recipe name (dqn, rainbow, ...) or YAML path")
    p.add_argument("env_id", help="Gymnasium id, e.g. CartPole-v1")
    p.add_argument(
        "--surgery",
        action="append",
        metavar="KEY[:p=v,...]",
        help="add a surgery or change a recipe surgery's parameters (repeatable; each key once)",
    )
    p.add_argument(
        "--explore",
        action="append",
        metavar="KEY[:p=v,...]",
        help="replace the recipe's exploration by this exploration surgery (repeatable: one "
        "action-selection strategy plus any intrinsic rewards), e.g. --explore ucb_bonus:c=1",
    )
    p.add_argument(
        "--hyperparams",
        nargs="+",
        action="extend",
        metavar="NAME:VALUE",
        help="override the recipe's hyperparameters, rl-zoo3 style: learning_rate:0.001 batch_size:64 "
        'policy_kwargs:"dict(net_arch=[64, 64])" (values are read as literals, never run)',
    )
    p.add_argument("--steps", type=positive_int, help="training steps (default: the recipe's n_timesteps)")
    p.add_argument("--seed", type=seed_int, default=0, help="random seed (default 0)")
    p.add_argument("--out", help="run folder (default runs/RECIPE-ENV-seedS)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="torch device")
    p.add_argument("--force", action="store_true", help="write into an existing run folder")
    p.add_argument(
        "--eval-episodes", type=positive_int, default=20, help="greedy evaluation episodes (default 20)"
    )
    p.add_argument(
        "--env-kwargs",
        nargs="+",
        action="extend",
        metavar="NAME:VALUE",
        help="keyword arguments of the env, rl-zoo3 style, over the recipe's "
        "(e.g. --env-kwargs sutton_barto_reward:True)",
    )
    p.add_argument(
        "--trained-agent",
        metavar="MODEL",
        help="go on training this saved model (zip, rlsurgery or rl-zoo3 run folder), its surgeries kept",
    )
    p.add_argument(
        "--save-freq", type=positive_int, metavar="N", help="save a checkpoint every N steps (checkpoints/)"
    )
    p.add_argument("--tensorboard-log", metavar="DIR", help="TensorBoard folder (default RUN/tb)")
    p.add_argument(
        "--zoo-layout",
        action="store_true",
        help="write the run as rl-zoo3 does (--out is the log folder, default logs: logs/ALGO/ENV_N/ENV.zip "
        "with ENV/args.yml, ENV/config.yml), so rl-zoo3's enjoy and record_video read it",
    )
    p.add_argument("--trust", action="store_true", help=TRUST_HELP)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--verbose", type=int_type(0, 2), default=0, help="SB3 verbosity (0, 1, 2)")
    p.add_argument("--json", action="store_true", help="print the evaluation as JSON")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a saved model")
    p.add_argument("model", help="model zip")
    p.add_argument("--episodes", type=positive_int, default=20, help="episodes (default 20)")
    p.add_argument("--env", help="Gymnasium id (default: the one the model was trained on)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the evaluation env")
    p.add_argument("--stochastic", action="store_true", help="exploratory instead of greedy actions")
    p.add_argument("--trust", action="store_true", help=TRUST_HELP)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="torch device")
    p.add_argument(
        "--video",
        metavar="OUT.mp4|OUT.gif",
        help="also record episodes of the same seed (greedy unless --stochastic) into this video, from "
        "the env's rgb_array frames at its render_fps",
    )
    p.add_argument(
        "--video-episodes", type=positive_int, help="with --video: episodes in the video (default 1)"
    )
    p.add_argument(
        "--video-length",
        type=positive_int,
        help="with --video: at most this many frames (default 1000)",
    )
    p.add_argument("--force", action="store_true", help="with --video: overwrite an existing video file")
    p.add_argument("--json", action="store_true", help='print JSON (the video written under "video")')
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("operate", help="apply a surgery to a saved model (e.g. distil it into a smaller one)")
    p.add_argument("model", help="model zip (any SB3 algorithm rlsurgery knows)")
    p.add_argument("--surgery", required=True, metavar="KEY[:p=v,...]", help="the surgery and its parameters")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="where to save the operated model (a name without a suffix gets .zip, as SB3 saves)",
    )
    p.add_argument("--env", help="Gymnasium id, when the model does not record it")
    p.add_argument(
        "--zoo-layout",
        action="store_true",
        help="-o is an rl-zoo3 log folder: save the result as its next run (ALGO/ENV_N/ENV.zip, the source "
        "run's settings beside it), for rl-zoo3's enjoy",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--trust", action="store_true", help=TRUST_HELP)
    p.add_argument(
        "--report",
        action="store_true",
        help="measure the operation (parameters, non-zero parameters, zip bytes, predict latency at "
        "batch 1 and 256, greedy return before and after) and keep the report in the provenance log",
    )
    p.add_argument(
        "--episodes",
        type=positive_int,
        help="with --report: greedy episodes of each return measurement (default 10)",
    )
    p.add_argument("--eval-seed", type=seed_int, default=0, help="with --report: seed of the evaluation env")
    p.add_argument(
        "--onnx",
        action="store_true",
        help="with --report: also time the policy exported to ONNX in ONNX Runtime (batch 1 and 256)",
    )
    p.add_argument("--json", action="store_true", help='print JSON (the report under "report")')
    p.set_defaults(func=cmd_operate)

    p = sub.add_parser(
        "export",
        help="write a saved model's greedy policy as ONNX (obs -> action, and Q-values / logits / mean "
        "action)",
    )
    p.add_argument("model", help="model zip, or a run folder")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--trust", action="store_true", help=TRUST_HELP)
    p.add_argument("--opset", type=positive_int, default=18, help="ONNX opset (default 18)")
    p.add_argument(
        "--check",
        type=int,
        default=100,
        metavar="N",
        help="compare the file, run by ONNX Runtime, with model.predict on N sampled observations "
        "(default 100; 0: no check)",
    )
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the observations of --check")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "inspect", help="show a model's algorithm, settings and surgery provenance (with the stored reports)"
    )
    p.add_argument("model", help="model zip")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "compare",
        help="compare agents on Gymnasium benchmarks (a study)",
        description="Run a study (variants x envs x seeds) in a local process pool or on Ray, store every "
        "result in STUDY_DIR/study.db, then write tables, plots and report.html. Rerunning the same "
        "command resumes an interrupted study.",
    )
    p.add_argument("study", nargs="?", help="a study YAML (or use --agents with --suite/--env)")
    p.add_argument("--agents", type=name_list, help="comma-separated recipes to compare, e.g. dqn,rainbow")
    p.add_argument("--baseline", help="variant the others are compared against (default: the first)")
    p.add_argument(
        "--variant",
        action="append",
        metavar="NAME",
        help="run only this variant of the study file (repeatable); the folder's other runs are kept",
    )
    _study_options(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "ablate",
        help="leave-one-out (and add-one) ablation of a recipe's surgeries",
        description="Compare RECIPE with RECIPE minus each of its surgeries; with --add-one also the base "
        "algorithm alone and with each surgery alone.",
    )
    p.add_argument("recipe", help="recipe name or YAML path")
    p.add_argument("--add-one", action="store_true", help="also the base algorithm plus each surgery alone")
    _study_options(p)
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser(
        "tune",
        help="search a recipe's hyperparameters and surgeries (Optuna), then check the best on fresh seeds",
        description="Search SPACE.yaml (see rlsurgery.tune.space) for RECIPE on ENV_ID with Optuna: each "
        "trial trains --seeds-per-trial seeds and scores their mean; pruners stop weak trials from their "
        "intermediate evaluations. The trials are kept in Optuna's storage (OUT/tune.db unless --storage): "
        "rerunning the same command resumes. Writes OUT/best.yaml (a recipe), OUT/trials.csv, and a final "
        "study of the defaults against the best configuration on fresh seeds (OUT/final).",
    )
    p.add_argument("recipe", help="recipe name or YAML path; or a tune file (recipe, env, space, settings)")
    p.add_argument("env_id", nargs="?", help="Gymnasium environment id (not with a tune file)")
    p.add_argument("--space", help="the search space YAML (with RECIPE ENV_ID)")
    p.add_argument(
        "--sampler",
        help="grid, random, tpe or gp (default tpe), or a catalog spec: grid_search, random_search, "
        "bayesian_optimization[:model=gp,n_startup_trials=N,...]; over a space's architecture: evolution "
        "(evolutionary_nas[:population_size=P,sample_size=S]) or random-nas (random_search_nas)",
    )
    p.add_argument(
        "--pruner",
        help="none (default), median, successive-halving or hyperband, or a catalog spec: "
        "successive_halving[:reduction_factor=N,min_resource=N], hyperband[:...]",
    )
    p.add_argument("--trials", type=positive_int, help="finished trials to reach (default 20)")
    p.add_argument("--seeds-per-trial", type=positive_int, help="seeds a trial trains (default 1)")
    p.add_argument("--steps", type=positive_int, help="steps per seed (default: the recipe's n_timesteps)")
    p.add_argument("--eval-freq", type=positive_int, help="steps between evaluations (default steps / 10)")
    p.add_argument("--n-eval-episodes", type=positive_int, help="episodes per evaluation (default 5)")
    p.add_argument(
        "--metric", choices=["final", "auc"], help="the last evaluation (default) or the curve's mean"
    )
    p.add_argument("--workers", type=positive_int, help="trials run in parallel (default 1)")
    p.add_argument("--storage", help="an Optuna storage URL (default sqlite:///OUT/tune.db)")
    p.add_argument("--seed", type=seed_int, help="seed of the sampler (default 0)")
    p.add_argument("--final-seeds", type=int, help="fresh seeds of the final check (default 5; 0: none)")
    p.add_argument("--device", help="torch device of the trials (default cpu)")
    p.add_argument(
        "--backend",
        choices=["local", "ray"],
        help="where population_based_training's members and the final check run (default local)",
    )
    p.add_argument("--ray-address", help="an existing Ray cluster (with --backend ray)")
    p.add_argument("--out", help="output folder (default tunes/RECIPE-ENV)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("report", help="rebuild a study's tables, plots and report from its store")
    p.add_argument("study_dir", help="study folder (holds study.db)")
    p.add_argument(
        "--reps", type=positive_int, default=2000, help="bootstrap resamples of the CIs (default 2000)"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("suites", help="list the bundled benchmark suites")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_suites)
    return parser


def _subparser(common: argparse.ArgumentParser) -> type[argparse.ArgumentParser]:
    """The parser class of the subcommands: each also takes the options of ``common``."""

    class SubParser(argparse.ArgumentParser):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**{**kwargs, "parents": [*kwargs.get("parents", []), common]})

    return SubParser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlsurgery`` command.

    :return: 0, 2 for a user error (one line on stderr), 1 for an internal error (one line and the
        hint to rerun with ``--debug``, which raises it with its traceback), 130 when interrupted
    """
    import sqlite3

    # a user's mistake: a SurgeryError (a ValueError) or another ValueError, a file-system error
    # (a missing file, a folder for a file, ...), an SQLite error (a damaged study store)
    user_errors = (ValueError, OSError, sqlite3.Error)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's refusal (2, its message printed), --help or --version (0)
        return exc.code if isinstance(exc.code, int) else 2
    command = f"rlsurgery {args.command}"
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        # the reader went away (``rlsurgery inspect m.zip | head``): stop quietly; Python's recipe
        # points stdout at devnull so that the flush at exit does not complain again
        _silence_stdout()
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except user_errors as exc:
        if getattr(args, "debug", False):
            raise
        print(f"{command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if getattr(args, "debug", False):
            raise
        print(f"{command}: internal error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        print(f"{command}: rerun with --debug to see the traceback", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (an OSError's own message is kept whole)."""
    text = str(exc) or type(exc).__name__
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _silence_stdout() -> None:
    """Point stdout's file descriptor at devnull (nothing to do for a stdout without one)."""
    try:
        fileno = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fileno)
    os.close(devnull)
