from __future__ import annotations

import ast
import csv
import json
from pathlib import Path

import pytest

import rlsurgery as rls
from rlsurgery import catalog
from rlsurgery.cli import main
from rlsurgery.core.errors import PlannedSurgeryError, UnknownSurgeryError

ROOT = Path(__file__).resolve().parents[1]
SEED_FILES = [
    p
    for p in (ROOT.parent / "shared" / "seed-catalog.tsv", ROOT / "rlsurgery" / "data" / "seed_catalog.tsv")
    if p.is_file()
]


#: formulas rlsurgery's copy of the seed catalog words differently, on purpose: seed wording → ours
CORRECTED_TRANSLATIONS = {
    # N:M sparsity keeps N of every M (2:4 = two non-zero of four); the seed said "N zeros"
    "N zeros in every M consecutive weights": "N of every M consecutive weights kept (the largest |w|), M − N zeroed",
}


@pytest.mark.parametrize("seed_file", SEED_FILES, ids=lambda p: p.parent.name)
def test_every_seed_key_is_in_the_catalog_with_its_facts(seed_file):
    rows = list(csv.DictReader(seed_file.read_text(encoding="utf-8").splitlines(), delimiter="\t"))
    keys = {r["key"] for r in rows}
    assert len(keys) == 188
    first_translation: dict[str, str] = {}
    for row in rows:
        entry = catalog.get(row["key"])
        assert entry.seed
        assert entry.name == row["seed_name"]
        assert int(row["section"]) in entry.sections
        translation = CORRECTED_TRANSLATIONS.get(row["translation"], row["translation"])
        assert entry.translation == first_translation.setdefault(row["key"], translation)
    # the keys rlsurgery adds to the seed catalog
    assert set(catalog.keys()) - keys == set(ADDED)


#: keys beyond the seed catalog: Rainbow's n-step returns, the plasticity repairs of issue 7
ADDED = ("n_step_returns", "dormant_neuron_reset", "shrink_and_perturb", "periodic_reset", "fault_injection")


def test_implemented_entries_name_class_and_an_existing_proof_test():
    implemented = catalog.entries(status="implemented")
    assert {e.key for e in implemented} >= {
        "target_network",
        "double_q_learning",
        "dueling_architecture",
        "distributional_rl",
        "prioritized_replay",
        "n_step_returns",
        "noisy_nets",
    }
    for entry in implemented:
        assert entry.surgery.key == entry.key
        assert entry.surgery.__doc__ and entry.surgery.attaches_to
        path, _, func = entry.proof.partition("::")
        source = (ROOT / path).read_text(encoding="utf-8")
        names = {n.name for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef)}
        assert func in names, f"{entry.key}: proof test {entry.proof} not found"
        module = __import__(entry.surgery.__module__, fromlist=["_"])
        assert "http" in (module.__doc__ or ""), f"{entry.key}: module docstring needs the paper link"


def test_planned_and_unknown_keys_are_refused_clearly():
    with pytest.raises(
        PlannedSurgeryError,
        match=r"vq_vae: 'VQ-VAE' \(section 18\) is in the catalog but planned",
    ):
        catalog.create("vq_vae")
    with pytest.raises(
        UnknownSurgeryError, match=r"unknown surgery 'prioritised_replay'; did you mean 'prioritized_replay'"
    ):
        catalog.create("prioritised_replay")


def test_keys_in_two_sections_keep_both():
    assert catalog.get("gradient_clipping").sections == (6, 30)
    assert [e.key for e in catalog.entries(section=21)] == [
        "target_network",
        "double_q_learning",
        "dueling_architecture",
        "distributional_rl",
        "hindsight_experience_replay",
        "prioritized_replay",
        "n_step_returns",
    ]


def test_public_catalog_function():
    assert len(rls.catalog()) == len(rls.catalog.catalog()) == 188 + len(ADDED)
    assert rls.catalog(section=21)[0].key == "target_network"
    assert rls.catalog(section=22)[0].key == "epsilon_greedy_annealing"


def test_cli_catalog_json_and_section(capsys):
    assert main(["catalog", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data) == 188 + len(ADDED)
    per = {d["key"]: d for d in data}
    assert per["prioritized_replay"]["status"] == "implemented"
    assert per["prioritized_replay"]["proof"].startswith("tests/")
    assert {p["name"] for p in per["prioritized_replay"]["params"]} == {
        "alpha",
        "beta",
        "beta_fraction",
        "eps",
    }
    assert per["vq_vae"]["status"] == "planned"
    assert main(["catalog", "--section", "22"]) == 0
    text = capsys.readouterr().out
    assert "noisy_nets" in text and "weight_pruning" not in text


def test_surgery_modules_are_found_without_a_list():
    # every implemented key's module is discovered from the package's files, and nothing else is
    from rlsurgery import catalog

    modules = {e.surgery.__module__ for e in catalog.entries(status="implemented")}
    assert modules == set(catalog.BUILTIN_MODULES)
    assert "rlsurgery.bench.study" not in catalog.BUILTIN_MODULES
