"""A study's report: tables (CSV), figures (PNG), a JSON summary and one self-contained HTML page.

:func:`write_report` assembles what :mod:`rlsurgery.bench.stats` computes and
:mod:`rlsurgery.bench.plots` draws; :func:`summary_text` is the short plain-text version for a
terminal.
"""

from __future__ import annotations

import base64
import html
import json
import math
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from rlsurgery.bench import plots, stats
from rlsurgery.bench.continual import continual_tables
from rlsurgery.bench.results import StudyResults

if TYPE_CHECKING:  # rollouts load models (torch, SB3): the report only reads what they wrote
    from rlsurgery.bench.rollouts import Rollout

#: Lines of a failed run's error shown in the report (the last line is added when cut)
ERROR_LINES = 8
MISSING = "—"

_PLOT_TITLES = {
    "aggregate_intervals": "Aggregate normalized scores (95% stratified-bootstrap CIs)",
    "performance_profiles": "Performance profiles: fraction of runs above each normalized score",
    "improvement": "Probability of improvement over the baseline",
    "learning_curves": "Greedy evaluation return (mean over finished seeds, 95% bootstrap band)",
    "training_curves": "Training episode return (trailing mean; mean over finished seeds, 95% band)",
    "task_curves": "Each task's normalized return over the sequence (mean over seeds; band: min to max)",
}

# ---------------------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _decimals(value: float) -> int:
    magnitude = abs(value)
    return 1 if magnitude >= 100 else 2 if magnitude >= 1 else 3


def format_number(value: Any, decimals: int | None = None) -> str:
    """A score or time for people: fewer decimals for larger numbers, a dash when undefined.

    :param value: a number (or ``None`` / NaN)
    :param decimals: decimals to show; by default 1 from 100 up, 2 from 1 up, else 3
    :return: the formatted number
    """
    if _is_missing(value):
        return MISSING
    value = float(value)
    return f"{value:.{_decimals(value) if decimals is None else decimals}f}"


def format_interval(point: Any, low: Any, high: Any) -> str:
    """``point [low, high]``.

    :param point: the estimate
    :param low: lower bound of its interval
    :param high: upper bound of its interval
    :return: the formatted estimate and interval
    """
    return f"{format_number(point)} [{format_number(low)}, {format_number(high)}]"


def format_mean_std(mean: Any, std: Any) -> str:
    """``mean ± std``, both with the mean's decimals (only the mean when the std is undefined, as for
    one seed).

    :param mean: the mean
    :param std: the standard deviation
    :return: the formatted pair
    """
    if _is_missing(mean) or _is_missing(std):
        return format_number(mean)
    decimals = _decimals(float(mean))
    return f"{format_number(mean, decimals)} ± {format_number(std, decimals)}"


def _aggregate_display(table: pd.DataFrame) -> pd.DataFrame:
    display = pd.DataFrame({"Variant": table["variant"], "Complete seeds": table["n_runs"]})
    for name, label in stats.AGGREGATE_METRICS:
        display[label] = [
            format_interval(point, low, high)
            for point, low, high in zip(table[name], table[f"{name}_low"], table[f"{name}_high"])
        ]
    return display


def _improvement_display(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Variant": table["variant"],
            "Baseline": table["baseline"],
            "P(variant > baseline)": [
                format_interval(point, low, high)
                for point, low, high in zip(
                    table["probability"], table["probability_low"], table["probability_high"]
                )
            ],
            "Seeds (variant / baseline)": [
                f"{runs} / {baseline_runs}"
                for runs, baseline_runs in zip(table["n_runs"], table["n_runs_baseline"])
            ],
        }
    )


def _per_env_display(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Variant": table["variant"],
            "Environment": table["env_id"],
            "Done": table["n_done"],
            "Failed": table["n_failed"],
            "Unfinished": table["n_unfinished"],
            "Mean ± std": [format_mean_std(mean, std) for mean, std in zip(table["mean"], table["std"])],
            "Median": table["median"].map(format_number),
            "IQM": table["iqm"].map(format_number),
            "Normalized mean": table["normalized_mean"].map(format_number),
            "Mean wall (s)": table["mean_wall_s"].map(format_number),
        }
    )


