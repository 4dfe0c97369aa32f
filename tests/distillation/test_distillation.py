"""Distillation: loss formulas, a student that agrees with its teacher at the asked size, operate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch as th
from stable_baselines3 import DQN, PPO
from torch.nn import functional as F

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.cli import main
from rlsurgery.core.errors import IncompatibleSurgeryError, ParameterError
from rlsurgery.distillation.core import collect_states, count_parameters, soft_kl
from rlsurgery.distillation.surgeries import (
    FeatureMatching,
    TeacherStudentDistillation,
    distillation_report,
    soft_target_loss,
)
from tests.breakage import assert_proof_fails_when, replaced, wrapped


@pytest.fixture(scope="module")
def teacher_zip(tmp_path_factory):
    """A CartPole PPO teacher: a [64, 64] network whose action layer carries a linear controller
    (push towards the falling pole) through the first hidden units; keeps the pole up 500 steps."""
    model = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, policy_kwargs=dict(net_arch=[64, 64]))
    with th.no_grad():
        extractor = model.policy.mlp_extractor.policy_net
        for layer in (extractor[0], extractor[2]):
            layer.weight.zero_()
            layer.bias.zero_()
        extractor[0].weight[0, 2], extractor[0].weight[0, 3] = 1.0, 0.5  # h1 = tanh(θ + 0.5 θ̇)
        extractor[2].weight[0, 0] = 3.0  # h2 = tanh(3 h1)
        model.policy.action_net.weight.zero_()
        model.policy.action_net.bias.zero_()
        model.policy.action_net.weight[1, 0] = 50.0  # logit of "right" = 50 h2
    model.rls_env_id = "CartPole-v1"
    path = tmp_path_factory.mktemp("teacher") / "teacher.zip"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def dqn_teacher_zip(tmp_path_factory):
    """A CartPole DQN teacher with Q-values far from a fresh network's: Q(s, right) = 20 + 30 u,
    Q(s, left) = 20 − 30 u with u = θ + 0.5 θ̇ (through two ReLU units); keeps the pole up."""
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, policy_kwargs=dict(net_arch=[64, 64]))
    with th.no_grad():
        for net in (model.q_net, model.q_net_target):
            q = net.q_net
            for layer in (q[0], q[2], q[4]):
                layer.weight.zero_()
                layer.bias.zero_()
            q[0].weight[0, 2], q[0].weight[0, 3] = 1.0, 0.5  # relu(u)
            q[0].weight[1, 2], q[0].weight[1, 3] = -1.0, -0.5  # relu(−u)
            q[2].weight[0, 0] = q[2].weight[1, 1] = 1.0
            q[4].weight[1, 0], q[4].weight[1, 1] = 30.0, -30.0
            q[4].weight[0, 0], q[4].weight[0, 1] = -30.0, 30.0
            q[4].bias.fill_(20.0)
    model.rls_env_id = "CartPole-v1"
    path = tmp_path_factory.mktemp("dqn_teacher") / "teacher.zip"
    model.save(path)
    return path


def held_out_states(teacher, n=500):
    """States the teacher visits (not the student's training data)."""
    import gymnasium as gym

    return th.as_tensor(collect_states(teacher, gym.make("CartPole-v1"), n, 123)).float()


def check_teacher_student_regresses_the_teachers_q_values(dqn_teacher_zip):
    """A DQN student trained with it reproduces the teacher's Q-values themselves (their offset of 20
    included, which a softmax / KL match would leave anywhere), not only its greedy actions; the loss
    is ‖s − t‖² (by hand)."""
    spec = f"teacher_student_distillation:teacher={dqn_teacher_zip},steps=1000,rounds=2,epochs=40,learning_rate=0.01"
    student = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", seed=0, policy_kwargs=dict(net_arch=[32]), surgeries=[spec]
    )
    untrained = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, policy_kwargs=dict(net_arch=[32]))
    teacher = DQN.load(dqn_teacher_zip)
    obs = held_out_states(teacher)
    with th.no_grad():
        q_t, q_s, q_0 = teacher.q_net(obs), student.q_net(obs), untrained.q_net(obs)
    error, scale = float((q_s - q_t).abs().mean()), float(q_t.abs().mean())
    assert error < 0.25 * scale, f"mean Q error {error:.2f} against Q-values of {scale:.1f}"
    assert error < 0.25 * float((q_0 - q_t).abs().mean()), (
        f"mean Q error {error:.2f}: not better than untrained"
    )
    assert distillation_report(student)["agreement"] >= 0.85
    t = th.tensor([[2.0, 0.0], [0.0, 1.0]])
    s = th.tensor([[1.0, 1.0], [0.5, 0.0]])
    surgery = rls.catalog.create("teacher_student_distillation")
    assert surgery.loss(None, t, t) == 0
    th.testing.assert_close(surgery.loss(None, t, s), ((s - t) ** 2).mean())


