"""The babel-mini member graph (DESIGN section 4) and its cached, deterministic build."""

from __future__ import annotations

import os
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .. import corpus as corpus_mod
from .. import identity, store
from .names import FAMILY, PIVOT, TARGETS
from .presets import PRESETS, Preset
from .tokenizer import load_tokenizer, train_tokenizer
from .train import lm_batches, mt_batches, mt_prompt, pack, train

FAMILY_VERSION = "babel-mini-family-v1"  # bump when training changes what a member's recipe produces
MT_POOL = 8192  # en->x training pairs per target, evenly spaced over the training books


@dataclass(frozen=True)
class Member:
    name: str
    arm: str                 # init | pretrain | cpt | mt
    parent: str | None       # member it starts from (None: random init)
    data: str                # "lm" (pre-training stream) or "mt" (en->x pairs) or "-"
    langs: tuple[str, ...]   # languages of its data (targets for mt)
    steps: int
    lr_scale: float = 1.0
    init_seed: int | None = None

    @property
    def data_seed(self) -> int:
        return zlib.crc32(self.name.encode())


def members(preset: Preset) -> list[Member]:
    """Every member in dependency order."""
    p = preset
    out = [Member("init-s0", "init", None, "-", (), 0, init_seed=0),
           Member("init-s1", "init", None, "-", (), 0, init_seed=1)]
    out += [Member(f"mono-{l}", "pretrain", "init-s0", "lm", (l,), p.steps_pretrain) for l in corpus_mod.LANGUAGES]
    out += [Member(f"mono-{l}-s1", "pretrain", "init-s1", "lm", (l,), p.steps_pretrain) for l in p.mono_s1_langs]
    out += [Member("mixed", "pretrain", "init-s0", "lm", corpus_mod.LANGUAGES, p.steps_pretrain)]
    out += [Member(f"cpt-{l}", "cpt", "mixed", "lm", (l,), p.steps_cpt, lr_scale=0.3) for l in corpus_mod.LANGUAGES]
    out += [Member(f"mt-en-{x}", "mt", "mixed", "mt", (x,), p.steps_mt, lr_scale=p.lr_mt_scale) for x in TARGETS]
    out += [Member("mt-all", "mt", "mixed", "mt", TARGETS, p.steps_mt_all, lr_scale=p.lr_mt_scale)]
    return out


def family_root(preset: Preset) -> Path:
    return store.home() / "family" / f"{FAMILY}-{preset.name}"


def member_dir(preset: Preset, name: str) -> Path:
    return family_root(preset) / "members" / name


