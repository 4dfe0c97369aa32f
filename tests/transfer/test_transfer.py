"""Transfer surgeries (section 8): copied weights, frozen groups, rates per group, carried heads."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces

import rlsurgery as rls
from rlsurgery.nets import transfer as transfer_toolkit
from rlsurgery.transfer import discriminative_fine_tuning, gradual_unfreezing, source
from tests.breakage import assert_proof_fails_when, replaced, wrapped

th.set_num_threads(1)

DQN_KW = dict(
    learning_starts=50, buffer_size=1_000, batch_size=16, train_freq=1, policy_kwargs=dict(net_arch=[16, 16])
)
SAC_KW = dict(learning_starts=50, buffer_size=1_000, batch_size=16, policy_kwargs=dict(net_arch=[16, 16]))
PPO_KW = dict(n_steps=64, batch_size=32, n_epochs=2, policy_kwargs=dict(net_arch=[16, 16]))


class ExtraAction(gym.ActionWrapper):
    """A target task with one more action than the source (the new one pushes left, like action 0)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.action_space = spaces.Discrete(int(env.action_space.n) + 1)

    def action(self, action):
        return int(action) % int(self.env.action_space.n)


class BoxAction(gym.ActionWrapper):
    """CartPole driven by a continuous action (push right when a > 0)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)

    def action(self, action):
        return int(action[0] > 0)


class ExtraDimension(gym.ActionWrapper):
    """A continuous target task with one more action dimension (ignored by the env)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        low, high = env.action_space.low, env.action_space.high
        low, high = np.append(low, -1.0).astype(np.float32), np.append(high, 1.0).astype(np.float32)
        self.action_space = spaces.Box(low, high, dtype=np.float32)

    def action(self, action):
        return action[:-1]


def observations(model, n=32):
    space = model.observation_space
    space.seed(0)
    return th.as_tensor(np.stack([space.sample() for _ in range(n)]).clip(-3, 3))


@pytest.fixture(scope="module")
def dqn_source(tmp_path_factory):
    path = tmp_path_factory.mktemp("source") / "dqn.zip"
    rls.SurgicalDQN("MlpPolicy", "CartPole-v1", seed=1, **DQN_KW).learn(300).save(path)
    return path


def source_state(path):
    """The source's DQN policy as the target should start: its target network a copy of its Q network."""
    state = rls.load(path).policy.state_dict()
    return {name: state[name.replace("q_net_target.", "q_net.", 1)] for name in state}


def dqn(surgeries, env="CartPole-v1"):
    return rls.SurgicalDQN("MlpPolicy", env, seed=0, surgeries=surgeries, **DQN_KW)


# ---------------------------------------------------------------------------------------- full fine-tuning
def check_full_fine_tuning(path):
    model = dqn([f"full_fine_tuning:source={path}"])
    expected = source_state(path)
    for name, tensor in model.policy.state_dict().items():
        assert th.equal(tensor, expected[name]), f"{name} was not copied from the source"
    assert all(p.requires_grad for p in model.q_net.parameters())
    model.learn(200)
    moved = [not th.equal(p, expected[f"q_net.{n}"]) for n, p in model.q_net.named_parameters()]
    assert all(moved), "every layer trains"


def test_full_fine_tuning_starts_from_the_source_and_trains_all(dqn_source):
    check_full_fine_tuning(dqn_source)


def test_full_fine_tuning_proof_fails_without_the_copy(dqn_source):
    def no_copy(policy, state, keep=(), remap=None):
        return {k: [] for k in ("copied", "partially_copied", "kept", "shape_mismatch", "missing_in_source")}

    assert_proof_fails_when(
        replaced(source, "copy_policy_weights", no_copy), check_full_fine_tuning, dqn_source
    )


