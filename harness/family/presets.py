"""Model and training presets for the babel-mini family: sizes and fixed step counts, never time budgets."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    vocab_size: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    seq_len: int
    batch: int
    lr: float
    tok_sample_per_lang: int  # verses per language for tokenizer training
    steps_pretrain: int       # mono-<l> and mixed (compute-matched: same steps, same batch)
    steps_cpt: int            # cpt-<l>: continued pre-training of mixed on one language
    steps_mt: int             # mt-en-<x>: fine-tuning of mixed on en->x pairs
    steps_mt_all: int         # mt-all: all pairs jointly
    mono_s1_langs: tuple[str, ...] = ("en", "ru")  # mono-<l>-s1 from the independent init
    lr_mt_scale: float = 1.0  # MT fine-tuning lr = lr * lr_mt_scale
    mt_bucket: bool = True    # MT batches of neighbours in length order (little padding) instead of random pairs
    mt_schedule: str = "constant"  # MT lr schedule: "constant" (after a fixed warm-up) or "cosine" (train.lr_at)

    def model_config(self) -> dict:
        return dict(vocab_size=self.vocab_size, hidden_size=self.hidden, intermediate_size=self.ffn,
                    num_hidden_layers=self.layers, num_attention_heads=self.heads,
                    num_key_value_heads=self.heads, max_position_embeddings=self.seq_len * 4)

    def as_dict(self) -> dict:
        return asdict(self)

    def recipe(self, data: str) -> dict:
        """The preset fields that shape a member trained on `data` ("lm", "mt" or "-"): architecture, tokenizer,
        batch and learning rate; translation fine-tuning knobs only for "mt". Step counts are the member's own
        (its spec), so changing how long one arm trains never changes another arm's identity."""
        skip = {"name", "steps_pretrain", "steps_cpt", "steps_mt", "steps_mt_all", "mono_s1_langs"}
        return {k: v for k, v in self.as_dict().items()
                if k not in skip and (data == "mt" or not (k.startswith("mt_") or k.startswith("lr_mt")))}


PRESETS = {
    # unit and end-to-end tests: seconds
    "micro": Preset("micro", vocab_size=384, hidden=32, layers=2, heads=2, ffn=64, seq_len=64, batch=8, lr=3e-3,
                    tok_sample_per_lang=300, steps_pretrain=6, steps_cpt=3, steps_mt=3, steps_mt_all=4),
    # the default: the whole family on 2 CPU cores in minutes. MT: full lr, length-bucketed, constant schedule,
    # 960 steps per expert and 2880 for mt-all (benchmarks/mt_sweep.py: fewer steps leave chrF++ at its control)
    "tiny": Preset("tiny", vocab_size=2048, hidden=64, layers=4, heads=4, ffn=176, seq_len=128, batch=16, lr=3e-3,
                   tok_sample_per_lang=6000, steps_pretrain=240, steps_cpt=60, steps_mt=960, steps_mt_all=2880),
    # GPU presets
    "small": Preset("small", vocab_size=8192, hidden=256, layers=8, heads=8, ffn=688, seq_len=256, batch=64, lr=1e-3,
                    tok_sample_per_lang=20000, steps_pretrain=3000, steps_cpt=600, steps_mt=1000, steps_mt_all=3000),
    "base": Preset("base", vocab_size=16384, hidden=512, layers=12, heads=8, ffn=1376, seq_len=256, batch=64, lr=6e-4,
                   tok_sample_per_lang=30000, steps_pretrain=10000, steps_cpt=2000, steps_mt=3000, steps_mt_all=10000),
}