def test_losses_on_crafted_outputs(dqn_teacher_zip):
    t = th.tensor([[2.0, 0.0], [0.0, 1.0]])
    s = th.tensor([[1.0, 1.0], [0.5, 0.0]])
    p = th.softmax(t / 2, -1)
    q = th.log_softmax(s / 2, -1)
    manual_kl = (p * (p.log() - q)).sum(-1).mean()
    th.testing.assert_close(soft_kl(t, s, 2.0), manual_kl)
    ce = th.nn.functional.cross_entropy(s, th.tensor([0, 1]))
    th.testing.assert_close(
        soft_target_loss(t, s, alpha=0.3, temperature=2.0), 0.3 * ce + 0.7 * 4 * manual_kl
    )
    assert soft_kl(t, t, 1.0).abs() < 1e-7
    # teacher_student_distillation regresses the outputs: the loss, and a student that learnt with it
    check_teacher_student_regresses_the_teachers_q_values(dqn_teacher_zip)


def test_teacher_student_proof_fails_on_a_kl_match_or_no_training(dqn_teacher_zip):
    def kl(self, obs, teacher_out, student_out):  # policy distillation's loss: blind to an offset
        return soft_kl(teacher_out, student_out, 1.0)

    def nothing(self, obs, teacher_out, student_out):  # a loss with no gradient: no training
        return (student_out * 0.0).sum()

    for loss in (kl, nothing):  # caught by the student's Q-values, before the loss formula is checked
        assert_proof_fails_when(
            replaced(TeacherStudentDistillation, "loss", loss),
            check_teacher_student_regresses_the_teachers_q_values,
            dqn_teacher_zip,
            match="error",
        )


def test_student_agrees_with_teacher_at_the_asked_size(teacher_zip):
    spec = f"policy_distillation:teacher={teacher_zip},steps=2000,rounds=2,epochs=50,learning_rate=0.01"
    student = SurgicalPPO(
        "MlpPolicy", "CartPole-v1", seed=0, policy_kwargs=dict(net_arch=[8]), surgeries=[spec]
    )
    report = distillation_report(student)
    assert report["agreement"] >= 0.95
    assert report["round_losses"][-1] < report["round_losses"][0]
    small = PPO("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[8]))
    assert (
        report["student_parameters"]
        == count_parameters(small)
        == sum(p.numel() for p in small.policy.parameters())
    )
    assert report["student_parameters"] < report["teacher_parameters"] / 10
    # across algorithms: a DQN student of the PPO teacher
    dqn = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        policy_kwargs=dict(net_arch=[32]),
        surgeries=[spec],
    )
    assert distillation_report(dqn)["agreement"] >= 0.9
    # soft targets train a student too (the loss is checked against its formula above)
    soft = SurgicalPPO(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        policy_kwargs=dict(net_arch=[8]),
        surgeries=[spec.replace("policy_distillation", "soft_target_training")],
    )
    assert distillation_report(soft)["round_losses"][-1] < distillation_report(soft)["round_losses"][0]
    assert distillation_report(soft)["agreement"] >= 0.85


def actor_latent(model, obs):
    """The last hidden layer of a PPO policy, by hand."""
    policy = model.policy
    return policy.mlp_extractor.forward_actor(policy.extract_features(obs, policy.pi_features_extractor))


