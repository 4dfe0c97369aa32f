"""Domain adaptation: MMD/CORAL against hand-computed values, alignment on an agent, DANN's reversal."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th

import rlsurgery as rls
from rlsurgery.adaptation import domain_adversarial_training as dann
from rlsurgery.adaptation import feature_alignment
from tests.breakage import assert_proof_fails_when, replaced

th.set_num_threads(1)

SHIFTED = "target_env=rlsurgery/Shifted-v0,target_env_kwargs={env_id: CartPole-v1, scale: [1, 3, 1, 3], offset: 0.5}"
DQN_KW = dict(
    learning_starts=50,
    buffer_size=2_000,
    batch_size=32,
    train_freq=1,
    learning_rate=1e-3,
    policy_kwargs=dict(net_arch=[16]),
)


def dqn(spec):
    return rls.SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=[spec], **DQN_KW)


def latent_gap(model, surgery):
    """MMD² (σ = 1) between the features of source (replay) and target (collected) observations."""
    source = th.as_tensor(model.replay_buffer.observations[:500, 0])
    target = th.as_tensor(np.stack(surgery.target(model).buffer[-500:]))
    latent = rls.SurgicalDQN.LAYOUT.latent
    with th.no_grad():
        return float(
            feature_alignment.mmd2(latent(model.policy, source), latent(model.policy, target), [1.0])
        )


def check_alignment():
    x, y = th.tensor([[0.0], [1.0]]), th.tensor([[0.0], [2.0]])
    k = lambda a, b: math.exp(-((a - b) ** 2) / 2)  # noqa: E731
    xx = (k(0, 0) + 2 * k(0, 1) + k(1, 1)) / 4
    yy = (k(0, 0) + 2 * k(0, 2) + k(2, 2)) / 4
    xy = (k(0, 0) + k(0, 2) + k(1, 0) + k(1, 2)) / 4
    assert float(feature_alignment.mmd2(x, y, [1.0])) == pytest.approx(xx + yy - 2 * xy)
    a = th.tensor([[1.0, 2.0], [2.0, 0.0], [3.0, 1.0]])
    b = th.tensor([[0.0, 0.0], [1.0, 3.0], [5.0, 1.0]])
    ca, cb = np.cov(a.numpy().T), np.cov(b.numpy().T)
    assert float(feature_alignment.coral(a, b)) == pytest.approx(((ca - cb) ** 2).sum() / 16)
    gaps = {}
    for weight in (0.0, 10.0):
        model = dqn(f"feature_alignment:{SHIFTED},weight={weight},collect_every=100,collect_steps=100")
        model.learn(1_500)
        gaps[weight] = latent_gap(model, model.surgeries[0])
    assert gaps[10.0] < 0.5 * gaps[0.0], gaps


def test_alignment_losses_match_hand_computed_values_and_align():
    check_alignment()


def test_alignment_proof_fails_without_the_distance():
    broken = lambda self, x, y: 0.0 * (x.sum() + y.sum())  # noqa: E731
    assert_proof_fails_when(replaced(feature_alignment.FeatureAlignment, "distance", broken), check_alignment)


def check_dann():
    z = th.randn(5, 3, requires_grad=True)
    w = th.randn(5, 3)
    (dann.reverse_gradient(z, 0.5) * w).sum().backward()
    th.testing.assert_close(z.grad, -0.5 * w)
    # a constructed shift: source features N(0, 1), target N(3, 1) through a learnt linear map φ
    generator = th.Generator().manual_seed(0)
    source, target = th.randn(256, 2, generator=generator), th.randn(256, 2, generator=generator) + 3.0
    th.manual_seed(0)
    features = th.nn.Linear(2, 2)
    classifier = th.nn.Sequential(th.nn.Linear(2, 16), th.nn.ReLU(), th.nn.Linear(16, 1))
    optimizer = th.optim.Adam(
        [{"params": features.parameters(), "lr": 1e-2}, {"params": classifier.parameters(), "lr": 1e-3}]
    )
    accuracies = []
    for _ in range(1_000):
        mapped = [dann.reverse_gradient(features(x), 1.0) for x in (source, target)]
        loss, accuracy = dann.domain_loss(classifier, *mapped)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        accuracies.append(accuracy)
    assert max(accuracies[:50]) > 0.9, "the classifier first tells the domains apart"
    assert np.mean(accuracies[-200:]) < 0.6, "then the reversed gradient confuses it (chance: 0.5)"


def test_dann_reverses_the_gradient_and_confuses_the_classifier():
    check_dann()


def test_dann_proof_fails_without_the_reversal():
    assert_proof_fails_when(replaced(dann, "reverse_gradient", lambda z, scale: z), check_dann)


def test_dann_on_an_agent_trains_its_classifier_and_reloads(tmp_path):
    model = dqn(f"domain_adversarial_training:{SHIFTED},collect_every=100,collect_steps=100")
    classifier = model.rls_modules["domain_adversarial_training"]
    before = [p.detach().clone() for p in classifier.parameters()]
    model.learn(400)
    assert any(not th.equal(a, b) for a, b in zip(before, classifier.parameters())), "the classifier trained"
    assert "train/dann_domain_accuracy" in model.logger.name_to_value
    model.save(tmp_path / "dann.zip")
    loaded = rls.load(tmp_path / "dann.zip")
    for a, b in zip(classifier.parameters(), loaded.rls_modules["domain_adversarial_training"].parameters()):
        assert th.equal(a, b)


def test_a_target_env_that_does_not_fit_is_refused_before_training():
    with pytest.raises(rls.IncompatibleSurgeryError, match="feature_alignment: the target env observes"):
        dqn("feature_alignment:target_env=Acrobot-v1")
    with pytest.raises(rls.IncompatibleSurgeryError, match="feature_alignment: cannot make the target env"):
        dqn("feature_alignment:target_env=NoSuchEnv-v0")


# ---------------------------------------------------------------------------------------- labels
@pytest.fixture(scope="module")
def dqn_source(tmp_path_factory):
    path = tmp_path_factory.mktemp("source") / "dqn.zip"
    rls.SurgicalDQN("MlpPolicy", "CartPole-v1", seed=3, **DQN_KW).learn(400).save(path)
    return path


def agreement(model, policy, obs):
    with th.no_grad():
        return float((model.q_net(obs).argmax(-1) == policy.q_net(obs).argmax(-1)).float().mean())


def check_pseudo_labels(path):
    source = rls.load(path)
    found = {}
    for weight in (0.0, 10.0):
        model = dqn(
            f"pseudo_labeling:{SHIFTED},source={path},weight={weight},collect_every=100,collect_steps=100"
        )
        model.learn(800)
        obs = th.as_tensor(np.stack(model.surgeries[0].target(model).buffer[-300:]))
        found[weight] = agreement(model, source.policy, obs)
    assert found[10.0] > 0.9 and found[10.0] > found[0.0] + 0.1, found


def test_pseudo_labels_pull_target_actions_to_the_source(dqn_source):
    check_pseudo_labels(dqn_source)


def test_pseudo_labeling_proof_fails_without_the_label_loss(dqn_source):
    from rlsurgery.adaptation import pseudo_labeling

    assert_proof_fails_when(
        replaced(pseudo_labeling, "label_loss", lambda outputs, labels: 0.0 * outputs.sum()),
        check_pseudo_labels,
        dqn_source,
    )


def test_pseudo_labeling_reloads_its_source_copy_and_refuses_other_networks(dqn_source, tmp_path):
    model = dqn(f"pseudo_labeling:{SHIFTED},source={dqn_source}").learn(100)
    model.save(tmp_path / "m.zip")
    loaded = rls.load(tmp_path / "m.zip")
    source = rls.load(dqn_source)
    for name, tensor in loaded.rls_modules["pseudo_labeling"].state_dict().items():
        assert th.equal(tensor, source.policy.state_dict()[name]), name
    with pytest.raises(rls.IncompatibleSurgeryError, match="pseudo_labeling: the source's networks differ"):
        rls.SurgicalDQN(
            "MlpPolicy",
            "CartPole-v1",
            surgeries=[f"pseudo_labeling:{SHIFTED},source={dqn_source}"],
            policy_kwargs=dict(net_arch=[8]),
        )


def check_self_training():
    from rlsurgery.adaptation import self_training

    keep, actions = self_training.keep_confident(th.tensor([[2.0, 0.0], [0.1, 0.0], [0.0, 3.0]]), 0.8, 1.0)
    assert keep.tolist() == [True, False, True] and actions.tolist() == [0, 0, 1]
    found = {}
    for weight in (0.0, 10.0):
        spec = f"self_training:{SHIFTED},threshold=0.0,rounds=1,round_every=300,weight={weight}"
        model = dqn(f"{spec},collect_every=100,collect_steps=100")
        model.learn(1_200)
        state = model.surgery_state["self_training"]
        assert state.rounds_done == 1 and len(state.labels) > 0
        with th.no_grad():
            greedy = model.q_net(th.as_tensor(state.observations)).argmax(-1).numpy()
        found[weight] = float((greedy == state.labels).mean())
    assert found[10.0] > 0.95 and found[10.0] > found[0.0], found


def test_self_training_keeps_confident_labels_and_fits_them():
    check_self_training()


def test_self_training_proof_fails_without_the_fit():
    from rlsurgery.adaptation import self_training

    assert_proof_fails_when(
        replaced(self_training, "label_loss", lambda outputs, labels: 0.0 * outputs.sum()),
        check_self_training,
    )


# ---------------------------------------------------------------------------------------- co-training
def check_co_training():
    from rlsurgery.adaptation import co_training

    a, b = co_training.views(th.arange(8.0).reshape(2, 4), [0, 2])
    assert a.tolist() == [[0.0, 2.0], [4.0, 6.0]] and b.tolist() == [[1.0, 3.0], [5.0, 7.0]]
    _, kept_a, _, kept_b, agreed = co_training.cross_labels(
        th.tensor([[4.0, 0.0], [0.0, 4.0], [0.1, 0.0]]), th.tensor([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0]]), 0.9
    )
    assert kept_a.tolist() == [True, True, False] and kept_b.tolist() == [True, True, True]
    assert agreed.tolist() == [True, False, False]
    model = dqn(
        f"co_training:{SHIFTED},view_a=[0,1],threshold=0.8,weight=10,collect_every=100,collect_steps=100"
    )
    model.learn(1_500)
    surgery, heads = model.surgeries[0], model.rls_modules["co_training"]
    target = th.as_tensor(np.stack(surgery.target(model).buffer[-400:]))
    with th.no_grad():
        ta, tb = co_training.views(target, [0, 1])
        label, _, _, _, agreed = co_training.cross_labels(heads["a"](ta), heads["b"](tb), 0.8)
        greedy = model.q_net(target).argmax(-1)
    assert float(agreed.float().mean()) > 0.2, "the heads agree confidently on part of the target"
    assert float((greedy[agreed] == label[agreed]).float().mean()) > 0.95, "the agent took their labels"


def test_co_training_heads_label_each_other_and_the_agent():
    check_co_training()


def test_co_training_proof_fails_without_cross_labels():
    from rlsurgery.adaptation import co_training

    original = co_training.cross_labels

    def nobody_agrees(a, b, threshold):
        label_a, kept_a, label_b, kept_b, agreed = original(a, b, threshold)
        return label_a, kept_a & False, label_b, kept_b & False, agreed & False

    assert_proof_fails_when(replaced(co_training, "cross_labels", nobody_agrees), check_co_training)


# ---------------------------------------------------------------------------------------- backtranslation
def check_backtranslation():
    from rlsurgery.adaptation import backtranslation

    identity = backtranslation.ResidualMap(4, 8)
    x = th.randn(3, 4)
    th.testing.assert_close(identity(x), x, rtol=0, atol=0)
    model = dqn(f"backtranslation:{SHIFTED},collect_every=100,collect_steps=100")
    model.learn(1_500)
    surgery, translate = model.surgeries[0], model.rls_modules["backtranslation"]
    target = th.as_tensor(np.stack(surgery.target(model).buffer[-500:]))
    source = th.as_tensor(model.replay_buffer.observations[:500, 0])
    with th.no_grad():
        learnt = float(backtranslation.translation_gap(model, translate, target, source, [1.0]))
        untranslated = float(backtranslation.translation_gap(model, identity, target, source, [1.0]))
    assert learnt < 0.5 * untranslated, (learnt, untranslated)
    shifted = {"env_id": "CartPole-v1", "offset": 0.5}
    raw, _ = gym.make("rlsurgery/Shifted-v0", **shifted).reset(seed=0)
    translated, _ = surgery.translating(model, gym.make("rlsurgery/Shifted-v0", **shifted)).reset(seed=0)
    with th.no_grad():
        np.testing.assert_allclose(translated, translate(th.as_tensor(raw)[None])[0].numpy(), rtol=1e-6)


def test_backtranslation_maps_target_features_onto_the_source():
    check_backtranslation()


def test_backtranslation_proof_fails_when_the_map_does_not_learn():
    from rlsurgery.adaptation import backtranslation

    original = backtranslation.translation_gap

    def frozen(agent, translate, target, source, bandwidths):
        return 0.0 * original(agent, translate, target, source, bandwidths)

    assert_proof_fails_when(replaced(backtranslation, "translation_gap", frozen), check_backtranslation)


def test_dann_on_an_agent_reverses_the_classifiers_gradient_at_the_features():
    model = dqn(f"domain_adversarial_training:{SHIFTED},reversal=0.5,collect_every=100,collect_steps=100")
    model.learn(200)
    surgery, classifier = model.surgeries[0], model.rls_modules["domain_adversarial_training"]
    batch = model.sample_batch(16)
    surgery.target(model).rng = np.random.default_rng(0)
    term = surgery.aux_loss(model, "q", batch)
    parameters = [p for p in model.q_net.parameters() if p.requires_grad]
    reversed_grads = th.autograd.grad(term, parameters, allow_unused=True)
    surgery.target(model).rng = np.random.default_rng(0)  # the same target batch, without the reversal
    latent = rls.SurgicalDQN.LAYOUT.latent
    target = surgery.target_batch(model)
    plain, _ = dann.domain_loss(
        classifier, latent(model.policy, batch.observations[:64]), latent(model.policy, target)
    )
    plain_grads = th.autograd.grad(surgery.params.weight * plain, parameters, allow_unused=True)
    compared = [(a, b) for a, b in zip(reversed_grads, plain_grads) if a is not None and b is not None]
    assert compared and any(float(b.abs().sum()) > 0 for _, b in compared)
    for a, b in compared:
        th.testing.assert_close(a, -0.5 * b, rtol=1e-5, atol=1e-7)
