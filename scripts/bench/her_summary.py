"""Success rates of the HER benchmark (issue 5) from its study folder: tables and a plot.

    python scripts/bench/her_summary.py docs/bench-data/studies/her-bitflip [--json]

A greedy evaluation episode on BitFlip with n bits succeeds when it reaches the goal before
the n-step time limit, i.e. returns more than −n (a failed episode returns exactly −n). Per
variant and environment: the final success rate (last evaluation; mean ± std over seeds, and
each seed's), the first evaluation step at which the mean over seeds reaches 0.9, and the mean
success rate at each evaluation. Writes ``plots/success_rate.png`` (mean over seeds with a 95%
bootstrap band) and ``tables/success_rate.csv`` (one row per evaluation) into the folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from rlsurgery.bench import plots, stats
from rlsurgery.bench.store import ResultStore

GOAL = 0.9


def bitflip_thresholds(store: ResultStore) -> dict[str, float]:
    """Success threshold of each BitFlip entry of the study: −n_bits + 0.5."""
    return {
        env.label: -float(env.env_kwargs["n_bits"]) + 0.5
        for env in store.spec().envs
        if "BitFlip" in env.env_id and "n_bits" in env.env_kwargs
    }


def summary_rows(rates: pd.DataFrame, results) -> list[dict]:
    rows = []
    for variant in stats.study_variants(results):
        for env_id in stats.study_env_ids(results):
            subset = rates[(rates["variant"] == variant) & (rates["env_id"] == env_id)]
            if subset.empty:
                continue
            last = subset.sort_values("step").groupby("seed").tail(1).sort_values("seed")
            by_step = subset.groupby("step")["success_rate"].mean()
            reached = by_step[by_step >= GOAL]
            rows.append(
                {
                    "variant": variant,
                    "env": env_id,
                    "seeds": int(last["seed"].nunique()),
                    "final_mean": float(last["success_rate"].mean()),
                    "final_std": float(last["success_rate"].std(ddof=0)),
                    "final_per_seed": [round(float(v), 2) for v in last["success_rate"]],
                    "first_step_mean_at_goal": int(reached.index[0]) if len(reached) else None,
                    "mean_by_step": {int(step): round(float(v), 3) for step, v in by_step.items()},
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_dir")
    parser.add_argument("--json", action="store_true", help="print JSON rows")
    args = parser.parse_args()
    folder = Path(args.study_dir)
    with ResultStore.open_existing(folder) as store:
        thresholds = bitflip_thresholds(store)
        results = store.results()
        rates = stats.success_rates(store.eval_returns(), thresholds)
    (folder / "tables").mkdir(exist_ok=True)
    rates.to_csv(folder / "tables" / "success_rate.csv", index=False)
    plots.plot_success_rates(
        results, stats.success_rate_curves(results, rates), folder / "plots" / "success_rate.png"
    )
    rows = summary_rows(rates, results)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"| variant | env | seeds | final success rate | per seed | first step with mean ≥ {GOAL} |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        first = "—" if row["first_step_mean_at_goal"] is None else f"{row['first_step_mean_at_goal']:,}"
        final = f"{row['final_mean']:.2f} ± {row['final_std']:.2f}"
        per_seed = ", ".join(map(str, row["final_per_seed"]))
        print(f"| {row['variant']} | {row['env']} | {row['seeds']} | {final} | {per_seed} | {first} |")
    for env_id in dict.fromkeys(row["env"] for row in rows):
        env_rows = [row for row in rows if row["env"] == env_id]
        steps = sorted({step for row in env_rows for step in row["mean_by_step"]})
        print(f"\nMean success rate over training, {env_id}:\n")
        print("| variant | " + " | ".join(f"{step:,}" for step in steps) + " |")
        print("|---|" + "---|" * len(steps))
        for row in env_rows:
            cells = [
                f"{row['mean_by_step'][step]:.2f}" if step in row["mean_by_step"] else "" for step in steps
            ]
            print(f"| {row['variant']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