def check_feature_matching_maps_the_students_features_onto_the_teachers(teacher_zip):
    """The loss is KL(softmax(t) ‖ softmax(s)) + λ ‖W h_s − h_t‖² (by hand, λ = 0.5); trained with λ = 1,
    the regressor W maps the student's 16 hidden units onto the teacher's 64 on held-out states with
    a tenth of the error of a student trained with λ = 0 (the KL alone)."""
    spec = f"feature_matching:teacher={teacher_zip},steps=1000,rounds=2,epochs=30,learning_rate=0.01"
    models = {
        weight: SurgicalPPO(
            "MlpPolicy",
            "CartPole-v1",
            seed=0,
            policy_kwargs=dict(net_arch=[16]),
            surgeries=[f"{spec},weight={weight}"],
        )
        for weight in (1.0, 0.0)
    }
    teacher = PPO.load(teacher_zip)
    obs = held_out_states(teacher)
    errors = {}
    with th.no_grad():
        for weight, model in models.items():
            regressor = model.surgeries[0].regressor
            assert regressor.in_features == 16 and regressor.out_features == 64
            errors[weight] = float(
                F.mse_loss(regressor(actor_latent(model, obs)), actor_latent(teacher, obs))
            )
    assert errors[1.0] < 0.1 * errors[0.0], f"feature error with λ = 1 and 0: {errors}"
    # the loss, term by term, on the trained student
    model = models[1.0]
    surgery = rls.catalog.create(f"{spec},weight=0.5")
    surgery.extra_modules(model, teacher)
    surgery.regressor.load_state_dict(model.surgeries[0].regressor.state_dict())
    surgery._teacher = teacher
    t_out = teacher.policy.get_distribution(obs).distribution.logits.detach()
    s_out = model.policy.get_distribution(obs).distribution.logits
    features = F.mse_loss(surgery.regressor(actor_latent(model, obs)), actor_latent(teacher, obs).detach())
    th.testing.assert_close(surgery.loss(obs, t_out, s_out), soft_kl(t_out, s_out, 1.0) + 0.5 * features)


def test_feature_matching_aligns_hidden_layers(teacher_zip):
    check_feature_matching_maps_the_students_features_onto_the_teachers(teacher_zip)


def test_feature_matching_proof_fails_without_the_feature_term(teacher_zip):
    def kl_only(self, obs, teacher_out, student_out):  # the λ term dropped (as weight=0 always)
        return soft_kl(teacher_out, student_out, 1.0)

    assert_proof_fails_when(
        replaced(FeatureMatching, "loss", kl_only),
        check_feature_matching_maps_the_students_features_onto_the_teachers,
        teacher_zip,
        match="feature error",
    )

    def untrained_regressor(extra_modules):  # W built but never optimised
        return lambda self, student, teacher: extra_modules(self, student, teacher) and []

    assert_proof_fails_when(
        wrapped(FeatureMatching, "extra_modules", untrained_regressor),
        check_feature_matching_maps_the_students_features_onto_the_teachers,
        teacher_zip,
        match="feature error",
    )


