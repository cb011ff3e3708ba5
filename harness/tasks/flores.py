"""The flores-plus suite kind: FLORES+ devtest translation into and out of the pivot (zero-shot and a fixed few-shot
variant from dev), with the babel-mini controls and XMI, and bits per byte on each language's devtest text."""

from __future__ import annotations

from ..data import DataDir, DataError
from . import TaskSpec, generated_configs, register, spaced, with_controls

# English names used in the prompts, and the ISO 639-1 code fastText lid.176 reports for the language (off-target
# rate). A language outside this table cannot be put in a suite until it is added here.
LANGS = {
    "eng_Latn": ("English", "en"), "deu_Latn": ("German", "de"), "fra_Latn": ("French", "fr"),
    "ita_Latn": ("Italian", "it"), "nld_Latn": ("Dutch", "nl"), "spa_Latn": ("Spanish", "es"),
    "rus_Cyrl": ("Russian", "ru"), "tur_Latn": ("Turkish", "tr"), "arb_Arab": ("Arabic", "ar"),
    "zho_Hans": ("Chinese", "zh"), "cmn_Hans": ("Chinese", "zh"), "hin_Deva": ("Hindi", "hi"),
    "ben_Beng": ("Bengali", "bn"), "tam_Taml": ("Tamil", "ta"), "tel_Telu": ("Telugu", "te"),
    "ukr_Cyrl": ("Ukrainian", "uk"),
}


def lang_info(code: str) -> tuple[str, str]:
    if code not in LANGS:
        raise ValueError(f"language {code}: not in harness/tasks/flores.py LANGS; add its English name and its "
                         "fastText ISO 639-1 code there")
    return LANGS[code]


def lid_code(code: str) -> str:
    """The code the language-ID model reports for a FLORES code (babel-mini's codes are already ISO 639-1)."""
    return LANGS[code][1] if code in LANGS else code


@register("flores-plus", "specs")
def specs(suite: dict) -> list[TaskSpec]:
    lm, mt, pivot = suite["tasks"]["lm"], suite["tasks"]["mt"], suite["pivot"]
    out = [TaskSpec(f"lm:{lang}", "lm", lang, lm["version"]) for lang in suite["languages"]]
    pairs = []
    for x in suite["languages"]:
        if x == pivot:
            continue
        if "from_pivot" in mt["directions"]:
            pairs.append((pivot, x))
        if "to_pivot" in mt["directions"]:
            pairs.append((x, pivot))
    for k in mt["shots"]:
        suffix = "" if k == 0 else f"+{k}shot"
        out += [TaskSpec(f"mt:{s}-{t}{suffix}", "mt", t, mt["version"], source=s, shots=k) for s, t in pairs]
    return out


def _by_id(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: int(r["id"]) if str(r["id"]).isdigit() else str(r["id"]))


def _aligned(data: DataDir, src: str, tgt: str, split: str) -> list[tuple[str, str, str]]:
    """(id, source sentence, target sentence) for the ids both files hold; they must hold the same ids."""
    a, b = _by_id(data.rows("flores_plus", src, split)), data.rows("flores_plus", tgt, split)
    tgt_text = {str(r["id"]): r["text"] for r in b}
    missing = [str(r["id"]) for r in a if str(r["id"]) not in tgt_text]
    if missing or len(tgt_text) != len(a):
        raise DataError(f"{data.root}/flores_plus/{split}: {src} and {tgt} do not hold the same ids (e.g. id "
                        f"{(missing or ['?'])[0]}); use files of one FLORES+ revision")
    return [(str(r["id"]), r["text"], tgt_text[str(r["id"])]) for r in a]


def prompt_fn(spec: TaskSpec, suite: dict, data: DataDir):
    """The prompt of a source sentence: the fixed few-shot prefix (the first `shots` dev pairs by id), then the
    suite's template."""
    cfg = suite["tasks"]["mt"]
    src_name, tgt_name = lang_info(spec.source)[0], lang_info(spec.language)[0]
    one = lambda src: cfg["prompt"].format(src_name=src_name, tgt_name=tgt_name, src=src)
    prefix = ""
    if spec.shots:
        examples = _aligned(data, spec.source, spec.language, cfg["shot_split"])[:spec.shots]
        prefix = "".join(one(s) + " " + t + cfg["shot_separator"] for _, s, t in examples)
    return lambda src: prefix + one(src)


def _take(n_total: int, n: int | None, limit: int | None) -> list[int]:
    n = n or n_total
    n = min(n, limit) if limit else n
    return spaced(n_total, n)


@register("flores-plus", "docs")
def docs(spec: TaskSpec, suite: dict, data: DataDir, limit: int | None = None) -> list[dict]:
    cfg = suite["tasks"][spec.kind]
    if spec.kind == "lm":
        rows = _by_id(data.rows("flores_plus", spec.language, cfg["split"]))
        return [{"id": str(rows[i]["id"]), "text": rows[i]["text"]} for i in _take(len(rows), cfg["n"], limit)]
    pairs = _aligned(data, spec.source, spec.language, cfg["split"])
    chosen = [{"id": pairs[i][0], "src": pairs[i][1], "ref": pairs[i][2]} for i in _take(len(pairs), cfg["n"], limit)]
    return with_controls(chosen, spec, suite, fmt=prompt_fn(spec, suite, data))


register("flores-plus", "configs")(generated_configs)
