"""The belebele suite kind: lm-eval's own `belebele_<lang>` task configs (Bandarkar et al., ACL 2024), as lm-eval
0.4 ships them, with only the data source replaced by the local `belebele/data/<lang>.jsonl` rows."""

from __future__ import annotations

from pathlib import Path

from ..data import DataDir
from . import TaskSpec, register, spaced


@register("belebele", "specs")
def specs(suite: dict) -> list[TaskSpec]:
    cfg = suite["tasks"]["mc"]
    return [TaskSpec(f"mc:{lang}", "mc", lang, cfg["version"], lm_eval_task=cfg["lm_eval_task"].format(lang=lang))
            for lang in suite["languages"]]


@register("belebele", "docs")
def docs(spec: TaskSpec, suite: dict, data: DataDir, limit: int | None = None) -> list[dict]:
    rows = data.rows("belebele", spec.language)
    n = suite["tasks"]["mc"]["n"] or len(rows)
    n = min(n, limit) if limit else n
    out = []
    for i in spaced(len(rows), n):
        r = rows[i]
        key = f"{r.get('link', '')}#{r.get('question_number', i)}" if "link" in r else str(i)
        out.append({"id": key, **{k: v for k, v in r.items() if isinstance(v, str)}})
    return out


def shipped_config(task: str) -> dict:
    """lm-eval's own YAML for a task (its includes resolved), as installed."""
    import lm_eval
    from lm_eval.tasks._yaml_loader import load_yaml

    lang = task.removeprefix("belebele_")
    path = Path(lm_eval.__file__).parent / "tasks" / "belebele" / f"belebele_{lang}.yaml"
    if not path.is_file():
        raise ValueError(f"{task}: lm-eval {lm_eval.__version__} ships no {path.name}; drop the language from the suite")
    return load_yaml(path)


@register("belebele", "configs")
def configs(spec: TaskSpec, suite: dict, docs: list[dict]) -> list[dict]:
    import datasets

    cfg = shipped_config(spec.lm_eval_name)
    for key in ("dataset_path", "dataset_name", "dataset_kwargs"):
        cfg.pop(key, None)

    def custom_dataset(**_):
        return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})

    return [{**cfg, "custom_dataset": custom_dataset}]