# ---------------------------------------------------------------------------------------- feature extraction
def check_feature_extraction(path):
    expected = source_state(path)
    fresh = dqn([]).policy.state_dict()  # the same seed: the head the target would start with
    model = dqn([f"feature_extraction:source={path}"])
    head = {"q_net.q_net.4.weight", "q_net.q_net.4.bias"}
    for name, tensor in model.policy.state_dict().items():
        if name in head | {n.replace("q_net.q_net", "q_net_target.q_net") for n in head}:
            assert th.equal(tensor, fresh[name]), f"{name}: the head starts fresh"
        else:
            assert th.equal(tensor, expected[name]), f"{name}: the backbone comes from the source"
    model.learn(300)
    after = model.policy.state_dict()
    for name in ("q_net.q_net.0.weight", "q_net.q_net.0.bias", "q_net.q_net.2.weight", "q_net.q_net.2.bias"):
        assert th.equal(after[name], expected[name]), f"{name}: the frozen backbone moved"
    assert all(not th.equal(after[name], fresh[name]) for name in head), "the head trains"
    assert model.surgery_state["feature_extraction"].result["trainable_parameters"] == 16 * 2 + 2


def test_feature_extraction_freezes_the_backbone_and_trains_a_new_head(dqn_source):
    check_feature_extraction(dqn_source)


def test_feature_extraction_proof_fails_when_nothing_is_frozen(dqn_source):
    from rlsurgery.transfer.feature_extraction import FeatureExtraction

    def arrange_nothing(self, agent):
        self.state(agent).result["trainable_parameters"] = 16 * 2 + 2

    assert_proof_fails_when(
        replaced(FeatureExtraction, "arrange", arrange_nothing), check_feature_extraction, dqn_source
    )


def test_feature_extraction_freezes_the_backbone_of_sac_and_ppo(tmp_path):
    for cls, env, kwargs in (
        (rls.SurgicalSAC, "Pendulum-v1", SAC_KW),
        (rls.SurgicalPPO, "CartPole-v1", PPO_KW),
    ):
        cls("MlpPolicy", env, seed=1, **kwargs).save(tmp_path / "s.zip")
        model = cls(
            "MlpPolicy", env, seed=0, surgeries=[f"feature_extraction:source={tmp_path / 's.zip'}"], **kwargs
        )
        heads = {id(p) for m in transfer_toolkit.head_modules(model) for p in m.parameters()}
        before = {n: p.detach().clone() for n, p in model.policy.named_parameters()}
        model.learn(128)
        for name, p in model.policy.named_parameters():
            if id(p) not in heads and "target" not in name:
                assert not p.requires_grad and th.equal(p, before[name]), name


# ---------------------------------------------------------------------------------------- gradual unfreezing
def test_unfrozen_groups_follow_the_schedule():
    assert [gradual_unfreezing.unfrozen_groups(t, 100, 3) for t in (0, 99, 100, 199, 200, 10_000)] == [
        1,
        1,
        2,
        2,
        3,
        3,
    ]


def check_gradual_unfreezing(path):
    expected = source_state(path)
    model = dqn([f"gradual_unfreezing:source={path},every=150"])
    groups = model.surgeries[0].layer_groups
    assert [len(g) for g in groups] == [2, 2, 2]
    assert [p.requires_grad for g in groups for p in g] == [True] * 2 + [False] * 4
    names = {id(p): f"q_net.{n}" for n, p in model.q_net.named_parameters()}

    def moved(depth):
        return [not th.equal(p, expected[names[id(p)]]) for p in groups[depth]]

    model.learn(140)  # updates from step 50: the output group only
    assert all(moved(0)) and not any(moved(1)) and not any(moved(2))
    model.learn(100, reset_num_timesteps=False)  # group 1 from step 150
    assert all(moved(1)) and not any(moved(2))
    assert model.surgery_state["gradual_unfreezing"].unfrozen == 2
    model.learn(100, reset_num_timesteps=False)  # group 2 from step 300
    assert all(moved(2)) and model.surgery_state["gradual_unfreezing"].unfrozen == 3


def test_gradual_unfreezing_unfreezes_one_group_every_k_steps(dqn_source):
    check_gradual_unfreezing(dqn_source)


def test_gradual_unfreezing_proof_fails_when_everything_trains_at_once(dqn_source):
    assert_proof_fails_when(
        replaced(gradual_unfreezing, "unfrozen_groups", lambda step, every, n: n),
        check_gradual_unfreezing,
        dqn_source,
    )


