"""Surgery state: one dataclass per surgery, in one container on the agent, saved as plain data."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass

import numpy as np
import pytest
import torch as th

import rlsurgery as rls
from rlsurgery import Surgery, SurgicalDQN, catalog
from rlsurgery.core.state import from_data, to_data, transient


@dataclass
class CounterState:
    updates: int = 0
    history: list | None = None
    weights: th.Tensor | None = None
    snapshot: dict = transient(dict)  # noqa: RUF009


class UpdateCounter(Surgery):
    key = "update_counter_demo"
    stages = ("after_update",)
    State = CounterState

    def after_update(self, agent, batch):
        state = self.state(agent)
        state.updates += 1
        state.history = [*(state.history or []), float(batch.rewards.mean())]
        state.weights = agent.q_net.q_net[0].weight.detach()[:2].clone()
        state.snapshot = {"big": agent.policy.state_dict()}


@pytest.fixture
def registered(monkeypatch):
    """UpdateCounter in the catalog for this test only (``rls.load`` rebuilds surgeries by key)."""
    catalog._ensure_loaded()
    monkeypatch.setitem(catalog._ENTRIES, "update_counter_demo", None)
    monkeypatch.delitem(catalog._ENTRIES, "update_counter_demo")
    catalog.register(proof="tests/core/test_state.py", name="Update counter (test)", sections=(31,))(
        UpdateCounter
    )
    yield


KW = dict(learning_starts=20, batch_size=8, buffer_size=200, train_freq=1, policy_kwargs=dict(net_arch=[8]))


def test_plain_data_round_trip():
    value = {
        "a": th.arange(3.0),
        "b": np.array([[1, 2]], dtype=np.int16),
        "c": [1.5, None, "x"],
        "d": np.float32(2),
    }
    data = to_data(value)
    json.dumps(data)  # JSON-able
    back = from_data(data)
    assert th.equal(back["a"], value["a"]) and back["a"].dtype == th.float32
    assert back["b"].dtype == np.int16 and (back["b"] == value["b"]).all()
    assert back["c"] == value["c"] and back["d"] == 2.0


def test_state_is_saved_as_plain_data_and_restored(tmp_path, registered):
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=["update_counter_demo"], **KW).learn(40)
    state = model.surgery_state["update_counter_demo"]
    assert state.updates == 20 and len(state.history) == 20 and state.snapshot
    model.save(tmp_path / "m.zip")
    with zipfile.ZipFile(tmp_path / "m.zip") as archive:
        data = json.loads(archive.read("data"))
    saved = data["surgery_state_data"]
    assert saved == {
        "update_counter_demo": json.loads(
            json.dumps(to_data({"updates": 20, "history": state.history, "weights": state.weights}))
        )
    }
    assert "surgery_state" not in data  # only the plain-data copy is written, nothing pickled
    loaded = rls.load(tmp_path / "m.zip")
    restored = loaded.surgeries[0].state(loaded)
    assert (
        restored.updates == 20
        and restored.history == state.history
        and th.equal(restored.weights, state.weights)
    )
    assert restored.snapshot == {}  # transient: back to its default
    loaded.set_env(model.get_env())
    loaded.learn(10, reset_num_timesteps=False)
    assert restored.updates == 30  # training resumes the counter
    # a second save keeps it (the loaded state is live, not waiting in the saved data)
    loaded.save(tmp_path / "again.zip")
    assert rls.load(tmp_path / "again.zip").surgery_state.saved["update_counter_demo"]["updates"] == 30
