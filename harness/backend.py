"""A fast lm-eval model backend, registered as "babelmerge": one loaded model for every task, log-likelihood
over length-sorted batches filled to a token budget (right padding, no mask: causal attention never sees
the pads, so scores equal unbatched ones), and batched greedy decoding that stops at the task's strings,
on one CPU thread when a decoding step is too small to share between threads."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable

import torch
from lm_eval import utils as lm_utils
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model


def token_budget_batches(lengths: list[int], max_tokens: int, max_rows: int = 512) -> list[list[int]]:
    """Indices grouped into batches, longest first, so that rows * longest row <= max_tokens.

    lengths: one length per item. A single item longer than max_tokens gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, cur, cur_max = [], [], 0
    for i in order:
        longest = max(cur_max, lengths[i])
        if cur and (longest * (len(cur) + 1) > max_tokens or len(cur) >= max_rows):
            batches.append(cur)
            cur, longest = [], lengths[i]
        cur.append(i)
        cur_max = longest
    if cur:
        batches.append(cur)
    return batches


@torch.no_grad()
def score_windows(model, windows: list[tuple[list[int], list[int]]], device: str, max_tokens: int, pad_id: int = 0,
                  want_greedy: bool = False) -> list[tuple[float, bool]]:
    """Sum of log p(continuation | context) for each (context, continuation) window.

    The model reads context + continuation[:-1]; the continuation tokens are scored. Returns
    (log-likelihood, whether every continuation token is the argmax) per window, in input order.
    """
    inputs = [(ctx + cont)[:-1] for ctx, cont in windows]
    out: list[tuple[float, bool]] = [(0.0, True)] * len(windows)
    for batch in token_budget_batches([len(x) for x in inputs], max_tokens):
        width = max(len(inputs[i]) for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        for r, i in enumerate(batch):
            ids[r, :len(inputs[i])] = torch.tensor(inputs[i])
        logits = model(input_ids=ids.to(device)).logits
        for r, i in enumerate(batch):
            ctx, cont = windows[i]
            start = len(ctx) - 1  # position whose logits predict cont[0]
            lp = torch.log_softmax(logits[r, start:start + len(cont)].float(), dim=-1)
            target = torch.tensor(cont, device=lp.device)
            ll = float(lp.gather(1, target[:, None]).sum())
            greedy = bool((lp.argmax(-1) == target).all()) if want_greedy else False
            out[i] = (ll, greedy)
    return out


SMALL_STEP_FLOPS = 2e8  # a decoding step below this (about 20 ms on one core) runs on one thread


def decode_threads(model, device: str, rows: int) -> int | None:
    """Intra-op CPU threads for greedy decoding: 1 when a step (rows x one token, ~2 x rows x parameters
    multiply-adds) is so small that splitting its many tiny kernels costs more in synchronization than it
    saves (on a busy 2-core machine, several times over); None (torch's setting) otherwise and on GPUs."""
    if not device.startswith("cpu"):
        return None
    n_params = sum(p.numel() for p in model.parameters())
    return 1 if 2 * rows * n_params < SMALL_STEP_FLOPS else None


@contextmanager
def torch_threads(n: int | None):
    """Run the block with n intra-op threads (None: unchanged), restoring the previous setting."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def auto_batch_tokens(model, device: str) -> int:
    """A token budget per forward pass: fixed on CPU; on CUDA, sized to a quarter of the free memory for
    the logits and activations of the widest layer (float32)."""
    if not device.startswith("cuda"):
        return 8192
    free, _ = torch.cuda.mem_get_info()
    cfg = model.config
    per_token = 4 * (cfg.vocab_size * 2 + cfg.hidden_size * 8 + getattr(cfg, "intermediate_size", 0) * 3)
    return int(max(2048, min(1 << 20, free // 4 // per_token)))


@register_model("babelmerge")
class BabelLM(LM):
    def __init__(self, model=None, tokenizer=None, pretrained: str | None = None, device: str = "cpu",
                 dtype: str = "float32", batch_tokens: int | None = None, gen_batch_size: int = 64,
                 max_length: int | None = None, decode_threads: int | None = None) -> None:
        super().__init__()
        if model is None:
            from .sources import load_model

            model, tokenizer = load_model(pretrained, device, dtype)
        self.model, self.tok = model.eval(), tokenizer
        self._device = device
        self.max_length = max_length or model.config.max_position_embeddings
        self.batch_tokens = batch_tokens or auto_batch_tokens(model, device)
        self.gen_batch_size = gen_batch_size
        self.decode_threads = decode_threads  # None: decode_threads() decides per batch
        self.prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id

    def _encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    # -- scoring ---------------------------------------------------------------------------------
    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        windows, owner = [], []
        for i, req in enumerate(requests):
            (text,) = req.args
            for w in lm_utils.get_rolling_token_windows(token_list=self._encode(text), prefix_token=self.prefix,
                                                        max_seq_len=self.max_length, context_len=1):
                windows.append(lm_utils.make_disjoint_window(w))
                owner.append(i)
        scores = score_windows(self.model, windows, self.device, self.batch_tokens, self.tok.pad_token_id or 0)
        total = [0.0] * len(requests)
        for i, (ll, _) in zip(owner, scores):
            total[i] += ll
        for req, ll in zip(requests, total):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, ll)
        return total

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        windows = []
        for req in requests:
            context, continuation = req.args
            ctx = self._encode(context) if context else []
            if ctx[:1] != [self.prefix]:  # a context that spells out its BOS (the suite's mt prompt) is not given two
                ctx = [self.prefix] + ctx
            cont = self._encode(continuation)
            whole = (ctx + cont)[-(self.max_length + 1):]
            windows.append((whole[:len(whole) - len(cont)], cont))
        return score_windows(self.model, windows, self.device, self.batch_tokens, self.tok.pad_token_id or 0,
                             want_greedy=True)

    # -- generation ------------------------------------------------------------------------------
    @torch.no_grad()
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault(repr(sorted(req.args[1].items())), []).append(i)
        for idx in groups.values():
            kwargs = dict(requests[idx[0]].args[1])
            until = list(kwargs.pop("until", None) or [])
            max_new = int(kwargs.pop("max_gen_toks", 256))
            if kwargs.pop("do_sample", False):
                raise ValueError("the babelmerge backend decodes greedily only (do_sample must be false)")
            for chunk in _chunks(sorted(idx, key=lambda i: -len(requests[i].args[0])), self.gen_batch_size):
                threads = self.decode_threads or decode_threads(self.model, str(self.device), len(chunk))
                with torch_threads(threads):
                    texts = self._generate([requests[i].args[0] for i in chunk], until, max_new)
                for i, t in zip(chunk, texts):
                    out[i] = t
                    self.cache_hook.add_partial("generate_until", requests[i].args, t)
        return out  # type: ignore[return-value]

    def _generate(self, contexts: list[str], until: list[str], max_new: int) -> list[str]:
        enc = [self._encode(c)[-(self.max_length - max_new):] for c in contexts]
        width = max(len(e) for e in enc)
        pad = self.tok.pad_token_id or 0
        ids = torch.full((len(enc), width), pad, dtype=torch.long)
        mask = torch.zeros((len(enc), width), dtype=torch.long)
        for r, e in enumerate(enc):  # left padding: every row's last context token is aligned
            ids[r, width - len(e):] = torch.tensor(e)
            mask[r, width - len(e):] = 1
        gen = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), do_sample=False,
                                  max_new_tokens=max_new, pad_token_id=pad, eos_token_id=self.tok.eos_token_id,
                                  stop_strings=until or None, tokenizer=self.tok if until else None)
        texts = self.tok.batch_decode(gen[:, width:], skip_special_tokens=True)
        return [_cut(t, until) for t in texts]


def _cut(text: str, until: Iterable[str]) -> str:
    for s in until:
        if s and s in text:
            text = text.split(s, 1)[0]
    return text


def _chunks(items: list[int], n: int):
    for i in range(0, len(items), n):
        yield items[i:i + n]