def test_gradual_unfreezing_resumes_after_load(dqn_source, tmp_path):
    model = dqn([f"gradual_unfreezing:source={dqn_source},every=100"]).learn(120)
    model.save(tmp_path / "m.zip")
    loaded = rls.load(tmp_path / "m.zip", env=model.get_env())
    trained = [p.requires_grad for p in loaded.q_net.parameters()]
    assert trained == [False, False, True, True, True, True]  # two of three groups at step 120
    loaded.learn(100, reset_num_timesteps=False)
    assert all(p.requires_grad for p in loaded.q_net.parameters())


# ---------------------------------------------------------------------------------------- discriminative rates
def check_discriminative_rates(path, tmp_path):
    xi = 0.5
    model = dqn([f"discriminative_fine_tuning:source={path},decay={xi}"]).learn(60)
    names = {id(p): n for n, p in model.q_net.named_parameters()}
    rate_of = {names[id(p)]: g["lr"] for g in model.policy.optimizer.param_groups for p in g["params"]}
    expected = {"q_net.4": 1e-4, "q_net.2": 1e-4 * xi, "q_net.0": 1e-4 * xi**2}  # the output layer keeps η
    for name, rate in rate_of.items():
        assert rate == pytest.approx(expected[name.rsplit(".", 1)[0]], rel=1e-12), name
    # SAC: each optimizer over the groups of its own network
    rls.SurgicalSAC("MlpPolicy", "Pendulum-v1", seed=1, **SAC_KW).save(tmp_path / "sac.zip")
    sac = rls.SurgicalSAC(
        "MlpPolicy",
        "Pendulum-v1",
        seed=0,
        surgeries=[f"discriminative_fine_tuning:source={tmp_path / 'sac.zip'},decay={xi}"],
        **SAC_KW,
    ).learn(60)
    for role, net, first, last in (
        ("actor", sac.actor, "latent_pi.0.weight", "mu.weight"),
        ("critic", sac.critic, "qf0.0.weight", "qf0.4.weight"),
    ):
        names = {id(p): n for n, p in net.named_parameters()}
        rate_of = {
            names[id(p)]: g["lr"] for g in getattr(sac, role).optimizer.param_groups for p in g["params"]
        }
        assert rate_of[last] == pytest.approx(3e-4, rel=1e-12), last  # the output layer: η
        assert rate_of[first] == pytest.approx(3e-4 * xi**2, rel=1e-12), first  # the input layer: ξ²η


def test_discriminative_rates_follow_the_formula_per_group(dqn_source, tmp_path):
    check_discriminative_rates(dqn_source, tmp_path)


def test_discriminative_proof_fails_on_one_rate_for_all_or_the_groups_upside_down(dqn_source, tmp_path):
    assert_proof_fails_when(
        replaced(discriminative_fine_tuning, "group_rate_scales", lambda n, decay: [1.0] * n),
        check_discriminative_rates,
        dqn_source,
        tmp_path,
    )
    upside_down = wrapped(
        discriminative_fine_tuning, "agent_depth_groups", lambda f: lambda *a, **k: list(reversed(f(*a, **k)))
    )
    assert_proof_fails_when(upside_down, check_discriminative_rates, dqn_source, tmp_path)


# ---------------------------------------------------------------------------------------- head replacement
def register_targets():
    if "rlsurgery-test/CartPoleExtraAction-v0" not in gym.registry:
        gym.register("rlsurgery-test/CartPoleExtraAction-v0", lambda: ExtraAction(gym.make("CartPole-v1")))
        gym.register("rlsurgery-test/PendulumExtraDim-v0", lambda: ExtraDimension(gym.make("Pendulum-v1")))
        gym.register("rlsurgery-test/CartPoleBoxAction-v0", lambda: BoxAction(gym.make("CartPole-v1")))


