"""train.model and train.losses: head shapes, the policy layout, chunked SSL losses,
autocast, metrics, and a short overfit run on one fixed batch."""

from __future__ import annotations

import time

import chess
import pytest
import torch

from dataengine import policy
from tests.test_expand import hand_picked_boards, make_block, random_boards
from train import expand, losses
from train.model import SSL_OUTPUTS, ChessNet, ModelConfig, policy_logits_from_planes


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: `make test` runs two workers on two cores, and torch's
    OpenMP threads slow down 5-10x when they have to share cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = ModelConfig(blocks=1, channels=16, policy_channels=8, value_channels=4,
                   value_hidden=16, ssl_channels=8)  # fmt: skip


def _batch(n: int, seed: int) -> tuple[torch.Tensor, dict]:
    boards = hand_picked_boards() + list(random_boards(seed, n))
    batch = expand.from_numpy(make_block(boards[:n], seed=seed))
    return expand.expand_inputs(batch), expand.expand_targets(batch, teacher_mix=0.5)


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, dict]:
    return _batch(64, seed=11)


# --- config and shapes -------------------------------------------------------------


def test_config_defaults_and_checks():
    config = ModelConfig()
    assert (config.blocks, config.channels, config.value_hidden) == (6, 64, 128)
    assert (config.policy_channels, config.wdl) == (32, False)
    with pytest.raises(TypeError):
        ModelConfig(3)  # kw_only
    with pytest.raises(ValueError, match="channels"):
        ModelConfig(channels=0)
    with pytest.raises(ValueError, match="blocks"):
        ModelConfig(blocks=-1)
    with pytest.raises(ValueError, match="wdl"):
        ModelConfig(wdl=1)
    assert ModelConfig(**config.to_dict()) == config


@pytest.mark.parametrize("wdl", [False, True])
def test_head_shapes(data, wdl):
    x, _ = data
    model = ChessNet(ModelConfig(blocks=2, channels=24, wdl=wdl))
    out = model(x[:5])
    assert out["policy"].shape == (5, policy.N_POLICY)
    assert out["value"].shape == (5,)
    assert (out["value"].abs() <= 1).all()
    assert out["features"].shape == (5, 24, 8, 8)
    assert ("wdl" in out) == wdl
    if wdl:
        assert out["wdl"].shape == (5, 3)
    heads = model.ssl_heads(out["features"])
    assert list(heads) == list(expand.SSL_TASKS)
    for task, k in SSL_OUTPUTS.items():
        assert heads[task].shape == (5, k, 64), task
    with pytest.raises(ValueError, match="input"):
        model(x[:5, :18])


def test_ssl_heads_are_per_position_in_train_mode(data):
    """No batch statistics in the SSL heads: a chunk's output is its rows of the batch's."""
    x, _ = data
    model = ChessNet(TINY).train()
    features = model(x[:16])["features"]
    whole = model.ssl_heads(features)
    part = model.ssl_heads(features[5:9])
    for task in SSL_OUTPUTS:
        torch.testing.assert_close(part[task], whole[task][5:9])


# --- policy layout -----------------------------------------------------------------


