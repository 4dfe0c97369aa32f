"""The ``rlsurgery`` command line (``python -m rlsurgery`` is the same).

Subcommands: ``catalog``, ``recipes``, ``train``, ``evaluate``, ``inspect``. Every
command that produces results prints them as JSON with ``--json``. User errors (bad
key, bad parameter, malformed recipe, occupied run folder) print one line to stderr
and exit with status 2, before anything is trained or written.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from rlsurgery import __version__


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
    from rlsurgery.training import train_run

    evaluation = train_run(
        args.recipe,
        args.env_id,
        surgeries=args.surgery,
        steps=args.steps,
        seed=args.seed,
        out=args.out,
        device=args.device,
        force=args.force,
        eval_episodes=args.eval_episodes,
        progress_bar=not args.no_progress,
        verbose=args.verbose,
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
    from rlsurgery.io import load, read_model_data
    from rlsurgery.training import evaluate_model

    data = read_model_data(args.model)
    env_id = args.env or data.get("rls_env_id")
    if not env_id:
        raise SystemExit("rlsurgery evaluate: the model does not record its environment; pass --env ID")
    model = load(args.model, device=args.device)
    env_kwargs = data.get("rls_env_kwargs") if env_id == data.get("rls_env_id") else None
    result = evaluate_model(
        model,
        env_id,
        episodes=args.episodes,
        seed=args.seed,
        deterministic=not args.stochastic,
        env_kwargs=env_kwargs if isinstance(env_kwargs, dict) else None,
    )
    result["model"] = str(args.model)
    if args.json:
        _print_json(result)
    else:
        print(
            f"{args.model} on {env_id}: return {result['mean_return']:.1f} ± {result['std_return']:.1f} "
            f"over {result['episodes']} episodes "
            f"(min {result['min_return']:.1f}, max {result['max_return']:.1f})"
        )
    return 0


def inspect_model(path: str) -> dict[str, Any]:
    """What ``rlsurgery inspect`` reports about a model zip."""
    from rlsurgery.io import algorithm_of, read_model_data, surgery_log_of

    data = read_model_data(path)
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
    info = {k.removeprefix("rls_").lstrip("_"): data.get(k) for k in keys}
    return {
        "model": str(path),
        "algorithm": algorithm_of(data).__name__,
        "policy_module": (data.get("policy_class") or {}).get("__module__", ""),
        **info,
        "policy_kwargs": {
            k: v for k, v in (data.get("policy_kwargs") or {}).items() if not isinstance(v, dict)
        },
        "surgery_log": surgery_log_of(data),
    }


def cmd_inspect(args: argparse.Namespace) -> int:
    info = inspect_model(args.model)
    if args.json:
        _print_json(info)
        return 0
    for key, value in info.items():
        if key != "surgery_log":
            print(f"{key:<14} {value}")
    log = info["surgery_log"]
    print(f"surgeries      {len(log)}")
    for i, record in enumerate(log, 1):
        params = ", ".join(f"{k}={v}" for k, v in record.get("params", {}).items())
        how = f"step {record.get('step', 0)}, {record.get('applied', 'build')}"
        print(f"  {i}. {record['key']} ({how}) {params}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rlsurgery`` command."""
    parser = argparse.ArgumentParser(
        prog="rlsurgery", description="Composable surgeries on Stable-Baselines3 agents."
    )
    parser.add_argument("--version", action="version", version=f"rlsurgery {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("catalog", help="list the surgery catalog")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--section", type=int, help="only this seed section (1-32)")
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
        help="add a surgery or change a recipe surgery's parameters (repeatable)",
    )
    p.add_argument("--steps", type=int, help="training steps (default: the recipe's n_timesteps)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", help="run folder (default runs/RECIPE-ENV-seedS)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="torch device")
    p.add_argument("--force", action="store_true", help="write into an existing run folder")
    p.add_argument("--eval-episodes", type=int, default=20, help="greedy evaluation episodes (default 20)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--verbose", type=int, default=0, help="SB3 verbosity (0, 1, 2)")
    p.add_argument("--json", action="store_true", help="print the evaluation as JSON")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a saved model")
    p.add_argument("model", help="model zip")
    p.add_argument("--episodes", type=int, default=20, help="episodes (default 20)")
    p.add_argument("--env", help="Gymnasium id (default: the one the model was trained on)")
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluation env")
    p.add_argument("--stochastic", action="store_true", help="exploratory instead of greedy actions")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="torch device")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("inspect", help="show a model's algorithm, settings and surgery provenance")
    p.add_argument("model", help="model zip")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlsurgery`` command."""
    from rlsurgery.core.errors import SurgeryError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SurgeryError, FileNotFoundError, ValueError) as exc:
        print(f"rlsurgery {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