def check_head_replacement(path, tmp_path):
    register_targets()
    source_model = rls.load(path)
    obs = observations(source_model)
    with th.no_grad():
        q_source = source_model.q_net(obs)
    model = dqn([f"head_replacement:source={path}"], env="rlsurgery-test/CartPoleExtraAction-v0")
    with th.no_grad():
        q = model.q_net(obs)
        q_target = model.q_net_target(obs)
    assert q.shape == (32, 3)
    th.testing.assert_close(q[:, :2], q_source, rtol=0, atol=0)
    th.testing.assert_close(q_target[:, :2], q_source, rtol=0, atol=0)
    # a map: target action 0 takes the source's action 1 and 2 the source's 0; 1 is new
    swapped = dqn(
        [f"head_replacement:source={path},action_map=[1,-1,0]"], "rlsurgery-test/CartPoleExtraAction-v0"
    )
    fresh = dqn([], "rlsurgery-test/CartPoleExtraAction-v0")
    with th.no_grad():
        q = swapped.q_net(obs)
        th.testing.assert_close(q[:, 0], q_source[:, 1], rtol=0, atol=0)
        th.testing.assert_close(q[:, 2], q_source[:, 0], rtol=0, atol=0)
        assert th.equal(swapped.q_net.q_net[4].weight[1], fresh.q_net.q_net[4].weight[1])  # the target's init
    # PPO: the shared logits; SAC: the shared mean, and the critic's value of (a, 0)
    ppo_path = tmp_path / "ppo.zip"
    ppo_source = rls.SurgicalPPO("MlpPolicy", "CartPole-v1", seed=1, **PPO_KW)
    ppo_source.save(ppo_path)
    ppo = rls.SurgicalPPO(
        "MlpPolicy",
        "rlsurgery-test/CartPoleExtraAction-v0",
        seed=0,
        surgeries=[f"head_replacement:source={ppo_path}"],
        **PPO_KW,
    )
    with th.no_grad():
        logits = ppo.policy.get_distribution(obs).distribution.logits
        source_logits = ppo_source.policy.get_distribution(obs).distribution.logits
        # logits are log-probabilities: compare the shared actions up to the normaliser
        th.testing.assert_close(logits[:, 1] - logits[:, 0], source_logits[:, 1] - source_logits[:, 0])
        th.testing.assert_close(
            ppo.policy.predict_values(obs), ppo_source.policy.predict_values(obs), rtol=0, atol=0
        )
    sac_path = tmp_path / "sac.zip"
    sac_source = rls.SurgicalSAC("MlpPolicy", "Pendulum-v1", seed=1, **SAC_KW)
    sac_source.save(sac_path)
    sac = rls.SurgicalSAC(
        "MlpPolicy",
        "rlsurgery-test/PendulumExtraDim-v0",
        seed=0,
        surgeries=[f"head_replacement:source={sac_path}"],
        **SAC_KW,
    )
    pendulum_obs = observations(sac_source)
    with th.no_grad():
        mean = sac.actor(pendulum_obs, deterministic=True)
        th.testing.assert_close(
            mean[:, :1], sac_source.actor(pendulum_obs, deterministic=True), rtol=0, atol=1e-6
        )
        action = th.rand(32, 1) * 2 - 1
        padded = th.cat([action, th.zeros(32, 1)], dim=1)
        for q_new, q_old in zip(sac.critic(pendulum_obs, padded), sac_source.critic(pendulum_obs, action)):
            th.testing.assert_close(q_new, q_old, rtol=1e-6, atol=1e-6)


def test_head_replacement_keeps_the_shared_actions_values(dqn_source, tmp_path):
    check_head_replacement(dqn_source, tmp_path)


def test_head_replacement_proof_fails_when_the_head_keeps_its_fresh_rows(dqn_source, tmp_path):
    from rlsurgery.transfer.head_replacement import HeadReplacement

    def keep_fresh(self, agent, source_model):
        return {name: transfer_toolkit.PartialCopy(dim, prefix, ()) for name, (dim, prefix) in []}

    def fresh_heads(self, agent):
        return list(transfer_toolkit.action_tensors(agent))

    def breakage(monkeypatch):
        monkeypatch.setattr(HeadReplacement, "remap", keep_fresh)
        monkeypatch.setattr(HeadReplacement, "fresh_tensors", fresh_heads)

    assert_proof_fails_when(breakage, check_head_replacement, dqn_source, tmp_path)


