"""Catalog-wide guarantees: every implemented surgery round-trips save/load and keeps the invariants.

These tests are parametrized over the catalog, so a surgery is covered the day it is registered.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch as th

import rlsurgery as rls
from rlsurgery import SurgicalDQN, catalog
from rlsurgery.examples import (
    CHECKPOINT_TEACHER_KEYS,
    EXPERT_TEACHER_KEYS,
    example_specs,
    save_cartpole_expert,
)
from rlsurgery.exploration.noisy_nets import noise_disabled
from rlsurgery.nets.surgery import NetworkSurgery

IMPLEMENTED = [e.key for e in catalog.entries(status="implemented") if "dqn" in e.surgery.families]
RAINBOW = [
    "double_q_learning",
    "dueling_architecture",
    "distributional_rl:n_atoms=11",
    "prioritized_replay",
    "n_step_returns",
    "noisy_nets",
]
CASES = [[key] for key in IMPLEMENTED] + [
    RAINBOW,
    ["distributional_rl:variant=qr,n_quantiles=8", "dueling_architecture", "noisy_nets:sigma0=0.3"],
]


#: short budgets for the keys that train or roll out when they are built (their required parameters,
#: an expert or a teacher, come from :mod:`rlsurgery.examples`)
BUDGET = {
    "behavior_cloning": "episodes=1,epochs=1",
    "dagger": "iterations=2,episodes=1,epochs=1",
    "layer_sequential_initialization": "samples=64",
    "curriculum_learning": "every=100",
    **{key: "steps=200,rounds=1,epochs=1" for key in EXPERT_TEACHER_KEYS},
    **{key: "steps=100,rounds=1,epochs=1" for key in CHECKPOINT_TEACHER_KEYS},
}


@pytest.fixture(scope="module")
def expert(tmp_path_factory):
    """A CartPole PPO expert (hand-set linear controller) for the imitation surgeries."""
    return save_cartpole_expert(tmp_path_factory.mktemp("expert"))


def with_required(specs, expert_path):
    """Each spec, with the parameters it requires filled in (``{checkpoint}`` is left for ``build``) and
    the surgeries it needs before it."""
    out = []
    for s in specs:
        *companions, spec = example_specs(s, expert=expert_path, extra=BUDGET.get(s, ""))
        out += [c for c in companions if c not in specs]
        out.append(spec)
    return out


#: surgeries that need a goal env (Dict observations): trained on BitFlip instead of CartPole
GOAL_KEYS = ("hindsight_experience_replay",)
#: surgeries that need a tabular env with a known model
TABULAR_KEYS = ("policy_improvement",)
#: surgeries that need image observations (a CnnPolicy)
IMAGE_KEYS = (
    "attention_transfer",
    "filter_pruning",
    "instance_normalization",
    "dropblock",
    "cutmix",
    "autoaugment",
    "tucker_decomposition",
    "cp_decomposition",
)
#: surgeries that need ReLU networks (PPO's default is Tanh) or two hidden layers (PPO's test net has one)
RELU_KEYS = ("learnable_activation", "smooth_approximation", "layer_addition")
DEEP_KEYS = (
    "layer_removal",
    "structured_pruning",
    "dense_connection",
    "skip_connection_addition",
    "stochastic_depth",
)
IMAGE_ENV = "rlsurgery-test/TinyImage-v0"


def env_for(surgeries):
    """(policy, env) the surgeries can work on: CartPole unless they need something else."""
    keys = {s.split(":")[0] for s in surgeries}
    if keys & set(GOAL_KEYS):
        from rlsurgery.envs.bit_flip import BitFlipEnv

        return "MultiInputPolicy", BitFlipEnv(n_bits=4)
    if keys & set(TABULAR_KEYS):
        return "MlpPolicy", "rlsurgery/Chain-v0"
    if keys & set(IMAGE_KEYS):
        import gymnasium as gym

        from tests.helpers import TinyImageEnv

        if IMAGE_ENV not in gym.registry:
            gym.register(IMAGE_ENV, entry_point=TinyImageEnv)
        return "CnnPolicy", IMAGE_ENV
    return "MlpPolicy", "CartPole-v1"


def build(cls, surgeries, **kwargs):
    """``cls`` with ``surgeries`` on an env they can work on; a ``{checkpoint}`` in a spec becomes
    a saved copy of the same agent without surgeries (for teachers that must be the same network)."""
    import tempfile

    policy, env = env_for(surgeries)
    if any("{checkpoint}" in s for s in surgeries):
        path = Path(tempfile.mkdtemp()) / "checkpoint.zip"
        cls(policy, env, seed=1, **kwargs).save(path)
        surgeries = [s.replace("{checkpoint}", str(path)) for s in surgeries]
    return cls(policy, env, seed=0, surgeries=surgeries, **kwargs)


def trained(surgeries, tiny_kwargs, steps=200):
    if any(s.split(":")[0] in IMAGE_KEYS for s in surgeries):
        tiny_kwargs["policy_kwargs"] = dict(features_extractor_kwargs=dict(features_dim=16), net_arch=[16])
    return build(SurgicalDQN, surgeries, **tiny_kwargs).learn(steps)


def observation_batch(model, n=64):
    """``n`` observations from the model's observation space (a batch; a dict of batches for Dict spaces)."""
    space = model.observation_space
    space.seed(0)
    samples = [space.sample() for _ in range(n)]
    if isinstance(samples[0], dict):
        return {k: np.stack([x[k] for x in samples]) for k in samples[0]}
    return np.stack(samples).clip(-5, 5).astype(np.float32)


