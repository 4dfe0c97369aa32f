from __future__ import annotations

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.logger import configure

from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.exploration.boltzmann import TemperedLogits, boltzmann_probabilities


def test_action_frequencies_match_softmax(tiny_kwargs):
    th.manual_seed(0)
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["boltzmann_exploration:schedule=constant,initial=0.5"],
        **tiny_kwargs,
    )
    obs = np.array([[0.1, -0.2, 0.05, 0.3]], dtype=np.float32)
    with th.no_grad():
        q = model.q_net(th.as_tensor(obs))
    expected = boltzmann_probabilities(q, 0.5)[0].numpy()
    th.testing.assert_close(th.as_tensor(expected), th.softmax(q[0] / 0.5, 0))
    actions = model.predict(np.repeat(obs, 20_000, axis=0), deterministic=False)[0]
    freq = np.bincount(actions, minlength=2) / len(actions)
    np.testing.assert_allclose(freq, expected, atol=0.015)
    # deterministic predictions stay greedy
    assert model.predict(obs[0], deterministic=True)[0] == int(q.argmax())


def test_temperature_schedule_and_ppo_tempered_policy():
    model = SurgicalPPO(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        n_steps=64,
        batch_size=32,
        surgeries=["boltzmann_exploration:schedule=exponential,initial=4.0,final=0.5,decay=0.9"],
    )
    model.set_logger(configure(None, []))
    surgery = model.surgeries[0]
    model.num_timesteps = 10
    assert surgery.temperature(model) == pytest.approx(4.0 * 0.9**10)
    assert isinstance(model.policy.action_net, TemperedLogits)
    surgery.on_rollout_start(model)
    tau = float(model.policy.action_net.temperature)
    assert tau == pytest.approx(4.0 * 0.9**10)
    obs = th.as_tensor(np.array([[0.1, -0.2, 0.05, 0.3]], dtype=np.float32))
    with th.no_grad():
        latent = model.policy.mlp_extractor.forward_actor(
            model.policy.extract_features(obs, model.policy.pi_features_extractor)
        )
        logits = model.policy.action_net.inner(latent)
        probs = model.policy.get_distribution(obs).distribution.probs
    th.testing.assert_close(probs, th.softmax(logits / tau, dim=1))
    actions = model.predict(np.repeat(obs.numpy(), 20_000, axis=0), deterministic=False)[0]
    freq = np.bincount(actions, minlength=2) / len(actions)
    np.testing.assert_allclose(freq, probs[0].numpy(), atol=0.015)


def test_refuses_continuous_actions():
    with pytest.raises(
        IncompatibleSurgeryError, match="boltzmann_exploration: needs a discrete action space"
    ):
        SurgicalPPO("MlpPolicy", "Pendulum-v1", surgeries=["boltzmann_exploration"])