# ---------------------------------------------------------------------------------------- refusals and sources
def test_refusals_name_the_surgery_and_the_reason(dqn_source, tmp_path):
    register_targets()
    with pytest.raises(
        rls.IncompatibleSurgeryError, match=r"full_fine_tuning: the source acts in Discrete.*head_replacement"
    ):
        dqn([f"full_fine_tuning:source={dqn_source}"], env="rlsurgery-test/CartPoleExtraAction-v0")
    rls.SurgicalDQN("MlpPolicy", "Acrobot-v1", seed=1, **DQN_KW).save(tmp_path / "acrobot.zip")
    with pytest.raises(rls.IncompatibleSurgeryError, match="head_replacement: the source observes"):
        dqn([f"head_replacement:source={tmp_path / 'acrobot.zip'}"])
    rls.SurgicalPPO("MlpPolicy", "CartPole-v1", seed=1, **PPO_KW).save(tmp_path / "ppo.zip")
    with pytest.raises(
        rls.IncompatibleSurgeryError, match="head_replacement: cannot carry a head from a Discrete"
    ):
        rls.SurgicalPPO(
            "MlpPolicy",
            "rlsurgery-test/CartPoleBoxAction-v0",
            surgeries=[f"head_replacement:source={tmp_path / 'ppo.zip'}"],
            **PPO_KW,
        )
    with pytest.raises(
        rls.IncompatibleSurgeryError, match="head_replacement: action_map has 2 entries for 3"
    ):
        dqn(
            [f"head_replacement:source={dqn_source},action_map=[0,1]"],
            env="rlsurgery-test/CartPoleExtraAction-v0",
        )
    with pytest.raises(
        rls.IncompatibleSurgeryError, match="differ from the target's: 6 tensors of another shape"
    ):
        rls.SurgicalDQN(
            "MlpPolicy",
            "CartPole-v1",
            surgeries=[f"full_fine_tuning:source={dqn_source}"],
            policy_kwargs=dict(net_arch=[8, 16]),
        )
    with pytest.raises(rls.ParameterError, match="full_fine_tuning: parameter 'source' must be an existing"):
        dqn(["full_fine_tuning:source=missing.zip"])
    with pytest.raises(
        rls.IncompatibleSurgeryError, match="feature_extraction: does not compose with full_fine_tuning"
    ):
        dqn([f"feature_extraction:source={dqn_source}", f"full_fine_tuning:source={dqn_source}"])
    with pytest.raises(
        rls.IncompatibleSurgeryError, match="gradual_unfreezing: not available for SurgicalTRPO"
    ):
        rls.SurgicalTRPO("MlpPolicy", "CartPole-v1", surgeries=[f"gradual_unfreezing:source={dqn_source}"])


def test_a_loaded_model_is_a_source_and_surgeries_share_one_copy(dqn_source):
    source_model = rls.load(dqn_source)
    from rlsurgery.transfer.discriminative_fine_tuning import DiscriminativeFineTuning
    from rlsurgery.transfer.gradual_unfreezing import GradualUnfreezing

    model = dqn(
        [GradualUnfreezing(source=source_model, every=100), DiscriminativeFineTuning(source=source_model)]
    )
    expected = source_state(dqn_source)
    for name, tensor in model.policy.state_dict().items():
        assert th.equal(tensor, expected[name]), name
    assert model.surgery_log[0]["params"]["source"].startswith("<in-memory model>")
    assert model.surgery_state["discriminative_fine_tuning"].result["copied_by"] == "gradual_unfreezing"
    model.learn(120)  # ULMFiT's pair: the unfrozen groups train, each at its own rate
    assert [p.requires_grad for p in model.q_net.parameters()] == [False, False, True, True, True, True]
    names = {id(p): n for n, p in model.q_net.named_parameters()}
    scales = {names[id(p)]: g["lr_scale"] for g in model.policy.optimizer.param_groups for p in g["params"]}
    assert scales["q_net.4.weight"] == 1.0
    assert scales["q_net.2.weight"] == pytest.approx(1 / 2.6)
    assert scales["q_net.0.weight"] == pytest.approx(1 / 2.6**2)  # frozen for now, its rate already set


