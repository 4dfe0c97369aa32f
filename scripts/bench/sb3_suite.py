"""Run Stable-Baselines3's own test suite with rlsurgery's classes in place of SB3's.

The surgical agents are meant to behave exactly like their SB3 parents when no surgery
is applied, so SB3's tests should pass on them as they do on SB3's classes. This script
runs a copy of SB3's ``tests/`` folder twice with pytest:

* ``plain``: nothing substituted, the baseline (tests that fail on SB3's own classes on
  this machine, e.g. for a missing optional dependency, fail here too);
* ``surgical``: before any test module is imported, ``stable_baselines3.DQN`` (and
  ``PPO``, ``A2C``, ``SAC``, ``TD3``) is replaced by ``rlsurgery.SurgicalDQN`` (...) in
  the ``stable_baselines3`` namespace and in the algorithm packages
  (``stable_baselines3.dqn`` ...), so ``from stable_baselines3 import DQN`` in a test
  gets the surgical class. DDPG (no surgical counterpart) stays SB3's.

and compares the per-test outcomes (read from pytest's JUnit XML): a test that passes
plain but fails or errors substituted is a difference.

The substitution is a pytest plugin: this very module, loaded with ``-p sb3_suite``
(``scripts/bench`` is put on ``PYTHONPATH``); pytest imports ``-p`` plugins before it
collects the test modules, and pytest-xdist workers load them too. The environment
variable ``SB3_SUITE_SUBSTITUTE=1`` turns the substitution on, so both runs load the
same plugin.

Get SB3's tests first (outside the repository), e.g. from a clone of
https://github.com/DLR-RM/stable-baselines3::

    git -C stable-baselines3 archive <commit> tests pyproject.toml | tar -x -C /tmp/sb3tests

then, from the repository root::

    PYTHONPATH=. python scripts/bench/sb3_suite.py --tests /tmp/sb3tests/tests \\
        --workers 2 --wall 1500 --out /tmp/sb3suite

Options: ``--mode plain|surgical|both`` (default both), ``--files test_run.py ...`` to
select test files, ``--algo-files`` for only the files that mention an algorithm class,
``--summary FILE`` to write the summary (counts and differences) to a file as well.
Everything after ``--`` goes to pytest unchanged.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

SUBSTITUTE_ENV = "SB3_SUITE_SUBSTITUTE"
#: SB3 name -> (rlsurgery name, SB3 package that exports the algorithm)
SUBSTITUTIONS = {
    "A2C": ("SurgicalA2C", "stable_baselines3.a2c"),
    "DQN": ("SurgicalDQN", "stable_baselines3.dqn"),
    "PPO": ("SurgicalPPO", "stable_baselines3.ppo"),
    "SAC": ("SurgicalSAC", "stable_baselines3.sac"),
    "TD3": ("SurgicalTD3", "stable_baselines3.td3"),
}
ALGO_PATTERN = re.compile(r"\b(A2C|DQN|PPO|SAC|TD3)\b")
#: a parametrized test's id names the class (``test_x[SurgicalPPO]``): compared as ``test_x[PPO]``
SURGICAL_ID = re.compile(r"Surgical(A2C|DQN|PPO|SAC|TD3)")


# --------------------------------------------------------------------------- plugin


def substitute() -> dict[str, str]:
    """Put the surgical classes in SB3's namespaces; returns ``{place: class}`` done."""
    import importlib

    import stable_baselines3

    import rlsurgery

    done = {}
    for name, (surgical_name, package_name) in SUBSTITUTIONS.items():
        surgical = getattr(rlsurgery, surgical_name)
        original = getattr(stable_baselines3, name)
        if not issubclass(surgical, original):
            raise TypeError(f"{surgical_name} is not a subclass of stable_baselines3.{name}")
        package = importlib.import_module(package_name)
        for module in (stable_baselines3, package):
            setattr(module, name, surgical)
            done[f"{module.__name__}.{name}"] = surgical.__qualname__
    return done


# Imported by pytest as a ``-p`` plugin (not run as a script): substitute before collection.
_PLUGIN_ON = __name__ != "__main__" and os.environ.get(SUBSTITUTE_ENV) == "1"
_SUBSTITUTED = substitute() if _PLUGIN_ON else {}


def pytest_report_header(config):
    """State in pytest's header whether (and what) was substituted."""
    if not _SUBSTITUTED:
        return "sb3_suite: plain SB3 classes (no substitution)"
    places = ", ".join(f"{place}={cls}" for place, cls in _SUBSTITUTED.items())
    return f"sb3_suite: substituted {places}"


# --------------------------------------------------------------------------- runner


def select_files(tests: Path, files: list[str], algo_files: bool) -> list[str]:
    """The test files to run (relative names), or [] for the whole folder."""
    if files:
        return files
    if algo_files:
        return [
            path.name
            for path in sorted(tests.glob("test_*.py"))
            if ALGO_PATTERN.search(path.read_text(encoding="utf-8"))
        ]
    return []


