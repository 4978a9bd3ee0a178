"""The methods' loss terms (ops.synthesis_terms) against float64 transcriptions of each paper's equation, written
out element by element: seeded inputs at awkward shapes (one sample, odd widths, one class dominating), values and
gradients.

Tolerances: float32 against float64, relative 1e-5 (values) and 1e-4 (gradients, normwise); gradcheck in float64.
"""

from __future__ import annotations

import math

import pytest
import torch

from lrwa_fast.ops import synthesis_terms as terms
from lrwa_fast.ops.losses import class_balance_loss

LOGIT_SHAPES = [(1, 1), (1, 7), (3, 2), (5, 10), (17, 101)]


def randn(shape, seed, scale=1.0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)


def dominated(shape, seed):
    """Logits where class 0 dominates every row by a wide margin."""
    x = randn(shape, seed)
    x[:, 0] += 40.0
    return x


def close(value, expected, rel=1e-5):
    return abs(float(value) - float(expected)) <= rel * max(1.0, abs(float(expected)))


def softmax64(row, temperature=1.0):
    e = [math.exp((v - max(row)) / temperature) for v in row]
    return [v / sum(e) for v in e]


@pytest.mark.parametrize("shape", LOGIT_SHAPES)
@pytest.mark.parametrize("make", [randn, dominated])
def test_information_entropy_is_dafls_negative_log10_entropy(shape, make):
    t = make(shape, 1)
    rows = [softmax64(r) for r in t.double().tolist()]
    mean = [sum(r[c] for r in rows) / len(rows) for c in range(shape[1])]
    expected = sum(p * math.log10(p) for p in mean if p > 0)
    assert close(terms.information_entropy_loss(t), expected)
    # the library's balance term is the same up to a constant and the factor 1/ln 10 (the recipe's ie / ln 10)
    assert close(class_balance_loss(t.double()) / math.log(10) - math.log10(shape[1]), expected, 1e-10)


@pytest.mark.parametrize("shape", [(1, 1, 3, 3), (2, 5, 7, 3), (3, 4, 9), (1, 3, 2)])
def test_attention_transfer_follows_zskts_equation(shape):
    s, t = randn(shape, 2, 2.0), randn(shape, 3, 0.5)
    maps = []
    for f in (s, t):
        rows = []
        for sample in f.double().reshape(shape[0], shape[1], -1).tolist():
            q = [sum(channel[k] ** 2 for channel in sample) / shape[1] for k in range(len(sample[0]))]
            norm = math.sqrt(sum(v * v for v in q))
            rows.append([v / norm for v in q])
        maps.append(rows)
    diffs = [(a - b) ** 2 for ra, rb in zip(*maps) for a, b in zip(ra, rb)]
    assert close(terms.attention_transfer_loss(s, t), sum(diffs) / len(diffs))


def test_attention_transfer_refuses_different_sizes():
    with pytest.raises(ValueError, match="attention maps of different sizes"):
        terms.attention_transfer_loss(torch.ones(2, 3, 4, 4), torch.ones(2, 3, 2, 2))


def test_attention_transfer_gradient():
    s = randn((2, 3, 5, 3), 4, dtype=torch.float64).requires_grad_()
    t = randn((2, 6, 5, 3), 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: terms.attention_transfer_loss(a, t), (s,))