def test_sources_must_be_one_and_the_copy_comes_before_other_network_surgeries(dqn_source, tmp_path):
    from rlsurgery.transfer.discriminative_fine_tuning import DiscriminativeFineTuning
    from rlsurgery.transfer.full_fine_tuning import FullFineTuning

    a, b = rls.load(dqn_source), rls.load(dqn_source)
    with pytest.raises(rls.ParameterError, match="must share one source"):
        dqn([DiscriminativeFineTuning(source=a), FullFineTuning(source=b)])
    with pytest.raises(rls.IncompatibleSurgeryError, match="does not compose with orthogonal_initialization"):
        dqn([f"full_fine_tuning:source={dqn_source}", "orthogonal_initialization"])
    rls.SurgicalPPO("MlpPolicy", "CartPole-v1", seed=1, **PPO_KW).save(tmp_path / "ppo.zip")
    with pytest.raises(
        rls.IncompatibleSurgeryError, match="the source is a SurgicalPPO, the target a SurgicalDQN"
    ):
        dqn([f"full_fine_tuning:source={tmp_path / 'ppo.zip'}"])
    # adapters are inserted after the copy: the source's layers under them, only the adapters train
    model = dqn([f"feature_extraction:source={dqn_source}", "adapter_layers:bottleneck=4"])
    expected = source_state(dqn_source)
    assert th.equal(model.q_net.q_net[0].weight, expected["q_net.q_net.0.weight"])
    trained = {n for n, p in model.q_net.named_parameters() if p.requires_grad}
    assert trained and all(".down." in n or ".up." in n for n in trained), trained


def test_head_replacement_carries_ppo_log_std_and_td3_heads(tmp_path):
    register_targets()
    source_ppo = rls.SurgicalPPO("MlpPolicy", "Pendulum-v1", seed=1, **PPO_KW)
    with th.no_grad():
        source_ppo.policy.log_std.fill_(-0.7)
    source_ppo.save(tmp_path / "ppo.zip")
    ppo = rls.SurgicalPPO(
        "MlpPolicy",
        "rlsurgery-test/PendulumExtraDim-v0",
        seed=0,
        surgeries=[f"head_replacement:source={tmp_path / 'ppo.zip'}"],
        **PPO_KW,
    )
    log_std = ppo.policy.log_std.detach()
    assert float(log_std[0]) == pytest.approx(-0.7) and float(log_std[1]) == 0.0
    obs = observations(source_ppo)
    with th.no_grad():
        means = ppo.policy.action_net(ppo.policy.mlp_extractor.forward_actor(obs))
        source_means = source_ppo.policy.action_net(source_ppo.policy.mlp_extractor.forward_actor(obs))
        th.testing.assert_close(means[:, :1], source_means, rtol=0, atol=1e-6)
    td3_kw = {**SAC_KW, "policy_kwargs": dict(net_arch=[16, 16])}  # SB3's SAC writes use_sde into its dict
    source_td3 = rls.SurgicalTD3("MlpPolicy", "Pendulum-v1", seed=1, **td3_kw)
    source_td3.save(tmp_path / "td3.zip")
    td3 = rls.SurgicalTD3(
        "MlpPolicy",
        "rlsurgery-test/PendulumExtraDim-v0",
        seed=0,
        surgeries=[f"head_replacement:source={tmp_path / 'td3.zip'}"],
        **td3_kw,
    )
    with th.no_grad():
        th.testing.assert_close(td3.actor(obs)[:, :1], source_td3.actor(obs), rtol=0, atol=1e-6)
        th.testing.assert_close(td3.actor_target(obs)[:, :1], source_td3.actor(obs), rtol=0, atol=1e-6)


def test_transfer_from_the_command_line_onto_a_task_variant_that_needs_its_env_arguments(tmp_path, capsys):
    from rlsurgery.cli import main

    common = [
        "--steps",
        "300",
        "--eval-episodes",
        "1",
        "--no-progress",
        "--hyperparams",
        "learning_starts:100",
    ]
    common += ["policy_kwargs:dict(net_arch=[16, 16])"]
    assert main(["train", "dqn", "CartPole-v1", "--out", str(tmp_path / "source"), *common]) == 0
    target = ["train", "dqn", "rlsurgery/Permuted-v0", "--env-kwargs", "env_id:CartPole-v1", "task:1"]
    target += [
        "--surgery",
        f"feature_extraction:source={tmp_path / 'source'}",
        "--out",
        str(tmp_path / "target"),
    ]
    assert main([*target, *common]) == 0
    capsys.readouterr()
    model = rls.load(tmp_path / "target" / "model.zip")
    source_model = rls.load(tmp_path / "source" / "model.zip")
    assert model.surgery_log[0]["key"] == "feature_extraction"
    assert th.equal(
        model.q_net.q_net[0].weight, source_model.q_net.q_net[0].weight
    )  # frozen, from the source
