"""Before/after table of a pruning study of a trained policy (issue 6), from its study folder.

    python scripts/bench/pruning_summary.py docs/bench-data/studies/pruning-trained-lunarlander

The studies ``pruning_trained*.yaml`` name each setting twice: ``NAME-noft`` (the pruned policy as
it is: no updates, or a learning rate of 0) and ``NAME-ft`` (the same pruning, then fine-tuned); a
setting without a ``-noft`` twin (gradual pruning, which prunes while fine-tuning) has only the
second column. Per setting: each seed's final greedy return and the median over seeds, and the
median over seeds of the mean of the last ``--last`` evaluations (steadier than one evaluation).
"""

from __future__ import annotations

import argparse

import numpy as np

from rlsurgery.bench.store import ResultStore


def cell(evals, variant: str, env_id: str, last: int) -> str:
    runs = evals[(evals["variant"] == variant) & (evals["env_id"] == env_id)]
    if runs.empty:
        return "—"
    finals, tails = [], []
    for _, run in runs.sort_values("step").groupby("seed"):
        finals.append(run["mean_return"].iloc[-1])
        tails.append(run["mean_return"].iloc[-last:].mean())
    seeds = ", ".join(f"{f:.1f}" for f in finals)
    return f"{seeds} (median {np.median(finals):.1f}; last {last}: {np.median(tails):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", help="the study folder")
    parser.add_argument("--last", type=int, default=2, help="evaluations averaged for the steadier column")
    args = parser.parse_args()
    with ResultStore.open_existing(args.study) as store:
        results = store.results()
    evals = results.evals
    settings = list(dict.fromkeys(v.removesuffix("-ft").removesuffix("-noft") for v in results.variants))
    for env_id in results.envs:
        print(f"\n{env_id}: final greedy return per seed (median; median of the last {args.last} evals)")
        print()
        print("| setting | before fine-tuning | after fine-tuning |")
        print("| --- | --- | --- |")
        for setting in settings:
            before = cell(evals, f"{setting}-noft", env_id, args.last)
            after = cell(evals, f"{setting}-ft", env_id, args.last)
            print(f"| {setting} | {before} | {after} |")


if __name__ == "__main__":
    main()
