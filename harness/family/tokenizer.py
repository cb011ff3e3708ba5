"""Byte-level BPE (Sennrich et al. 2016; GPT-2's byte alphabet) trained on the training split of every
language, with all 256 bytes in the base alphabet so no script maps to unknown."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

BOS, EOS, PAD = "<s>", "</s>", "<pad>"


def train_tokenizer(texts_by_lang: dict[str, list[str]], vocab_size: int, per_lang: int) -> PreTrainedTokenizerFast:
    """Train on an equal, fixed sample (every k-th verse) of each language, in language order."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )

    def sample():
        for lang in sorted(texts_by_lang):
            texts = texts_by_lang[lang]
            step = max(1, len(texts) // per_lang)
            yield from texts[::step][:per_lang]

    tok.train_from_iterator(sample(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   clean_up_tokenization_spaces=False)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast.from_pretrained(str(path))