def test_operate_distils_a_saved_teacher_from_python_and_the_command_line(teacher_zip, tmp_path, capsys):
    teacher = PPO.load(teacher_zip)
    student = rls.operate(
        teacher, "policy_distillation", env_id="CartPole-v1", net_arch=[8], steps=1000, rounds=1, epochs=20
    )
    assert type(student).__name__ == "SurgicalPPO" and student.policy_kwargs["net_arch"] == [8]
    assert (
        student.surgery_log[0]["key"] == "policy_distillation"
        and student.surgery_log[0]["params"]["teacher"] == ""
    )
    out = tmp_path / "student.zip"
    args = [
        "operate",
        str(teacher_zip),
        "--surgery",
        "policy_distillation:net_arch=[8],steps=1000,rounds=1,epochs=20",
    ]
    assert main([*args, "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["algorithm"] == "SurgicalPPO" and report["distillation"]["student_parameters"] < 1000
    loaded = rls.load(out)  # reloads without the teacher: the distillation is not replayed
    obs = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32) * 0.05
    assert loaded.predict(obs, deterministic=True)[0].shape == (32,)
    assert main([*args, "-o", str(out)]) == 2  # never overwrites
    assert "exists; pass --force" in capsys.readouterr().err
    with pytest.raises(
        IncompatibleSurgeryError, match="double_q_learning: cannot be applied to an existing model"
    ):
        rls.operate(teacher, "double_q_learning")


def test_bad_teacher_and_spaces_are_refused(teacher_zip, tmp_path):
    with pytest.raises(
        ParameterError, match=r"policy_distillation: parameter 'teacher' must be an existing \.zip"
    ):
        SurgicalPPO("MlpPolicy", "CartPole-v1", surgeries=["policy_distillation"])
    with pytest.raises(IncompatibleSurgeryError, match="the teacher's spaces"):
        SurgicalPPO("MlpPolicy", "Acrobot-v1", surgeries=[f"policy_distillation:teacher={teacher_zip}"])
    with pytest.raises(IncompatibleSurgeryError, match="soft_target_training: needs a discrete action space"):
        SurgicalPPO("MlpPolicy", "Pendulum-v1", surgeries=[f"soft_target_training:teacher={teacher_zip}"])


def test_self_distillation_rebuilds_the_same_network_from_its_checkpoint(teacher_zip):
    spec = f"self_distillation:teacher={teacher_zip},steps=2000,rounds=2,epochs=30,learning_rate=0.01"
    student = SurgicalPPO(
        "MlpPolicy", "CartPole-v1", seed=0, policy_kwargs=dict(net_arch=[64, 64]), surgeries=[spec]
    )
    report = distillation_report(student)
    assert report["student_parameters"] == report["teacher_parameters"]
    assert report["agreement"] >= 0.95
    with pytest.raises(IncompatibleSurgeryError, match="is not the same network as the agent"):
        SurgicalPPO("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[8]), surgeries=[spec])
    with pytest.raises(ParameterError, match="net_arch must stay unset"):
        SurgicalPPO("MlpPolicy", "CartPole-v1", surgeries=[spec + ",net_arch=[8]"])


def test_online_distillation_students_teach_each_other(teacher_zip):
    from stable_baselines3 import DQN

    from rlsurgery.distillation.surgeries import _Peers

    # the loss: Σ_i KL(t ‖ s_i) + β · mean_{j≠i} KL(s_j ‖ s_i), here with one peer
    surgery = rls.catalog.create(f"online_distillation:teacher={teacher_zip},peers=1,mutual_weight=0.5")
    peer = DQN("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[])).policy  # one linear layer
    surgery.peers = _Peers([peer])
    obs, t, s = th.randn(5, 4), th.randn(5, 2), th.randn(5, 2)
    p = peer.q_net(obs)
    expected = soft_kl(t, s, 1.0) + 0.5 * soft_kl(p, s, 1.0) + soft_kl(t, p, 1.0) + 0.5 * soft_kl(s, p, 1.0)
    th.testing.assert_close(surgery.loss(obs, t, s), expected)
    # trained together, the agent and its peers agree with the teacher and with each other
    spec = (
        f"online_distillation:teacher={teacher_zip},peers=2,steps=2000,rounds=2,epochs=30,learning_rate=0.01"
    )
    model = SurgicalPPO(
        "MlpPolicy", "CartPole-v1", seed=0, policy_kwargs=dict(net_arch=[16]), surgeries=[spec]
    )
    report = distillation_report(model)
    assert report["agreement"] >= 0.9 and len(report["peer_disagreement"]) == 2
    assert max(report["peer_disagreement"]) <= 0.1


def test_attention_transfer_aligns_conv_attention_maps(tmp_path):
    import gymnasium as gym

    from rlsurgery.distillation.surgeries import attention_map, conv_outputs
    from tests.helpers import TinyImageEnv

    if "rlsurgery-test/TinyImage-v0" not in gym.registry:
        gym.register("rlsurgery-test/TinyImage-v0", entry_point=TinyImageEnv)
    cnn = dict(features_extractor_kwargs=dict(features_dim=16), net_arch=[])
    teacher = SurgicalPPO("CnnPolicy", "rlsurgery-test/TinyImage-v0", seed=1, policy_kwargs=cnn)
    teacher.save(tmp_path / "cnn_teacher.zip")
    # attention of a feature map: Σ_c |F_c|², flattened and unit-normalised
    features = th.tensor([[[[1.0, 0.0], [0.0, 2.0]], [[1.0, 1.0], [0.0, 0.0]]]])
    th.testing.assert_close(attention_map(features), th.tensor([[2.0, 1.0, 0.0, 4.0]]) / np.sqrt(21.0))

    def distance(student):
        obs = th.as_tensor(np.stack([student.observation_space.sample() for _ in range(16)]))
        with th.no_grad():
            pairs = zip(conv_outputs(student.policy, obs), conv_outputs(teacher.policy, obs))
            return float(sum((attention_map(a) - attention_map(b)).norm(dim=1).mean() for a, b in pairs))

    untrained = SurgicalPPO("CnnPolicy", "rlsurgery-test/TinyImage-v0", seed=0, policy_kwargs=cnn)
    spec = f"attention_transfer:teacher={tmp_path / 'cnn_teacher.zip'},steps=200,rounds=1,epochs=20,batch_size=32"
    student = SurgicalPPO(
        "CnnPolicy", "rlsurgery-test/TinyImage-v0", seed=0, policy_kwargs=cnn, surgeries=[spec]
    )
    assert distance(student) < 0.5 * distance(untrained)
    with pytest.raises(IncompatibleSurgeryError, match="needs image observations and a CnnPolicy"):
        SurgicalPPO(
            "MlpPolicy",
            "CartPole-v1",
            surgeries=[f"attention_transfer:teacher={tmp_path / 'cnn_teacher.zip'}"],
        )


#: the distillation keys whose families are checked by building (self_distillation needs a checkpoint of
#: the very same network, see its own test)
FAMILY_KEYS = (
    "policy_distillation",
    "teacher_student_distillation",
    "soft_target_training",
    "feature_matching",
    "online_distillation",
    "attention_transfer",
)
AGENTS = (
    rls.SurgicalDQN,
    rls.SurgicalPPO,
    rls.SurgicalA2C,
    rls.SurgicalTRPO,
    rls.SurgicalSAC,
    rls.SurgicalTD3,
)
FAMILY_CASES = [(key, family) for key in FAMILY_KEYS for family in rls.catalog.get(key).surgery.families]


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """Untrained PPO teachers, one per kind of env: (policy, env id) -> teacher zip."""
    import gymnasium as gym

    from tests.helpers import TinyImageEnv

    if "rlsurgery-test/TinyImage-v0" not in gym.registry:
        gym.register("rlsurgery-test/TinyImage-v0", entry_point=TinyImageEnv)
    folder = tmp_path_factory.mktemp("teachers")
    paths = {}
    for policy, env, kwargs in (
        ("MlpPolicy", "CartPole-v1", dict(net_arch=[16])),
        ("MlpPolicy", "Pendulum-v1", dict(net_arch=[16])),
        ("CnnPolicy", "rlsurgery-test/TinyImage-v0", dict(features_extractor_kwargs=dict(features_dim=16))),
    ):
        path = folder / f"{env.replace('/', '_')}.zip"
        SurgicalPPO(policy, env, seed=1, n_steps=32, batch_size=32, policy_kwargs=kwargs).save(path)
        paths[policy, env] = path
    return paths


@pytest.mark.parametrize(("key", "family"), FAMILY_CASES, ids=[f"{k}-{f}" for k, f in FAMILY_CASES])
def test_every_family_the_catalog_lists_builds(key, family, teachers):
    """The catalog's families are what the code does: each listed family builds a distilled student."""
    cls = {c.algorithm_family: c for c in AGENTS}[family]
    continuous = family in ("sac", "td3")  # they act in continuous spaces only
    image = key == "attention_transfer"
    policy, env = ("CnnPolicy", "rlsurgery-test/TinyImage-v0") if image else ("MlpPolicy", "CartPole-v1")
    if continuous:
        policy, env = "MlpPolicy", "Pendulum-v1"
    policy_kwargs = dict(net_arch=[16])
    if image:
        policy_kwargs["features_extractor_kwargs"] = dict(features_dim=16)
    kwargs = dict(buffer_size=200) if family in ("dqn", "sac", "td3") else dict(n_steps=32)
    if family in ("ppo", "trpo"):
        kwargs["batch_size"] = 32
    teacher = teachers.get((policy, env), teachers["MlpPolicy", "CartPole-v1"])
    spec = f"{key}:teacher={teacher},steps=40,rounds=1,epochs=1,batch_size=16"
    student = cls(policy, env, seed=0, policy_kwargs=policy_kwargs, surgeries=[spec], **kwargs)
    assert distillation_report(student)["surgery"] == key