def run_mode(mode, tests, files, workers, wall, out, extra):
    """One pytest run; returns (wall seconds, exit code, summary line, log path, xml path)."""
    out.mkdir(parents=True, exist_ok=True)
    log_path, xml_path = out / f"{mode}.log", out / f"{mode}.xml"
    here = Path(__file__).resolve().parent
    env = dict(os.environ)
    env[SUBSTITUTE_ENV] = "1" if mode == "surgical" else "0"
    env["PYTHONHASHSEED"] = "0"  # what SB3's pyproject asks of pytest-env
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(here), str(Path.cwd()), env.get("PYTHONPATH", "")) if p
    )
    targets = [str(tests / f) for f in files] or [str(tests)]
    cmd = ["timeout", str(wall), sys.executable, "-m", "pytest", "-p", "sb3_suite"]
    cmd += ["-p", "no:cacheprovider", "-rfEs", f"--junitxml={xml_path}"]
    cmd += ["--rootdir", str(tests.parent)]
    if workers:
        cmd += ["-n", str(workers)]
    cmd += extra + targets
    print(f"[{mode}] {SUBSTITUTE_ENV}={env[SUBSTITUTE_ENV]} {shlex.join(cmd)}", flush=True)
    start = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        code = subprocess.call(cmd, cwd=tests.parent, env=env, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - start
    lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    summary = next((ln for ln in reversed(lines) if re.match(r"^=+ .* in [\d.]+s", ln)), "")
    return seconds, code, summary.strip("= "), log_path, xml_path


def outcomes(xml_path: Path) -> dict[str, str]:
    """``{test id: passed|failed|error|skipped}`` from pytest's JUnit XML."""
    if not xml_path.exists():
        return {}
    result = {}
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        test_id = SURGICAL_ID.sub(r"\1", f"{case.get('classname')}::{case.get('name')}")
        kinds = {child.tag for child in case}
        if "error" in kinds:
            result[test_id] = "error"
        elif "failure" in kinds:
            result[test_id] = "failed"
        elif "skipped" in kinds:
            result[test_id] = "skipped"
        else:
            result[test_id] = "passed"
    return result


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=Path, required=True, help="SB3's tests/ folder")
    parser.add_argument("--mode", choices=["plain", "surgical", "both"], default="both")
    parser.add_argument("--files", nargs="*", default=[], help="test files to run")
    parser.add_argument("--algo-files", action="store_true", help="files naming an algorithm")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (0: none)")
    parser.add_argument("--wall", type=int, default=1500, help="wall limit per run, seconds")
    parser.add_argument("--out", type=Path, default=Path("sb3suite-out"), help="logs, XML")
    parser.add_argument("--summary", type=Path, help="also write the summary here")
    parser.add_argument("--compare-only", action="store_true", help="reread OUT's XML, run nothing")
    args = parser.parse_args(argv)

    tests = args.tests.resolve()
    files = select_files(tests, args.files, args.algo_files)
    modes = ["plain", "surgical"] if args.mode == "both" else [args.mode]
    report, results = [], {}
    report.append(f"files: {' '.join(files) if files else '(all of ' + str(tests) + ')'}")
    for mode in modes:
        if args.compare_only:
            xml_path, code, seconds, summary = args.out.resolve() / f"{mode}.xml", "?", 0.0, "(not rerun)"
        else:
            seconds, code, summary, _log, xml_path = run_mode(
                mode, tests, files, args.workers, args.wall, args.out.resolve(), extra
            )
        results[mode] = outcomes(xml_path)
        counts = {}
        for outcome in results[mode].values():
            counts[outcome] = counts.get(outcome, 0) + 1
        report.append(f"{mode}: exit {code}, wall {seconds:.0f} s, pytest: {summary}")
        report.append(f"{mode}: junit counts {dict(sorted(counts.items()))}")
        print(report[-2], flush=True)
    if len(results) == 2:
        plain, surgical = results["plain"], results["surgical"]
        differences = sorted(
            test_id
            for test_id, outcome in surgical.items()
            if outcome in ("failed", "error") and plain.get(test_id) == "passed"
        )
        fixed = sorted(
            test_id
            for test_id, outcome in plain.items()
            if outcome in ("failed", "error") and surgical.get(test_id) == "passed"
        )
        missing = sorted(set(plain) ^ set(surgical))
        report.append(f"passed plain, failed/error substituted: {len(differences)}")
        report += [f"  {surgical[t]:7s} {t}" for t in differences]
        report.append(f"failed/error plain, passed substituted: {len(fixed)}")
        report += [f"  {t}" for t in fixed]
        report.append(f"in one run only (not run to the end?): {len(missing)}")
        report += [f"  {t}" for t in missing[:50]]
        both_failed = sorted(t for t, o in plain.items() if o in ("failed", "error") and surgical.get(t) == o)
        report.append(f"failed/error in both runs (baseline failures): {len(both_failed)}")
        report += [f"  {plain[t]:7s} {t}" for t in both_failed]
    text = "\n".join(report) + "\n"
    print(text, end="")
    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