def _significant(value: Any) -> str:
    return MISSING if _is_missing(value) else f"{float(value):.4g}"


def _metrics_display(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Variant": table["variant"],
            "Environment": table["env_id"],
            "Logger key": table["key"],
            "Runs": table["n_runs"],
            "Values per run": table["n_values"].map(lambda v: format_number(v, 0)),
            "Mean": table["mean"].map(_significant),
            "Max": table["max"].map(_significant),
            "Last": table["last"].map(_significant),
            "Runs with NaN/inf": table["non_finite_runs"],
        }
    )


def _normalization_display(normalizations: dict[str, stats.EnvNormalization]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "Environment": norm.env_id,
                "Random score": format_number(norm.random_score),
                "Random source": norm.random_source,
                "Reference score": format_number(norm.reference_score),
                "Reference source": norm.reference_source,
            }
            for norm in normalizations.values()
        ]
    )


def _runs_display(runs: pd.DataFrame) -> pd.DataFrame:
    display = runs[["run_id", "variant", "env_id", "seed", "status", "final_score", "steps", "wall_s"]].copy()
    for column in ("final_score", "wall_s"):
        display[column] = pd.to_numeric(display[column], errors="coerce").map(format_number)
    return display


def error_excerpt(error: Any, n_lines: int = ERROR_LINES) -> str:
    """The first lines of an error (a traceback), with its last line when cut.

    :param error: the error text (or ``None``)
    :param n_lines: lines kept from the start
    :return: the excerpt
    """
    lines = str(error or "no error recorded").strip().splitlines()
    if len(lines) <= n_lines:
        return "\n".join(lines)
    cut = len(lines) - n_lines - 1
    return "\n".join([*lines[:n_lines], f"… ({cut} more lines)", lines[-1]])


# ---------------------------------------------------------------------------------------------------
# Tables and figures
# ---------------------------------------------------------------------------------------------------


