"""Every on-disk format, defined once (pydantic; unknown fields are refused)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

RESULTS_SCHEMA_VERSION = 1
SUBMISSION_SCHEMA_VERSION = 1
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,79}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


# -- submissions -------------------------------------------------------------------------------------
class Submission(Strict):
    """submissions/<id>/submission.yaml"""

    schema_version: Literal[1] = 1
    id: str
    title: str
    authors: list[str] = Field(min_length=1)
    method: str                               # a free name, e.g. "ties"
    method_family: str | None = None          # a known mergekit method, when it is one
    kind: Literal["checkpoint", "recipe"]
    arm: Literal["pretrain", "cpt", "mt", "other"] = "other"
    constituents: list[str] = Field(min_length=1)  # family:babel-mini/<member> or pinned hub ids
    base_model: str | None = None
    checkpoint: str | None = None             # kind=checkpoint: a folder inside the submission
    recipe: str | None = None                 # kind=recipe: a mergekit YAML inside the submission
    suites: list[str] = Field(default_factory=lambda: ["babel-mini-v1"])
    generated_by: str | None = None           # the script that wrote a reference submission
    license: str = "CC-BY-4.0"

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError("use 2-80 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit")
        return v


# -- results -----------------------------------------------------------------------------------------
class ResultRow(Strict):
    """One tidy row: a task, a language, a metric, a value."""

    task: str                  # "lm:de", "mt:en-ru"
    language: str
    metric: str                # "bits_per_byte", "chrf++", "bleu"
    value: float | None
    stderr: float | None = None       # bootstrap standard deviation
    ci_low: float | None = None       # 95% percentile-bootstrap interval over documents
    ci_high: float | None = None
    n: int
    higher_is_better: bool
    signature: str | None = None  # sacrebleu signature for mt metrics


class ModelInfo(Strict):
    name: str                          # family member name or submission id
    kind: Literal["family", "submission", "external"]
    sha256: str                        # sha256 over the weight files' sha256s
    weights: dict[str, str]            # file -> sha256
    family: str | None = None
    preset: str | None = None
    constituents: list[str] = []
    base_model: str | None = None
    method: str | None = None
    arm: str | None = None


class Provenance(Strict):
    harness_version: str
    git: str
    packages: dict[str, str]
    device: str
    dtype: str
    batch: dict                        # backend, scoring token budget, generation rows
    seed: int
    bootstrap: int = 0                 # resamples behind every interval
    lid_model: str | None = None       # language-ID model behind off-target rates
    created_utc: str
    wall_s: float
    limit: int | None = None
    merge: dict | None = None          # mergekit config and version, for merged models


class ResultsFile(Strict):
    """submissions/<id>/results/<suite>.json and references/<family>/<member>/results/<suite>.json"""

    schema_version: Literal[1] = 1
    suite: str
    suite_sha256: str
    tasks: dict[str, int]              # task -> task version
    model: ModelInfo
    provenance: Provenance
    status: Literal["ok", "failed"] = "ok"
    error: str | None = None
    rows: list[ResultRow]


class TaskDocs(Strict):
    """Per-document statistics of one task, enough to recompute every score and resample it."""

    ids: list[str]
    ll: list[float] | None = None          # lm: natural log-likelihood of each document
    bytes: list[int] | None = None         # lm: UTF-8 bytes of each document
    hyp: list[str] | None = None           # mt: the model's output
    lang: list[str] | None = None          # mt: detected language of the output
    stats: dict[str, list[list[float]]] | None = None  # mt: sacrebleu sufficient statistics per metric
    signatures: dict[str, str] | None = None           # mt: sacrebleu signature per metric


class DocsFile(Strict):
    """submissions/<id>/results/<suite>.docs.json: per-document statistics beside the results file."""

    schema_version: Literal[1] = 1
    suite: str
    suite_sha256: str
    model_sha256: str
    tasks: dict[str, TaskDocs]


class SimilarityRow(Strict):
    """One tidy similarity row: a metric between two models at one layer."""

    metric: str                        # "cka_linear"
    a: str                             # model names
    b: str
    a_sha256: str
    b_sha256: str
    relation: Literal["constituents", "merge-constituent"]
    layer: int                         # 0 = embeddings output, L = last block
    value: float
    probe: str                         # probe-set version


class SimilarityFile(Strict):
    """submissions/<id>/results/similarity.json"""

    schema_version: Literal[1] = 1
    probe: str
    probe_sha256: str
    provenance: dict
    rows: list[SimilarityRow]
