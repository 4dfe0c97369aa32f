"""GIFs in the report of a study saved with models: one per variant and env, of the best seed's
model, embedded in report.html; rendered once per model file; an env that cannot render, or a
missing model, is a note in the report and not an error.

The study folder is registered and its results stored without training (untrained models stand in
for the trained ones): seconds, not minutes."""

from __future__ import annotations

import base64
import io
import json
import re

import imageio.v3 as imageio
import pytest

import rlsurgery as rls
import rlsurgery.bench.rollouts
from rlsurgery.bench.rollouts import GIF_FRAMES, GIF_WIDTH
from rlsurgery.bench.runner import write_study_report
from rlsurgery.bench.store import ResultStore
from rlsurgery.bench.study import StudySpec, Variant, select_envs
from tests.hardening.cli_cases import TEXT_ONLY_ENV

# final score of each (variant, env, seed): the best seed of "a" is 1, of "b" 0
SCORES = {"a": {0: 10.0, 1: 30.0}, "b": {0: 25.0, 1: 5.0}}
VARIANTS = {"a": "dqn", "b": "dqn"}


def saved_models_study(folder, envs=("CartPole-v1",)):
    """A study folder as ``compare --save-models`` leaves it, its runs done with made-up scores."""
    spec = StudySpec(
        name="gifs",
        variants=[
            Variant(name, recipe, hyperparams={"buffer_size": 500}) for name, recipe in VARIANTS.items()
        ],
        envs=select_envs(None, list(envs)),
        seeds=[0, 1],
        baseline="a",
        save_models=True,
    )
    runs = spec.runs(folder)
    with ResultStore(folder) as store:
        store.register(spec, runs)
        (folder / "models").mkdir()
        for run in runs:
            score = SCORES[run.variant["name"]][run.seed]
            model = rls.make("dqn", "CartPole-v1", seed=run.seed, buffer_size=500, device="cpu")
            model.save(run.model_path)
            evals = [{"step": 100, "mean_return": score, "std_return": 0.0, "returns": [score]}]
            done = {"status": "done", "final_score": score, "final_std": 0.0, "steps": 100, "wall_s": 1.0}
            store.save_result({"run_id": run.run_id, **done, "evals": evals})
    return spec


def embedded_gifs(page: str) -> dict[str, bytes]:
    """The GIFs of the page, by caption."""
    pattern = r'<img alt="([^"]*)" src="data:image/gif;base64,([A-Za-z0-9+/=]+)">'
    return {alt: base64.b64decode(data) for alt, data in re.findall(pattern, page)}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    saved_models_study(folder, envs=("CartPole-v1", TEXT_ONLY_ENV))
    return folder, write_study_report(folder, reps=20)


def test_a_gif_of_each_variants_best_seed(study):
    folder, written = study
    page = written["report"].read_text(encoding="utf-8")
    gifs = embedded_gifs(page)
    assert sorted(gifs) == [
        "a on CartPole-v1: seed 1, final score 30.00",
        "b on CartPole-v1: seed 0, final score 25.00",
    ]
    assert page.index("Best seed of each variant") > page.index("Greedy evaluation return")  # by the curves
    files = sorted(p.name for p in (folder / "videos").iterdir())
    assert [f.rsplit("-", 1)[0] for f in files] == ["a__CartPole-v1__1", "b__CartPole-v1__0"]
    for data in gifs.values():
        frames = imageio.imread(io.BytesIO(data), index=None, extension=".gif")
        assert 1 < len(frames) <= GIF_FRAMES and frames.shape[2] == GIF_WIDTH
        assert len(data) < 2_000_000
        assert (frames[0] != frames[-1]).any()
    summary = json.loads(written["summary"].read_text(encoding="utf-8"))
    assert set(summary["files"]["videos"]) == {"a|CartPole-v1", "b|CartPole-v1"}


def test_an_env_that_cannot_render_is_a_note(study):
    _, written = study
    page = written["report"].read_text(encoding="utf-8")
    for variant in VARIANTS:
        assert f"{variant} on {TEXT_ONLY_ENV}: {TEXT_ONLY_ENV} cannot render rgb_array frames" in page
    assert not any(TEXT_ONLY_ENV in caption for caption in embedded_gifs(page))


def test_a_rebuilt_report_renders_only_changed_models(tmp_path, monkeypatch):
    saved_models_study(tmp_path)
    write_study_report(tmp_path, reps=20)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "videos").iterdir()}
    rendered = []
    original = rlsurgery.bench.rollouts.record_video
    monkeypatch.setattr(
        rlsurgery.bench.rollouts, "record_video", lambda *a, **k: rendered.append(a[2]) or original(*a, **k)
    )
    write_study_report(tmp_path, reps=20)
    assert rendered == []  # every GIF was there for its model file
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "videos").iterdir()} == before
    # a model that changed is rendered again, the GIF of its old file removed; a missing one is a note
    model = rls.make("dqn", "CartPole-v1", seed=7, buffer_size=500, device="cpu")
    model.save(tmp_path / "models" / "a__CartPole-v1__1.zip")
    (tmp_path / "models" / "b__CartPole-v1__0.zip").unlink()
    page = write_study_report(tmp_path, reps=20)["report"].read_text(encoding="utf-8")
    assert [p.name for p in rendered] == [p.name for p in (tmp_path / "videos").iterdir()]
    assert rendered[0].name.startswith("a__CartPole-v1__1-") and rendered[0].name not in before
    assert "b on CartPole-v1: no saved model (models/b__CartPole-v1__0.zip is missing)" in page
    assert len(embedded_gifs(page)) == 1