def study_tables(results: StudyResults, reps: int = 2000, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Every table of the report.

    :param results: the study's results
    :param reps: bootstrap replications of the aggregate and improvement CIs
    :param seed: seed of the bootstraps
    :return: ``runs``, ``per_env``, ``aggregate`` (final scores), ``aggregate_auc`` (areas under
        the evaluation curves), ``improvement`` and ``improvement_auc`` when the study has a
        baseline, ``metrics`` when it kept logger values, and for a task sequence ``task_matrix`` and
        ``continual`` (:func:`rlsurgery.bench.continual.continual_tables`)
    """
    tables = {
        "runs": results.runs,
        "per_env": stats.per_env_table(results),
        "aggregate": stats.aggregate_table(results, reps=reps, seed=seed),
        "aggregate_auc": stats.aggregate_table(results, reps=reps, seed=seed, score="auc"),
    }
    if results.baseline is not None:
        tables["improvement"] = stats.improvement_table(results, reps=reps, seed=seed)
        tables["improvement_auc"] = stats.improvement_table(results, reps=reps, seed=seed, score="auc")
    if not results.metrics.empty:
        tables["metrics"] = stats.metrics_table(results)
    if results.tasks and not results.task_evals.empty:
        continual = continual_tables(results, reps=reps, seed=seed)
        tables["task_matrix"], tables["continual"] = continual["matrix"], continual["metrics"]
    return tables


def _write_plots(
    results: StudyResults,
    plots_dir: Path,
    tables: dict[str, pd.DataFrame],
    reps: int,
    curve_reps: int,
    seed: int,
) -> dict[str, Path]:
    drawn = {
        "aggregate_intervals": plots.plot_intervals(
            results, plots_dir / "aggregate_intervals.png", table=tables["aggregate"]
        ),
        "performance_profiles": plots.plot_performance_profiles(
            results, plots_dir / "performance_profiles.png", reps=reps, seed=seed
        ),
        "improvement": plots.plot_improvement(
            results, plots_dir / "improvement.png", table=tables.get("improvement", pd.DataFrame())
        ),
        "learning_curves": plots.plot_learning_curves(
            results, plots_dir / "learning_curves.png", reps=curve_reps, seed=seed
        ),
        "training_curves": plots.plot_training_curves(
            results, plots_dir / "training_curves.png", reps=curve_reps, seed=seed
        ),
        "task_curves": plots.plot_task_curves(results, plots_dir / "task_curves.png"),
    }
    for name, path in drawn.items():
        if path is None:  # a figure of an earlier report in this folder would be stale
            (plots_dir / f"{name}.png").unlink(missing_ok=True)
    return {name: path for name, path in drawn.items() if path is not None}


def _write_tables(tables: dict[str, pd.DataFrame], tables_dir: Path) -> dict[str, Path]:
    for optional in ("improvement", "improvement_auc", "metrics", "task_matrix", "continual"):
        (tables_dir / f"{optional}.csv").unlink(missing_ok=True)
    paths = {}
    for name, table in tables.items():
        paths[name] = tables_dir / f"{name}.csv"
        table.to_csv(paths[name], index=False)
    return paths


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(table.to_json(orient="records"))


def _run_counts(results: StudyResults) -> dict[str, int]:
    status = results.runs["status"]
    return {
        "runs": len(status),
        "done": int((status == "done").sum()),
        "failed": int((status == "failed").sum()),
        "unfinished": int(status.isin(["pending", "running"]).sum()),
    }


def study_summary(
    results: StudyResults, tables: dict[str, pd.DataFrame], generated_at: str, files: dict[str, Any]
) -> dict[str, Any]:
    """The JSON summary: study facts, environment normalization and every table as records.

    :param results: the study's results
    :param tables: :func:`study_tables`
    :param generated_at: when the report was written (ISO 8601)
    :param files: the report's files, relative to its folder
    :return: a JSON-serializable dictionary
    """
    return {
        "study": results.name,
        "description": results.description,
        "generated_at": generated_at,
        "variants": stats.study_variants(results),
        "baseline": results.baseline,
        "envs": [norm.as_dict() for norm in stats.env_normalizations(results).values()],
        "counts": _run_counts(results),
        "tables": {name: _records(table) for name, table in tables.items()},
        "files": files,
    }


# ---------------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2rem; }
.meta { color: #555; } .note { color: #666; font-size: 0.9rem; }
table.table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
table.table th, table.table td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; }
table.table th { background: #f4f4f4; } table.table tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9rem; }
.rollouts { display: flex; flex-wrap: wrap; gap: 1rem; } .rollouts figure { margin: 0; }
pre.error { background: #fff4f4; border-left: 3px solid #c33; padding: 0.5rem; overflow-x: auto;
            font-size: 0.8rem; }
"""


def _html_table(display: pd.DataFrame, kind: str, empty_message: str) -> str:
    if display.empty:
        return f'<p class="note">{html.escape(empty_message)}</p>'
    return display.to_html(index=False, classes=["table", kind], border=0, na_rep=MISSING, escape=True)


def _html_figure(path: Path, title: str) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{encoded}">'
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
    )


def _html_rollouts(rollouts: list[Rollout]) -> str:
    """Each variant's best seed per env, as an embedded GIF (or the note why there is none)."""
    figures, notes = [], []
    for rollout in rollouts:
        what = f"{rollout.variant} on {rollout.env}"
        if rollout.gif is None:
            notes.append(f"<li>{html.escape(what)}: {html.escape(rollout.note)}</li>")
            continue
        encoded = base64.b64encode(rollout.gif.read_bytes()).decode("ascii")
        caption = f"{what}: seed {rollout.seed}, final score {format_number(rollout.final_score)}"
        figures.append(
            f'<figure><img alt="{html.escape(caption)}" src="data:image/gif;base64,{encoded}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    return (
        "<h3>Best seed of each variant</h3>"
        '<p class="note">One greedy episode of the saved model of each variant\'s best seed (the highest '
        "final score) on each environment, on its evaluation env's seed.</p>"
        + (f'<div class="rollouts">{"".join(figures)}</div>' if figures else "")
        + (f'<ul class="note rollout-notes">{"".join(notes)}</ul>' if notes else "")
    )