class Builder:
    """Builds members on demand, reusing any whose inputs (spec, preset, tokenizer, parent) are unchanged."""

    def __init__(self, preset_name: str = "tiny", log=print, corpus: corpus_mod.Corpus | None = None):
        self.preset = PRESETS[preset_name]
        self.log = log
        self.root = family_root(self.preset)
        self.corpus = corpus or corpus_mod.build(log=log)
        self._streams: dict[str, np.ndarray] = {}
        self._pairs: dict[str, list] = {}
        self._ids: dict[str, str] = {}

    # -- tokenizer -------------------------------------------------------------------------------
    def tokenizer_dir(self) -> Path:
        return self.root / "tokenizer"

    def tokenizer_key(self) -> str:
        p = self.preset
        return store.sha256_obj({"corpus": self.corpus.manifest["sha256"], "vocab": p.vocab_size,
                                 "sample": p.tok_sample_per_lang, "v": FAMILY_VERSION})

    def tokenizer(self):
        d = self.tokenizer_dir()
        meta = d / "babelmerge-tokenizer.json"
        if meta.exists() and store.read_json(meta).get("key") == self.tokenizer_key():
            return load_tokenizer(d)
        self.log(f"[family] training byte-level BPE tokenizer (vocab {self.preset.vocab_size})")
        tok = train_tokenizer({l: self.corpus.texts(l, "train") for l in corpus_mod.LANGUAGES},
                              self.preset.vocab_size, self.preset.tok_sample_per_lang)
        tok.save_pretrained(str(d))
        store.write_json(meta, {"key": self.tokenizer_key(), "sha256": store.sha256_file(d / "tokenizer.json")})
        return load_tokenizer(d)

    # -- data ------------------------------------------------------------------------------------
    def stream(self, lang: str) -> np.ndarray:
        if lang not in self._streams:
            cache = self.root / "data" / f"{lang}-train-{self.tokenizer_key()[:12]}.npy"
            if cache.exists():
                self._streams[lang] = np.load(cache)
            else:
                tok = self.tokenizer()
                ids = tok(self.corpus.texts(lang, "train"), add_special_tokens=False)["input_ids"]
                arr = pack(ids, tok.bos_token_id, tok.eos_token_id)
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.save(cache, arr)
                self._streams[lang] = arr
        return self._streams[lang]

    def mt_pairs(self, targets: tuple[str, ...]) -> list[tuple[list[int], list[int]]]:
        """(BOS + prompt, target + EOS) token pairs over a fixed pool of evenly spaced training verses."""
        from ..tasks import spaced

        tok = self.tokenizer()
        pairs = []
        for x in targets:
            if x not in self._pairs:
                src, tgt = self.corpus.texts(PIVOT, "train"), self.corpus.texts(x, "train")
                idx = spaced(len(src), MT_POOL)
                prompts = tok([mt_prompt(PIVOT, x, src[i]) for i in idx], add_special_tokens=False)["input_ids"]
                targs = tok([" " + tgt[i] for i in idx], add_special_tokens=False)["input_ids"]
                self._pairs[x] = [([tok.bos_token_id] + p, t + [tok.eos_token_id]) for p, t in zip(prompts, targs)]
            pairs += self._pairs[x]
        return pairs

    # -- members ---------------------------------------------------------------------------------
    def spec(self, name: str) -> Member:
        for m in members(self.preset):
            if m.name == name:
                return m
        raise KeyError(f"unknown family member '{name}'; known: {', '.join(m.name for m in members(self.preset))}")

    def identity(self, name: str) -> str:
        """The member's recipe identity (identity.family_identity); needs the corpus, never training."""
        if name not in self._ids:
            m = self.spec(name)
            self._ids[name] = identity.family_identity(asdict(m), self.preset.recipe(m.data), self.tokenizer_key(),
                                                       self.identity(m.parent) if m.parent else None, FAMILY_VERSION)
        return self._ids[name]

    def member_key(self, m: Member) -> str:
        return self.identity(m.name)

    def cached(self, m: Member) -> bool:
        d = member_dir(self.preset, m.name)
        meta = d / "member.json"
        if not meta.exists():
            return False
        info = store.read_json(meta)
        return info.get("key") == self.member_key(m) and info.get("sha256") == identity.weight_hashes(d)

    def hash_of(self, name: str) -> str:
        return identity.model_hash(member_dir(self.preset, name))

    def train_member(self, m: Member, parent: Path | None = None, on_step=None):
        """The member's model, trained from its parent (default: the parent's built checkpoint) -> (model, stats);
        on_step(n, model) after each training step (the MT sweep's checkpoints)."""
        from transformers import LlamaConfig, LlamaForCausalLM

        tok = self.tokenizer()
        if m.parent is None:
            cfg = LlamaConfig(**self.preset.model_config(), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                              pad_token_id=tok.pad_token_id, tie_word_embeddings=False, rms_norm_eps=1e-5)
            torch.manual_seed(m.init_seed)
            model = LlamaForCausalLM(cfg)
            stats = {"loss_curve": [], "tokens_seen": 0, "wall_s": 0.0}
        else:
            parent = parent or member_dir(self.preset, m.parent)
            model = LlamaForCausalLM.from_pretrained(str(parent), dtype=torch.float32)
            torch.manual_seed(m.data_seed)
            if m.data == "lm":
                batches = lm_batches([self.stream(l) for l in m.langs], self.preset.seq_len, self.preset.batch, m.data_seed)
            else:
                batches = mt_batches(self.mt_pairs(m.langs), self.preset.batch, 2 * self.preset.seq_len,
                                     tok.pad_token_id, m.data_seed, bucket=self.preset.mt_bucket)

            def progress(step, loss, _n=m.name, _s=m.steps):
                self.log(f"[family]   {_n}: step {step}/{_s} loss {loss:.3f}")

            schedule = self.preset.mt_schedule if m.data == "mt" else "cosine"
            hook = (lambda n: on_step(n, model)) if on_step else None
            stats = train(model, batches, m.steps, self.preset.lr * m.lr_scale, progress, schedule=schedule, on_step=hook)
        model.generation_config.pad_token_id = tok.pad_token_id
        return model, stats

    def build_member(self, m: Member) -> dict:
        d = member_dir(self.preset, m.name)
        tok = self.tokenizer()
        key = self.member_key(m)
        t0 = time.perf_counter()
        model, stats = self.train_member(m)
        model.save_pretrained(str(d), safe_serialization=True)
        tok.save_pretrained(str(d))
        numerics = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
                    **{k: os.environ.get(k) for k in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")}}
        info = {"name": m.name, "family": FAMILY, "family_version": FAMILY_VERSION, "preset": self.preset.name,
                "numerics": numerics,
                "spec": asdict(m), "key": key, "identity": key, "config": model.config.to_dict(), "steps": m.steps,
                "parent_sha256": self.hash_of(m.parent) if m.parent else None,
                **stats, "build_wall_s": round(time.perf_counter() - t0, 3), "sha256": identity.weight_hashes(d)}
        store.write_json(d / "member.json", info)
        return info

    def closure(self, names: list[str]) -> set[str]:
        """The members named and all their ancestors."""
        wanted = set()
        for name in names:
            while name:
                wanted.add(name)
                name = self.spec(name).parent
        return wanted

    def build(self, only: list[str] | None = None) -> dict:
        """Build every member (or `only` and their ancestors); write the family manifest."""
        specs = members(self.preset)
        wanted = {m.name for m in specs} if not only else self.closure(only)
        self.tokenizer()
        t0 = time.perf_counter()
        todo = [m for m in specs if m.name in wanted]
        for i, m in enumerate(todo, 1):
            if self.cached(m):
                continue
            self.log(f"[family] ({i}/{len(todo)}) building {m.name} ({m.steps} steps from {m.parent or 'random init'})")
            self.build_member(m)
        manifest = {"family": FAMILY, "version": FAMILY_VERSION, "preset": self.preset.as_dict(),
                    "corpus": self.corpus.manifest["version"], "tokenizer_sha256": store.sha256_file(self.tokenizer_dir() / "tokenizer.json"),
                    "members": {}}
        for m in specs:
            meta = member_dir(self.preset, m.name) / "member.json"
            if meta.exists():
                info = store.read_json(meta)
                manifest["members"][m.name] = {k: info[k] for k in ("spec", "config", "steps", "tokens_seen", "loss_curve",
                                                                    "wall_s", "sha256", "parent_sha256")}
        store.write_json(self.root / "manifest.json", manifest)
        self.log(f"[family] {len(todo)} members ready in {self.root} ({time.perf_counter() - t0:.1f}s)")
        return manifest


def resolve(ref: str, preset_name: str = "tiny") -> Path:
    """`family:babel-mini/<member>` -> the member's checkpoint folder (which must be built)."""
    prefix = f"family:{FAMILY}/"
    if not ref.startswith(prefix):
        raise ValueError(f"'{ref}' is not a family reference; write it as {prefix}<member>")
    name = ref[len(prefix):]
    path = member_dir(PRESETS[preset_name], name)
    if not (path / "member.json").exists():
        raise FileNotFoundError(f"family member '{name}' is not built for preset {preset_name}; run `babelmerge family build`")
    return path