def test_policy_layout_function():
    planes = torch.zeros(2, policy.N_PLANES, 8, 8)
    for p in range(policy.N_PLANES):
        for s in range(64):
            planes[0, p, s // 8, s % 8] = s * policy.N_PLANES + p
    flat = policy_logits_from_planes(planes)
    assert torch.equal(flat[0], torch.arange(policy.N_POLICY, dtype=torch.float32))
    assert torch.equal(flat[1], torch.zeros(policy.N_POLICY))


def test_policy_layout_in_the_model():
    """A logit the policy conv puts at square s, plane p comes out at s * 73 + p."""
    model = ChessNet(TINY).eval()
    last_conv = model.policy_head[-1]
    assert last_conv.out_channels == policy.N_PLANES
    e2e4 = policy.move_to_index(chess.Move.from_uci("e2e4"), chess.WHITE)
    cases = [(0, 0), (63, 72), (chess.E2, e2e4 % 73), (chess.H1, 56), (chess.A8, 30)]
    x = expand.expand_inputs(expand.from_numpy(make_block([chess.Board()] * len(cases))))

    def one_hot(module, inputs, output):
        out = torch.zeros_like(output)
        for i, (square, plane) in enumerate(cases):
            out[i, plane, square // 8, square % 8] = 1.0
        return out

    handle = last_conv.register_forward_hook(one_hot)
    try:
        logits = model(x)["policy"]
    finally:
        handle.remove()
    assert logits.argmax(dim=1).tolist() == [s * 73 + p for s, p in cases]
    assert int(logits[2].argmax()) == e2e4 == 877


# --- losses ------------------------------------------------------------------------


def test_ssl_weights_defaults():
    w = losses.SSLWeights()
    assert w.to_dict() == {
        "piece": 1.0, "threat": 0.8, "pin": 0.7, "fork": 0.6,
        "control": 0.5, "pawn_structure": 0.4, "king_safety": 0.4,
    }  # fmt: skip
    with pytest.raises(ValueError, match="pin"):
        losses.SSLWeights(pin=-1.0)
    with pytest.raises(TypeError):
        losses.SSLWeights(1.0)
    total = losses.ssl_total({"piece": torch.tensor(2.0), "fork": torch.tensor(1.0)}, w)
    assert float(total) == pytest.approx(2.6)


def test_policy_loss_ignores_missing_moves():
    logits = torch.randn(4, policy.N_POLICY)
    target = torch.tensor([5, expand.IGNORE_INDEX, 4000, expand.IGNORE_INDEX])
    want = torch.nn.functional.cross_entropy(logits[[0, 2]], target[[0, 2]])
    torch.testing.assert_close(losses.policy_loss(logits, target), want)
    none = torch.full((4,), expand.IGNORE_INDEX)
    assert float(losses.policy_loss(logits, none)) == 0.0  # not NaN


def test_stalemate_loss_is_the_unlikelihood_of_the_stalemating_moves():
    torch.manual_seed(3)
    logits = torch.randn(4, policy.N_POLICY)
    logits[3, 4671] = 15.0  # p ~ 1: the other branch of the loss
    logits.requires_grad_(True)
    moves = torch.tensor([[0, 7, 4000, -1, -1, -1, -1, -1],   # index 0 and padding (-1 -> 0)
                          [-1] * 8,                            # none: not in the mean
                          [12, -1, -1, -1, -1, -1, -1, -1],
                          [4671, 3, -1, -1, -1, -1, -1, -1]])
    loss = losses.stalemate_loss(logits, moves)
    p = logits.detach().double().softmax(-1)
    want = [-torch.log1p(-p[i, [m for m in row if m >= 0]].sum())
            for i, row in enumerate(moves.tolist()) if max(row) >= 0]
    assert float(loss.detach()) == pytest.approx(float(sum(want) / len(want)), rel=1e-5)
    assert float(want[-1]) > 5  # the p ~ 1 row
    loss.backward()
    grad = logits.grad
    for i, row in enumerate(moves.tolist()):  # the stalemating logits are pushed down
        for m in row:
            if m >= 0:
                assert grad[i, m] > 0
    assert (grad[1] == 0).all()  # a position without one takes no part
    none = torch.full((4, 8), -1)
    assert float(losses.stalemate_loss(logits, none).detach()) == 0.0  # not NaN
    # the same index twice counts once
    twice = torch.tensor([[5, 5, -1, -1, -1, -1, -1, -1]])
    once = torch.tensor([[5, -1, -1, -1, -1, -1, -1, -1]])
    assert float(losses.stalemate_loss(logits[:1], twice).detach()) == float(
        losses.stalemate_loss(logits[:1], once).detach())


def test_stalemate_counts():
    logits = torch.zeros(3, policy.N_POLICY)
    logits[:, 10] = 1.0
    moves = torch.tensor([[10, -1], [11, 12], [-1, -1]])
    counts = losses.stalemate_counts(logits, moves)
    assert {k: int(v) for k, v in counts.items()} == {"stalemate_n": 2, "stalemate_top1": 1}
    assert losses.metrics_from_counts(counts)["stalemate_top1"] == pytest.approx(0.5)


def test_mate_loss_is_the_log_likelihood_of_the_mating_moves():
    torch.manual_seed(4)
    logits = torch.randn(3, policy.N_POLICY, requires_grad=True)
    moves = torch.tensor([[0, 7, 4000, -1, -1, -1, -1, -1],   # index 0 and padding (-1 -> 0)
                          [-1] * 8,                            # none: not in the mean
                          [4671, 4671, -1, -1, -1, -1, -1, -1]])  # twice counts once
    loss = losses.mate_loss(logits, moves)
    p = logits.detach().double().softmax(-1)
    want = [-torch.log(p[0, [0, 7, 4000]].sum()), -torch.log(p[2, 4671])]
    assert float(loss.detach()) == pytest.approx(float(sum(want) / 2), rel=1e-5)
    loss.backward()
    grad = logits.grad
    for i, row in enumerate(moves.tolist()):  # the mating logits are pulled up, others down
        for m in row:
            if m >= 0:
                assert grad[i, m] < 0
    assert grad[0, 1] > 0
    assert (grad[1] == 0).all()  # a position without one takes no part
    assert float(losses.mate_loss(logits, torch.full((3, 8), -1)).detach()) == 0.0  # not NaN


def test_mate_counts():
    logits = torch.zeros(3, policy.N_POLICY)
    logits[:, 10] = 1.0
    moves = torch.tensor([[10, 3], [11, 12], [-1, -1]])
    counts = losses.mate_counts(logits, moves)
    assert {k: int(v) for k, v in counts.items()} == {"mate_n": 2, "mate_top1": 1}
    assert losses.metrics_from_counts(counts)["mate_top1"] == pytest.approx(0.5)


def test_value_loss_huber():
    target = torch.tensor([1.0, -1.0, 0.0, 1.0])
    zero = torch.zeros(4)
    # an untrained net (value 0): 0.5 * e^2 on decisive games, the original tool's 0.5 plateau
    assert float(losses.value_loss(zero, target)) == pytest.approx(0.375)
    mask = torch.tensor([True, True, False, False])
    assert float(losses.value_loss(zero, target, mask)) == pytest.approx(0.5)
    # the linear part beyond delta = 1: e = 2 costs 1 * (2 - 0.5)
    wrong = torch.tensor([-1.0])
    assert float(losses.value_loss(wrong, torch.tensor([1.0]))) == pytest.approx(1.5)
    assert float(losses.value_loss(zero, target, torch.zeros(4, dtype=torch.bool))) == 0.0


def test_ssl_losses_definitions(data):
    _, targets = data
    torch.manual_seed(0)
    heads = {t: torch.randn(64, k, 64) for t, k in SSL_OUTPUTS.items()}
    got = losses.ssl_losses(heads, targets)
    assert list(got) == list(expand.SSL_TASKS)
    # piece: mean over positions and squares of -log softmax at the true class
    logp = heads["piece"].log_softmax(dim=1)
    want = -logp.gather(1, targets["piece"].unsqueeze(1)).mean()
    torch.testing.assert_close(got["piece"], want)
    p = torch.sigmoid(heads["pin"])
    y = targets["pin"]
    want = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    torch.testing.assert_close(got["pin"], want)


def test_positive_weights_weigh_the_set_squares(data):
    _, targets = data
    torch.manual_seed(1)
    heads = {t: torch.randn(64, k, 64, requires_grad=True) for t, k in SSL_OUTPUTS.items()}
    pos = losses.SSLPositiveWeights(threat=3.0, pin=10.0, fork=0.5, pawn_structure=1.0,
                                    king_safety=2.5)
    got = losses.ssl_losses(heads, targets, pos)
    plain = losses.ssl_losses(heads, targets)
    for task in expand.MAP_TASKS:
        x, y, w = heads[task], targets[task].float(), getattr(pos, task)
        assert y.sum() > 0, task  # the batch has set squares of every task
        # BCE with pos_weight w: -(w y log p + (1 - y) log (1 - p)), mean over everything
        p = torch.sigmoid(x)
        want = -(w * y * p.log() + (1 - y) * (1 - p).log()).mean()
        torch.testing.assert_close(got[task], want, msg=task)
        if w == 1.0:
            torch.testing.assert_close(got[task], plain[task], msg=task)
        # the gradient on a set square is w times the plain one, on an empty square the same
        (g,) = torch.autograd.grad(got[task], x)
        (g1,) = torch.autograd.grad(plain[task], x)
        set_ = y > 0
        torch.testing.assert_close(g[~set_], g1[~set_], msg=task)
        torch.testing.assert_close(g[set_], w * g1[set_], msg=task)
    for task in expand.CLASS_TASKS:  # class tasks have no positive weight
        torch.testing.assert_close(got[task], plain[task])


def test_positive_weights_check_their_values():
    assert losses.SSLPositiveWeights().to_dict()["fork"] > 1  # rare tasks weigh set squares up
    for bad in (0, -1.0, True, "2"):
        with pytest.raises(ValueError, match="SSLPositiveWeights.pin"):
            losses.SSLPositiveWeights(pin=bad)


@pytest.mark.parametrize("chunk_size", [1, 7, 32, 64, 1000])
@pytest.mark.parametrize("checkpoint", [True, False])
def test_chunked_ssl_equals_unchunked(data, chunk_size, checkpoint):
    x, targets = data
    weights = losses.SSLWeights(pin=2.0, control=0.1)
    pos_weights = losses.SSLPositiveWeights(pin=7.0, threat=2.0)

    def run(chunk: int | None):
        torch.manual_seed(0)
        model = ChessNet(TINY).train()
        features = model(x)["features"]
        if chunk is None:
            per_task = losses.ssl_losses(model.ssl_heads(features), targets, pos_weights)
            loss = losses.ssl_total(per_task, weights)
        else:
            per_task = {}
            loss = losses.ssl_losses_chunked(
                model, features, targets, chunk, weights,
                checkpoint=checkpoint, task_losses=per_task, pos_weights=pos_weights,
            )  # fmt: skip
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return loss.detach(), {k: v.detach() for k, v in per_task.items()}, grads

    loss, per_task, grads = run(None)
    chunked_loss, chunked_per_task, chunked_grads = run(chunk_size)
    torch.testing.assert_close(chunked_loss, loss, rtol=1e-5, atol=1e-6)
    for task in expand.SSL_TASKS:
        torch.testing.assert_close(chunked_per_task[task], per_task[task], rtol=1e-5, atol=1e-6)
    assert grads.keys() == chunked_grads.keys()
    for name, g in grads.items():
        torch.testing.assert_close(chunked_grads[name], g, rtol=1e-4, atol=1e-6, msg=name)
    assert any(name.startswith("tower") for name in grads)  # the trunk learns from SSL
    assert any(name.startswith("ssl.pin") for name in grads)


def test_chunked_ssl_rejects_bad_chunks(data):
    x, targets = data
    model = ChessNet(TINY)
    features = model(x)["features"]
    with pytest.raises(ValueError, match="chunk_size"):
        losses.ssl_losses_chunked(model, features, targets, 0)


def test_bf16_autocast_cpu(data):
    x, targets = data
    model = ChessNet(ModelConfig(blocks=1, channels=16, wdl=True))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        total = (
            losses.policy_loss(out["policy"], targets["policy"])
            + losses.value_loss(out["value"], targets["value"], targets["value_mask"])
            + losses.wdl_loss(out["wdl"], targets["wdl"])
            + losses.ssl_losses_chunked(model, out["features"], targets, 24)
        )
    assert out["policy"].dtype == torch.bfloat16
    assert total.dtype == torch.float32 and torch.isfinite(total)
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# --- metrics -----------------------------------------------------------------------


def test_policy_counts():
    logits = torch.zeros(4, policy.N_POLICY)
    logits[:, 10], logits[:, 20], logits[:, 30] = 3.0, 2.0, 1.0
    target = torch.tensor([10, 30, 40, expand.IGNORE_INDEX])
    counts = losses.policy_counts(logits, target)
    assert {k: int(v) for k, v in counts.items()} == {
        "policy_n": 3, "policy_top1": 1, "policy_top3": 2,
    }  # fmt: skip
    metrics = losses.metrics_from_counts(counts)
    assert metrics["policy_top1"] == pytest.approx(1 / 3)
    assert metrics["policy_top3"] == pytest.approx(2 / 3)


def test_ssl_counts_and_f1(data):
    _, targets = data
    perfect = {}
    for task in expand.SSL_TASKS:
        t = targets[task]
        if task in losses.CLASS_TASKS:
            perfect[task] = torch.nn.functional.one_hot(t, SSL_OUTPUTS[task]).permute(0, 2, 1) * 9.0
        else:
            perfect[task] = t * 20.0 - 10.0
    metrics = losses.ssl_metrics(perfect, targets)
    assert metrics["piece_acc"] == 1.0 and metrics["control_acc"] == 1.0
    for task in losses.MAP_TASKS:
        assert metrics[f"{task}_f1"] == 1.0
    assert metrics["f1/pin_us"] == 1.0 and "f1/shield_them" in metrics

    # hand-checked F1: 2 true positives, 1 false positive, 1 false negative -> 2/3
    y = torch.zeros(1, 2, 64)
    y[0, 0, :3] = 1
    logit = torch.full((1, 2, 64), -5.0)
    logit[0, 0, [0, 1, 10]] = 5.0
    counts = losses.ssl_counts({**perfect, "fork": logit}, {**targets, "fork": y})
    assert counts["fork_tp"].tolist() == [2, 0]
    assert counts["fork_fp"].tolist() == [1, 0]
    assert counts["fork_fn"].tolist() == [1, 0]
    metrics = losses.metrics_from_counts(counts)
    assert metrics["f1/fork_us"] == pytest.approx(2 / 3)
    assert metrics["f1/fork_them"] == 1.0  # nothing to find, nothing found
    total: dict = {}
    losses.add_counts(total, counts)
    losses.add_counts(total, counts)
    assert total["fork_tp"].tolist() == [4, 0]
    assert losses.metrics_from_counts(total)["fork_f1"] == pytest.approx(2 / 3)


# --- overfit -----------------------------------------------------------------------


def test_overfit_one_batch(data):
    """A tiny model learns one fixed batch: policy, value and every SSL loss fall below 0.7x."""
    x, targets = data
    torch.manual_seed(0)
    model = ChessNet(ModelConfig(blocks=1, channels=16)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)

    def step_losses() -> dict[str, torch.Tensor]:
        out = model(x)
        found = losses.ssl_losses(model.ssl_heads(out["features"]), targets)
        found["policy"] = losses.policy_loss(out["policy"], targets["policy"])
        found["value"] = losses.value_loss(out["value"], targets["value"], targets["value_mask"])
        return found

    start = time.perf_counter()
    with torch.no_grad():
        initial = {k: float(v) for k, v in step_losses().items()}
    for _ in range(150):
        found = step_losses()
        total = (
            found["policy"]
            + found["value"]
            + losses.ssl_total({t: found[t] for t in expand.SSL_TASKS})
        )
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
    with torch.no_grad():
        final = {k: float(v) for k, v in step_losses().items()}
    elapsed = time.perf_counter() - start
    report = {k: f"{initial[k]:.3f} -> {final[k]:.3f}" for k in initial}
    # value too: a tanh driven to +-1 early stops learning (see ModelConfig.value_channels)
    for task in ("policy", "value", *expand.SSL_TASKS):
        assert final[task] < 0.7 * initial[task], (task, report)
    assert elapsed < 60, (elapsed, report)