def _html_header(results: StudyResults, generated_at: str) -> str:
    counts = _run_counts(results)
    variants = [
        html.escape(variant) + (" (baseline)" if variant == results.baseline else "")
        for variant in stats.study_variants(results)
    ]
    description = f"<p>{html.escape(results.description)}</p>" if results.description else ""
    return (
        f"<header><h1>Study: {html.escape(results.name)}</h1>{description}"
        f'<p class="meta">Generated {html.escape(generated_at)} · {counts["runs"]} runs: '
        f"{counts['done']} done, {counts['failed']} failed, {counts['unfinished']} unfinished</p>"
        f'<p class="meta">Variants: {", ".join(variants) or MISSING}</p></header>'
    )


def _html_failures(results: StudyResults) -> str:
    failed = results.runs[results.runs["status"] == "failed"]
    if failed.empty:
        return '<p class="note">No failed runs.</p>'
    items = [
        f"<li><strong>{html.escape(str(run.variant))}</strong> on {html.escape(str(run.env_id))}, "
        f"seed {html.escape(str(run.seed))} (run {html.escape(str(run.run_id))})"
        f'<pre class="error">{html.escape(error_excerpt(run.error))}</pre></li>'
        for run in failed.itertuples(index=False)
    ]
    return f'<ul class="failures">{"".join(items)}</ul>'


def _html_section(title: str, *parts: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{''.join(parts)}</section>"


def _figures(plot_paths: dict[str, Path], *names: str) -> str:
    return "".join(_html_figure(plot_paths[name], _PLOT_TITLES[name]) for name in names if name in plot_paths)


def report_html(
    results: StudyResults,
    tables: dict[str, pd.DataFrame],
    plot_paths: dict[str, Path],
    generated_at: str,
    rollouts: list[Rollout] | None = None,
) -> str:
    """The report as one self-contained HTML page (figures embedded as base64 PNG, GIFs as base64 GIF).

    :param results: the study's results
    :param tables: :func:`study_tables`
    :param plot_paths: the figures written, by name
    :param generated_at: when the report was written
    :param rollouts: the GIFs of each variant's best seed (:mod:`rlsurgery.bench.rollouts`), shown
        beside the learning curves
    :return: the HTML text
    """
    no_aggregate = (
        "No variant has a seed finished on every environment yet."
        if len(results.done)
        else "No finished runs yet: nothing to aggregate."
    )
    sections = [
        _html_header(results, generated_at),
        _html_section(
            "Environments and normalization",
            '<p class="note">normalized score = (score − random) / (reference − random)</p>',
            _html_table(
                _normalization_display(stats.env_normalizations(results)), "envs", "No environments."
            ),
        ),
        _html_section(
            "Aggregate",
            '<p class="note">Normalized final scores over the seeds finished on every environment; '
            "95% stratified-bootstrap confidence intervals (rliable). Lower optimality gap is better.</p>",
            _html_table(_aggregate_display(tables["aggregate"]), "aggregate", no_aggregate),
            _figures(plot_paths, "aggregate_intervals", "performance_profiles"),
        ),
    ]
    sample_efficiency = [
        '<p class="note">Area under the evaluation curve: per run, the mean of its normalized evaluation '
        "scores over all its evaluations (higher: good sooner); seeds finished on every environment; 95% "
        "stratified-bootstrap confidence intervals (rliable).</p>",
        _html_table(_aggregate_display(tables["aggregate_auc"]), "aggregate-auc", no_aggregate),
    ]
    if "improvement_auc" in tables:
        sample_efficiency.append(
            _html_table(
                _improvement_display(tables["improvement_auc"]),
                "improvement-auc",
                "Nothing to compare with the baseline yet.",
            )
        )
    sections.append(_html_section("Sample efficiency", *sample_efficiency))
    if "improvement" in tables:
        sections.append(
            _html_section(
                "Probability of improvement",
                _html_table(
                    _improvement_display(tables["improvement"]),
                    "improvement",
                    "Nothing to compare with the baseline yet.",
                ),
                _figures(plot_paths, "improvement"),
            )
        )
    if results.tasks:
        sections.append(
            _html_section(
                "Task sequence",
                '<p class="note">One agent per variant and seed trains through the tasks in order. Returns '
                "normalized per task; P: average performance after the last task, F: forgetting (performance "
                "right after a task minus at the end), FT: forward transfer against the reference variant "
                "trained on each task alone (Continual World, arXiv 2105.10919); 95% stratified-bootstrap "
                "intervals over seeds (rliable).</p>",
                _html_table(
                    tables.get("continual", pd.DataFrame()), "continual", "No finished sequence yet."
                ),
                _html_table(tables.get("task_matrix", pd.DataFrame()), "task-matrix", ""),
                _figures(plot_paths, "task_curves"),
            )
        )
    curves = _figures(plot_paths, "learning_curves", "training_curves")
    sections += [
        _html_section(
            "Learning curves",
            curves or '<p class="note">No finished run with curves yet.</p>',
            _html_rollouts(rollouts) if rollouts else "",
        ),
        _html_section(
            "Per environment",
            _html_table(_per_env_display(tables["per_env"]), "per-env", "No runs yet."),
        ),
    ]
    if "metrics" in tables:
        sections.append(
            _html_section(
                "Training metrics",
                '<p class="note">Logger values kept at each log dump: per run their mean, maximum and '
                "last value; the table shows the median of each over the finished runs.</p>",
                _html_table(_metrics_display(tables["metrics"]), "metrics", "No values kept."),
            )
        )
    sections += [
        _html_section("Failures", _html_failures(results)),
        _html_section(
            "Runs",
            "<details><summary>All runs</summary>",
            _html_table(_runs_display(results.runs), "runs", "No runs yet."),
            "</details>",
        ),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(results.name)}: study report</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )


