"""Weight-space diagnostics on hand-made state dicts whose answers follow from the definitions."""

import math

import pytest
import torch

from harness.similarity import groups, weights


def sd(**tensors):
    return {k.replace("__", "."): torch.tensor(v, dtype=torch.float32) for k, v in tensors.items()}


def test_groups_split_blocks_in_thirds():
    assert [groups.block_group(i, 12) for i in (0, 3, 4, 7, 8, 11)] == ["lower", "lower", "middle", "middle", "upper", "upper"]
    assert groups.parameter_group("model.embed_tokens.weight", 4) == "embeddings"
    assert groups.parameter_group("lm_head.weight", 4) == "head"
    assert groups.parameter_group("model.layers.3.self_attn.q_proj.weight", 4) == "upper"
    assert groups.hidden_group(0, 5) == "embeddings"


def test_cosine_per_group_and_global():
    base = sd(model__embed_tokens__weight=[0.0, 0.0], model__layers__0__w=[0.0, 0.0], lm_head__weight=[0.0])
    a = sd(model__embed_tokens__weight=[1.0, 0.0], model__layers__0__w=[1.0, 1.0], lm_head__weight=[2.0])
    b = sd(model__embed_tokens__weight=[0.0, 1.0], model__layers__0__w=[2.0, 2.0], lm_head__weight=[-1.0])
    ta, tb = weights.task_vector(a, base), weights.task_vector(b, base)
    c = weights.cosine(ta, tb, n_blocks=1)
    assert c["embeddings"] == pytest.approx(0.0)
    assert c["lower"] == pytest.approx(1.0)
    assert c["head"] == pytest.approx(-1.0)
    dot, na, nb = 0 + 4 - 2, 1 + 2 + 4, 1 + 8 + 1
    assert c["all"] == pytest.approx(dot / math.sqrt(na * nb))


def test_sign_conflict_pair_set_and_trim():
    a = {"model.layers.0.w": torch.tensor([1.0, -1.0, 2.0, 0.0, 0.1])}
    b = {"model.layers.0.w": torch.tensor([1.0, 1.0, -2.0, 3.0, -0.1])}
    c = {"model.layers.0.w": torch.tensor([-1.0, 1.0, 2.0, 0.0, 0.0])}
    # pair a,b: coords with both nonzero: 0,1,2,4; conflicts at 1,2,4
    assert weights.sign_conflict([a, b], 1)["all"] == pytest.approx(3 / 4)
    # set: coords with >= 2 nonzero: 0,1,2,4; mixed signs at 0,1,2,4
    assert weights.sign_conflict([a, b, c], 1)["all"] == pytest.approx(1.0)
    # trimming to the top 40% by magnitude keeps a: {2.0, 1 of the 1s}; conflicts can only be counted where both survive
    ta = weights.trim(a, 0.4)["model.layers.0.w"]
    assert int((ta != 0).sum()) == 2 and ta[2] == 2.0


def test_interpolation_and_barrier():
    a = {"w": torch.tensor([0.0, 2.0])}
    b = {"w": torch.tensor([4.0, -2.0])}
    assert weights.interpolate(a, b, 0.25)["w"].tolist() == [1.0, 1.0]
    al = weights.alphas()
    assert len(al) == 11 and al[0] == 0.0 and al[-1] == 1.0 and al[5] == 0.5
    straight = [1.0 + a_ for a_ in al]
    assert weights.loss_barrier(straight, al) == pytest.approx(0.0, abs=1e-12)
    bump = [v + (0.7 if a_ == 0.5 else 0.0) for v, a_ in zip(straight, al)]
    assert weights.loss_barrier(bump, al) == pytest.approx(0.7)
    # a path below its line everywhere inside has barrier exactly 0 (the ends), never a negative number
    dip = [v - (0.3 if 0 < a_ < 1 else 0.0) for v, a_ in zip(straight, al)]
    assert weights.loss_barrier(dip, al) == 0.0
    # a constructed path with its peak off the middle: line from 1 to 3; at alpha 0.75 the line is 2.5, the loss 5
    assert weights.loss_barrier([1.0, 2.0, 3.0, 5.0, 3.0], [0.0, 0.25, 0.5, 0.75, 1.0]) == pytest.approx(2.5)


def test_task_vector_refuses_mismatched_names():
    with pytest.raises(ValueError, match="differ in parameters"):
        weights.task_vector({"a": torch.zeros(1)}, {"b": torch.zeros(1)})