@pytest.mark.parametrize("shape", LOGIT_SHAPES)
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_agreeing_adversarial_is_the_masked_kl(shape, temperature):
    s, t = randn(shape, 6, 3.0), randn(shape, 7, 3.0)
    t[: shape[0] // 2 + 1] = s[: shape[0] // 2 + 1] * 1.5  # some rows agree for sure
    total = 0.0
    for srow, trow in zip(s.double().tolist(), t.double().tolist()):
        if max(range(len(srow)), key=srow.__getitem__) != max(range(len(trow)), key=trow.__getitem__):
            continue
        ps, pt = softmax64(srow, temperature), softmax64(trow, temperature)
        total += temperature ** 2 * sum(b * (math.log(b) - math.log(a)) for a, b in zip(ps, pt) if b > 0)
    expected = -total / shape[0]
    assert close(terms.agreeing_adversarial_loss(s, t, temperature=temperature), expected)


def test_agreeing_adversarial_ignores_disagreeing_rows():
    s = torch.tensor([[5.0, 0.0], [0.0, 5.0]], requires_grad=True)
    t = torch.tensor([[4.0, 0.0], [4.0, 0.0]])
    terms.agreeing_adversarial_loss(s, t).backward()
    assert s.grad[1].abs().sum() == 0 and s.grad[0].abs().sum() > 0


@pytest.mark.parametrize("shape", LOGIT_SHAPES)
@pytest.mark.parametrize("make", [randn, dominated])
def test_competition_is_one_minus_the_clamped_js(shape, make):
    s, t = make(shape, 8), randn(shape, 9, 2.0)
    total = 0.0
    for srow, trow in zip(s.double().tolist(), t.double().tolist()):
        p, q = softmax64(srow, 3.0), softmax64(trow, 3.0)
        m = [min(max((a + b) / 2, 0.01), 0.99) for a, b in zip(p, q)]
        p = [min(max(a, 0.01), 0.99) for a in p]
        q = [min(max(b, 0.01), 0.99) for b in q]
        # F.kl_div(log P, M) = Σ M (log M - log P): the release's argument order
        total += 0.5 * sum(c * (math.log(c) - math.log(a)) for a, c in zip(p, m)) + \
            0.5 * sum(c * (math.log(c) - math.log(b)) for b, c in zip(q, m))
    js = total / shape[0]
    assert close(terms.clamped_js_divergence(s, t), js)
    assert close(terms.competition_loss(s, t), 1.0 - min(max(js, 0.0), 1.0))


def tv64(x):
    """Total variation of images (B, C, H, W) element by element: the four neighbour differences."""
    b, c, h, w = x.shape
    offsets = [((0, 0), (0, 1)), ((0, 0), (1, 0)), ((1, 0), (0, 1)), ((0, 0), (1, 1))]
    l1 = l2 = 0.0
    for (a_i, a_j), (b_i, b_j) in offsets:
        if (a_i, a_j, b_i, b_j) == (1, 0, 0, 1):  # x[:, :, 1:, :-1] - x[:, :, :-1, 1:]
            pairs = [((i + 1, j), (i, j + 1)) for i in range(h - 1) for j in range(w - 1)]
        elif (b_i, b_j) == (1, 1):
            pairs = [((i, j), (i + 1, j + 1)) for i in range(h - 1) for j in range(w - 1)]
        elif (b_i, b_j) == (0, 1):
            pairs = [((i, j), (i, j + 1)) for i in range(h) for j in range(w - 1)]
        else:
            pairs = [((i, j), (i + 1, j)) for i in range(h - 1) for j in range(w)]
        diffs = [float(x[n, ch, p[0], p[1]] - x[n, ch, q[0], q[1]]) for n in range(b) for ch in range(c)
                 for p, q in pairs]
        l1 += sum(abs(d) for d in diffs) / len(diffs)
        l2 += math.sqrt(sum(d * d for d in diffs))
    return l1, l2


@pytest.mark.parametrize("shape", [(1, 1, 2, 2), (2, 3, 5, 4), (3, 1, 7, 3)])
def test_total_variation_and_l2_on_images(shape):
    x = randn(shape, 10)
    l1, l2 = tv64(x.double())
    assert close(terms.total_variation_l1(x), l1)
    assert close(terms.total_variation_l2(x), l2)
    norms = [math.sqrt(sum(v * v for v in row)) for row in x.double().flatten(1).tolist()]
    assert close(terms.input_l2_loss(x), sum(norms) / len(norms))


@pytest.mark.parametrize("shape", [(1, 2), (3, 9), (2, 4, 5)])
def test_total_variation_on_signals(shape):
    x = randn(shape, 11)
    rows = x.double().reshape(-1, shape[-1]).tolist()
    diffs = [r[i] - r[i + 1] for r in rows for i in range(len(r) - 1)]
    assert close(terms.total_variation_l1(x), sum(abs(d) for d in diffs) / len(diffs))
    assert close(terms.total_variation_l2(x), math.sqrt(sum(d * d for d in diffs)))


def test_total_variation_refuses_five_dimensions():
    with pytest.raises(ValueError, match="samples must be"):
        terms.total_variation_l1(torch.ones(1, 1, 2, 2, 2))


def test_image_prior_gradients():
    x = randn((2, 2, 4, 3), 12, dtype=torch.float64).requires_grad_()
    for term in (terms.total_variation_l1, terms.total_variation_l2, terms.input_l2_loss):
        assert torch.autograd.gradcheck(term, (x,))


@pytest.mark.parametrize("fresh,cached,dim", [(1, 0, 3), (3, 0, 5), (2, 5, 4), (4, 3, 7)])
def test_contrastive_is_cmis_split_infonce(fresh, cached, dim):
    gen = torch.Generator().manual_seed(fresh * 100 + cached)
    local = torch.nn.functional.normalize(torch.randn(fresh + cached, dim, generator=gen), dim=1)
    global_ = torch.nn.functional.normalize(torch.randn(fresh + cached, dim, generator=gen), dim=1)
    temperature = 0.2
    rows = []
    for i in range(fresh + cached):
        logits = [sum(a * b for a, b in zip(local[i].double().tolist(), global_[j].double().tolist())) / temperature
                  for j in range(fresh + cached)]
        top = max(logits)
        rows.append(-(logits[i] - top - math.log(sum(math.exp(v - top) for v in logits))))
    expected = sum(rows[:fresh]) / fresh + (sum(rows[fresh:]) / cached if cached else 0.0)
    assert close(terms.contrastive_loss(local, global_, fresh, temperature), expected)


def test_contrastive_holds_the_global_view_fixed():
    local = torch.randn(3, 4, requires_grad=True)
    global_ = torch.randn(3, 4, requires_grad=True)
    terms.contrastive_loss(local, global_, 3, 0.5).backward()
    assert global_.grad is None and local.grad.abs().sum() > 0


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 5), (1, 4, 3, 2)])
def test_instance_means(shape):
    x = randn(shape, 13)
    expected = x.double() if len(shape) == 2 else x.double().reshape(shape[0], shape[1], -1).mean(2)
    assert torch.allclose(terms.instance_means(x).double(), expected, rtol=1e-6, atol=1e-7)