# ---------------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------------


def write_report(
    results: StudyResults,
    out_dir: str | Path,
    reps: int = 2000,
    seed: int = 0,
    curve_reps: int = 500,
    rollouts: list[Rollout] | None = None,
) -> dict[str, Any]:
    """Write a study's report into a folder.

    Layout: ``plots/*.png``, ``tables/{runs,per_env,aggregate,aggregate_auc,improvement,improvement_auc,
    metrics}.csv`` (the improvement tables only with a baseline, metrics only when the study kept
    logger values), ``summary.json``, ``summary.txt`` and ``report.html`` (self-contained). Files
    of an earlier report in the folder that this one does not produce are removed.

    :param results: the study's results
    :param out_dir: the folder (created if needed)
    :param reps: bootstrap replications of the aggregate statistics
    :param seed: seed of every bootstrap
    :param curve_reps: bootstrap replications of the learning-curve bands
    :param rollouts: GIFs of each variant's best seed, already written
        (:func:`~rlsurgery.bench.rollouts.write_rollout_gifs`), shown beside the learning curves
    :return: the paths written: ``report``, ``summary``, ``tables`` (by name), ``plots`` (by
        name) and ``videos`` (the GIFs, by ``variant|env``), and ``text``, the plain-text summary
        (also written to ``summary.txt``)
    """
    out_dir = Path(out_dir)
    plots_dir, tables_dir = out_dir / "plots", out_dir / "tables"
    plots_dir.mkdir(parents=True, exist_ok=True)
    tables_dir.mkdir(parents=True, exist_ok=True)
    generated_at = datetime.now().astimezone().isoformat(timespec="seconds")

    tables = study_tables(results, reps=reps, seed=seed)
    table_paths = _write_tables(tables, tables_dir)
    plot_paths = _write_plots(results, plots_dir, tables, reps, curve_reps, seed)

    videos = {f"{r.variant}|{r.env}": r.gif for r in rollouts or [] if r.gif is not None}
    relative = {
        "report": "report.html",
        "tables": {name: str(path.relative_to(out_dir)) for name, path in table_paths.items()},
        "plots": {name: str(path.relative_to(out_dir)) for name, path in plot_paths.items()},
        **({"videos": {key: _relative(path, out_dir) for key, path in videos.items()}} if videos else {}),
    }
    summary_path = out_dir / "summary.json"
    summary = study_summary(results, tables, generated_at, relative)
    summary_path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    report_path = out_dir / "report.html"
    report_path.write_text(report_html(results, tables, plot_paths, generated_at, rollouts), encoding="utf-8")
    text = summary_text(results, reps=reps, seed=seed, tables=tables)
    (out_dir / "summary.txt").write_text(text + "\n", encoding="utf-8")
    return {
        "report": report_path,
        "summary": summary_path,
        "text": text,
        "tables": table_paths,
        "plots": plot_paths,
        "videos": videos,
    }