@pytest.mark.parametrize("surgeries", CASES, ids=lambda s: "+".join(x.split(":")[0] for x in s))
def test_save_load_gives_identical_predictions(surgeries, tiny_kwargs, tmp_path, expert):
    model = trained(with_required(surgeries, expert), tiny_kwargs)
    model.save(tmp_path / "model.zip")
    # SB3's HerReplayBuffer cannot be rebuilt without its env
    env = {"env": model.get_env()} if any(s.split(":")[0] in GOAL_KEYS for s in surgeries) else {}
    for loaded in (rls.load(tmp_path / "model.zip", **env), SurgicalDQN.load(tmp_path / "model.zip", **env)):
        assert type(loaded) is SurgicalDQN
        assert loaded.surgery_log == model.surgery_log
        assert [s.key for s in loaded.surgeries] == [s.key for s in model.surgeries]
        original, restored = model.policy.state_dict(), loaded.policy.state_dict()
        assert list(original) == list(restored)
        for key in original:
            assert th.equal(original[key], restored[key]), key
        obs = observation_batch(model)
        np.testing.assert_array_equal(
            model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
        )
        tensor = model.policy.obs_to_tensor(obs)[0]
        for m in (model, loaded):  # as predict does: no dropout, BatchNorm on running statistics
            m.policy.set_training_mode(False)
        with th.no_grad(), noise_disabled(model.q_net), noise_disabled(loaded.q_net):
            th.testing.assert_close(model.q_net(tensor), loaded.q_net(tensor), rtol=0, atol=0)
            th.testing.assert_close(model.q_net_target(tensor), loaded.q_net_target(tensor), rtol=0, atol=0)


@pytest.mark.parametrize("surgeries", CASES, ids=lambda s: "+".join(x.split(":")[0] for x in s))
def test_invariants_gradients_flow_and_target_frozen(surgeries, tiny_kwargs, expert):
    tiny_kwargs["target_update_interval"] = 10**6
    model = trained(with_required(surgeries, expert), tiny_kwargs, steps=100)
    batch = model.sample_batch(16)
    loss = model.compute_loss(batch)
    assert th.isfinite(loss)
    model.policy.optimizer.zero_grad()
    loss.backward()
    for name, p in model.q_net.named_parameters():  # frozen parameters (LoRA's W₀) get none
        assert (p.grad is not None) == p.requires_grad, (
            f"{name}: requires_grad {p.requires_grad}, grad {p.grad}"
        )
    assert sum(p.grad.abs().sum() for p in model.q_net.parameters() if p.grad is not None) > 0
    assert all(p.grad is None for p in model.q_net_target.parameters())
    assert batch.td_error is not None and batch.td_error.shape == (16,) and (batch.td_error >= 0).all()
    # the optimizer covers exactly the online parameters
    optimized = {id(p) for g in model.policy.optimizer.param_groups for p in g["params"]}
    assert optimized == {id(p) for p in model.q_net.parameters()}
    # no sync between updates: the target network does not move
    before = [p.detach().clone() for p in model.q_net_target.parameters()]
    model.train(gradient_steps=2, batch_size=16)
    assert all(th.equal(a, b) for a, b in zip(before, model.q_net_target.parameters()))


def test_resume_from_checkpoint_with_replay_buffer_and_priorities(tiny_kwargs, tmp_path):
    model = trained(["prioritized_replay", "n_step_returns"], tiny_kwargs, steps=300)
    model.save(tmp_path / "ckpt.zip")
    model.save_replay_buffer(tmp_path / "ckpt_replay.pkl")
    resumed = rls.load(tmp_path / "ckpt.zip", env=model.get_env())
    resumed.load_replay_buffer(tmp_path / "ckpt_replay.pkl")
    buffer, restored = model.replay_buffer, resumed.replay_buffer
    assert type(restored) is type(buffer) and restored.n_steps == 3
    assert restored.pos == buffer.pos and restored.full == buffer.full
    np.testing.assert_array_equal(restored.priorities(), buffer.priorities())
    assert restored.max_priority == buffer.max_priority
    np.testing.assert_array_equal(restored.observations, buffer.observations)
    assert resumed.num_timesteps == model.num_timesteps
    updates = resumed._n_updates
    resumed.learn(200, reset_num_timesteps=False)
    assert resumed.num_timesteps == model.num_timesteps + 200
    assert resumed._n_updates > updates
    assert not np.array_equal(resumed.replay_buffer.priorities()[: buffer.size()], buffer.priorities())


