"""An example merge method registered with mergekit's own API (issue 15.7): "sign-agreement mean". Each
coordinate of the merge is the base plus `scale` times the mean of the constituents' task vectors, where every
task vector that moves that coordinate moves it the same way; where two disagree in sign the base is kept. A
stricter cousin of TIES' sign election, written to show how a method plugs in, not as a recommendation."""

import torch
from mergekit.merge_methods import registry
from mergekit.merge_methods.base import BasePolicy, InputContract, TensorBatch
from mergekit.merge_methods.easy_define import merge_method


@merge_method(name="sign_agree_mean", pretty_name="Sign-agreement mean",
              contract=InputContract(base=BasePolicy.REQUIRED, min_non_base=1))
def sign_agree_mean(batch: TensorBatch, scale: float = 1.0) -> torch.Tensor:
    base = batch.tensors[batch.base_index]
    dtype = torch.float64 if base.dtype == torch.float64 else torch.float32
    deltas = torch.stack([t.to(dtype) - base.to(dtype) for i, t in enumerate(batch.tensors) if i != batch.base_index])
    signs = torch.sign(deltas)
    agree = (signs >= 0).all(0) | (signs <= 0).all(0)
    merged = base.to(dtype) + scale * torch.where(agree, deltas.mean(0), torch.zeros_like(base, dtype=dtype))
    return merged.to(base.dtype)


registry.register(sign_agree_mean)