def _relative(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` when inside it."""
    try:
        return str(path.relative_to(folder))
    except ValueError:
        return str(path)


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def summary_text(
    results: StudyResults, reps: int = 2000, seed: int = 0, tables: dict[str, pd.DataFrame] | None = None
) -> str:
    """A compact plain-text summary for a terminal (no colors, fine in a pipe).

    One row per variant; per environment the mean ± std of the final score over finished seeds
    with ``(done/failed)`` run counts; then the IQMs of normalized final scores and of normalized
    areas under the evaluation curves (sample efficiency), with 95% CIs, and a line when the
    variant that ends best is not the one that learns soonest (:func:`leaders_line`).

    :param results: the study's results
    :param reps: bootstrap replications of the IQM's CI
    :param seed: seed of the bootstrap
    :param tables: the tables of :func:`study_tables`, if already computed
    :return: the text (several lines, no trailing newline)
    """
    counts = _run_counts(results)
    title = (
        f"Study {results.name}: {counts['runs']} runs, {counts['done']} done, "
        f"{counts['failed']} failed, {counts['unfinished']} unfinished"
    )
    if not counts["runs"]:
        return title
    per_env = (tables["per_env"] if tables else stats.per_env_table(results)).set_index(["variant", "env_id"])
    aggregate = tables["aggregate"] if tables else stats.aggregate_table(results, reps=reps, seed=seed)
    aggregate = aggregate.set_index("variant")
    if tables:
        auc = tables["aggregate_auc"]
    else:
        auc = stats.aggregate_table(results, reps=reps, seed=seed, score="auc")
    auc = auc.set_index("variant")
    env_ids = stats.study_env_ids(results)
    rows = []
    for variant in stats.study_variants(results):
        row = [variant]
        for env_id in env_ids:
            if (variant, env_id) not in per_env.index:
                row.append(MISSING)
                continue
            cell = per_env.loc[(variant, env_id)]
            run_counts = f"({int(cell['n_done'])}/{int(cell['n_failed'])})"
            row.append(f"{format_mean_std(cell['mean'], cell['std'])} {run_counts}")
        for table in (aggregate, auc):
            if variant in table.index:
                scores = table.loc[variant]
                row.append(format_interval(scores["iqm"], scores["iqm_low"], scores["iqm_high"]))
            else:
                row.append(MISSING)
        rows.append(row)
    header = ["variant", *env_ids, "final IQM [95% CI]", "AUC IQM [95% CI]"]
    legend = (
        "cells: final score mean ± std over finished seeds (done/failed runs); "
        "IQMs: normalized, seeds finished on every env, 95% CI; final: last evaluation, "
        "AUC: mean of all evaluations (sample efficiency)"
    )
    lines = [title, _text_table(header, rows), legend]
    verdict = leaders_line(aggregate, auc)
    return "\n".join([*lines, verdict] if verdict else lines)


def leaders_line(final: pd.DataFrame, auc: pd.DataFrame) -> str:
    """One line when the variant with the best final IQM is not the one with the best AUC IQM (each
    table indexed by variant), so a reader sees that one learned sooner and the other ended higher;
    "" when one variant leads both, or with fewer than two variants.

    >>> final = pd.DataFrame({"iqm": [0.9, 0.8]}, index=["dqn", "per"])
    >>> auc = pd.DataFrame({"iqm": [0.5, 0.7]}, index=["dqn", "per"])
    >>> leaders_line(final, auc)
    'per learns sooner (best AUC IQM 0.700 vs 0.500) while dqn ends higher (best final IQM 0.900 vs 0.800)'
    """
    final, auc = final["iqm"].dropna(), auc["iqm"].dropna()
    if len(final) < 2 or len(auc) < 2:
        return ""
    best_final, best_auc = str(final.idxmax()), str(auc.idxmax())
    if best_auc not in final.index or best_final not in auc.index or final[best_auc] >= final.max():
        return ""  # the soonest learner also ends (jointly) highest
    return (
        f"{best_auc} learns sooner (best AUC IQM {format_number(auc[best_auc])} vs "
        f"{format_number(auc[best_final])}) while {best_final} ends higher (best final IQM "
        f"{format_number(final[best_final])} vs {format_number(final[best_auc])})"
    )