PPO_IMPLEMENTED = [e.key for e in catalog.entries(status="implemented") if "ppo" in e.surgery.families]


@pytest.mark.parametrize("key", PPO_IMPLEMENTED)
def test_ppo_save_load_gives_identical_predictions(key, tmp_path, expert):
    policy_kwargs = dict(net_arch=[16, 16] if key in DEEP_KEYS else [16])
    if key in RELU_KEYS:
        policy_kwargs["activation_fn"] = th.nn.ReLU
    if key in IMAGE_KEYS:
        policy_kwargs["features_extractor_kwargs"] = dict(features_dim=16)
    model = build(
        rls.SurgicalPPO,
        with_required([key], expert),
        n_steps=64,
        batch_size=32,
        n_epochs=2,
        policy_kwargs=policy_kwargs,
    ).learn(128)
    model.save(tmp_path / "model.zip")
    loaded = rls.load(tmp_path / "model.zip")
    assert type(loaded) is rls.SurgicalPPO and loaded.surgery_log == model.surgery_log
    original, restored = model.policy.state_dict(), loaded.policy.state_dict()
    assert list(original) == list(restored)
    for name in original:
        assert th.equal(original[name], restored[name]), name
    obs = observation_batch(model)
    np.testing.assert_array_equal(
        model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
    )
    for m in (model, loaded):  # as predict does: no dropout, BatchNorm on running statistics
        m.policy.set_training_mode(False)
    with th.no_grad():
        tensor = model.policy.obs_to_tensor(obs)[0]
        th.testing.assert_close(
            model.policy.get_distribution(tensor).distribution.probs,
            loaded.policy.get_distribution(tensor).distribution.probs,
            rtol=0,
            atol=0,
        )


#: the network surgeries (sections 1, 3, 4, 11, 12, 13, 27), checked on the other agent families too
NETWORK_KEYS = [
    e.key
    for e in catalog.entries(status="implemented")
    if isinstance(e.surgery, type) and issubclass(e.surgery, NetworkSurgery)
]


OTHER_AGENT_CASES = [
    (cls, key)
    for cls in (rls.SurgicalSAC, rls.SurgicalTD3, rls.SurgicalA2C)
    for key in NETWORK_KEYS
    if cls is rls.SurgicalA2C or key not in IMAGE_KEYS  # no continuous-action image env in the tests
]


@pytest.mark.parametrize(
    ("cls", "key"), OTHER_AGENT_CASES, ids=[f"{c.algorithm_family}-{k}" for c, k in OTHER_AGENT_CASES]
)
def test_network_surgeries_on_other_agents_round_trip(cls, key, tmp_path, expert):
    """Each network surgery builds, trains and round-trips save/load on SAC, TD3 and A2C, or is refused
    before training with a message that names it."""
    on_policy = cls is rls.SurgicalA2C
    image = key in IMAGE_KEYS
    policy_kwargs = dict(net_arch=[16, 16])
    if image:
        policy_kwargs["features_extractor_kwargs"] = dict(features_dim=16)
    if key in RELU_KEYS or not on_policy:
        policy_kwargs["activation_fn"] = th.nn.ReLU
    kwargs = dict(n_steps=32) if on_policy else dict(buffer_size=300, learning_starts=50, batch_size=16)
    specs = with_required([key], expert)
    env = "Pendulum-v1" if not on_policy and not image else ("CartPole-v1" if not image else None)
    try:
        if image:
            model = build(cls, specs, policy_kwargs=policy_kwargs, **kwargs)
        else:
            model = cls("MlpPolicy", env, seed=0, surgeries=specs, policy_kwargs=policy_kwargs, **kwargs)
    except rls.IncompatibleSurgeryError as error:
        assert str(error).startswith(key), error  # refused before training, naming the surgery
        return
    model.learn(100)
    model.save(tmp_path / "m.zip")
    loaded = rls.load(tmp_path / "m.zip")
    assert loaded.surgery_log == model.surgery_log
    original, restored = model.policy.state_dict(), loaded.policy.state_dict()
    assert list(original) == list(restored)
    for name in original:
        assert th.equal(original[name], restored[name]), name
    obs = observation_batch(model)
    np.testing.assert_array_equal(
        model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
    )
