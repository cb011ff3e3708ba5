"""Every on-disk format, defined once (pydantic; unknown fields are refused)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RESULTS_SCHEMA_VERSION = 1
SUBMISSION_SCHEMA_VERSION = 1
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,79}$")



def check_id(v: str, reserved: tuple[str, ...] = ()) -> str:
    """A submission or method id: 2-80 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit."""
    if not _ID.match(v) or v in reserved:
        raise ValueError("use 2-80 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
                         + (f" (not {', '.join(repr(r) for r in reserved)})" if reserved else ""))
    return v


def check_authors(v: list[str]) -> list[str]:
    if any(not a.strip() for a in v):
        raise ValueError("an author name is empty")
    return v

class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


# -- submissions -------------------------------------------------------------------------------------
FAMILY_REF = re.compile(r"^family:babel-mini/[a-z0-9-]+$")
HUB_REF = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+@[0-9a-f]{40}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# mergekit's method names (mergekit 0.1.5); validate also asks mergekit itself.
KNOWN_METHODS = ("linear", "task_arithmetic", "ties", "dare_ties", "dare_linear", "breadcrumbs", "breadcrumbs_ties",
                 "della", "della_linear", "model_stock", "slerp", "nuslerp", "multislerp", "karcher", "sce", "nearswap",
                 "passthrough", "arcee_fusion", "ram", "ramplus_tl")


def _model_ref(v: str) -> str:
    if FAMILY_REF.match(v) or HUB_REF.match(v):
        return v
    raise ValueError("name a family member as family:babel-mini/<member> or a hub model as org/name@<40-hex revision>")


class CheckpointSpec(Strict):
    """A submitted checkpoint: a folder inside the submission, or a hub id pinned to a revision."""

    path: str | None = None                # relative to the submission folder
    hub: str | None = None                 # org/name@<40-hex revision>
    sha256: dict[str, str] = Field(min_length=1)  # weight file -> sha256

    @field_validator("hub")
    @classmethod
    def _hub(cls, v):
        if v is not None and not HUB_REF.match(v):
            raise ValueError("pin the hub id to a commit: org/name@<40-hex revision>")
        return v

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: dict[str, str]):
        for name, digest in v.items():
            if not name.endswith(".safetensors"):
                raise ValueError(f"'{name}': only .safetensors weight files are accepted; convert the checkpoint")
            if not SHA256.match(digest):
                raise ValueError(f"'{name}': sha256 must be 64 lowercase hex digits (sha256sum FILE)")
        return v


class Submission(Strict):
    """submissions/<id>/submission.yaml"""

    schema_version: Literal[1] = 1
    id: str
    title: str = Field(min_length=3, max_length=200)
    authors: list[str] = Field(min_length=1)
    contact: str = Field(min_length=3, max_length=200)    # e-mail address or URL where the submitters answer
    method: str = Field(min_length=1, max_length=80)     # a free name, e.g. "ties-with-my-trick"
    method_family: str | None = None                     # the mergekit method it is, when it is a known one
    kind: Literal["method", "checkpoint", "recipe"]       # method: a merge method over every scenario (issue 15.6)
    arm: Literal["pretrain", "cpt", "mt", "other"] = "other"
    constituents: list[str] = []                         # family:babel-mini/<member> or org/name@<40-hex>; at least
                                                         # one for a checkpoint or recipe, none for a method
    base_model: str | None = None
    checkpoint: CheckpointSpec | None = None             # kind: checkpoint
    recipe: str | None = None                            # kind: recipe: a mergekit YAML inside the submission
    method_spec: str | None = None                       # kind: method: a method spec YAML inside the submission,
                                                         # naming a mergekit built-in with its grid (no module)
    checkpoints: dict[str, CheckpointSpec] | None = None  # kind: method: scenario id -> that scenario's merge
    suites: list[str] = Field(default_factory=lambda: ["babel-mini-v2"], min_length=1)
    generated_by: str | None = None                      # the script that wrote a reference submission
    license: str = Field(min_length=2, max_length=64)    # SPDX identifier, e.g. CC-BY-4.0, Apache-2.0

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return check_id(v)

    @field_validator("authors")
    @classmethod
    def _authors(cls, v: list[str]) -> list[str]:
        return check_authors(v)

    @field_validator("method_family")
    @classmethod
    def _family(cls, v):
        if v is not None and v not in KNOWN_METHODS:
            raise ValueError(f"'{v}' is not a mergekit method; leave it out or use one of: {', '.join(KNOWN_METHODS)}")
        return v

    @field_validator("constituents")
    @classmethod
    def _constituents(cls, v: list[str]) -> list[str]:
        for ref in v:
            _model_ref(ref)
        if len(set(v)) != len(v):
            raise ValueError("a constituent is listed twice")
        return v

    @field_validator("base_model")
    @classmethod
    def _base(cls, v):
        return None if v is None else _model_ref(v)

    @model_validator(mode="after")
    def _kind(self):
        if self.kind == "method":
            if self.constituents or self.recipe is not None or self.checkpoint is not None:
                raise ValueError("kind: method lists no `constituents`, `recipe` or `checkpoint`: the scenarios fix the "
                                 "constituents; give `method_spec` or `checkpoints`")
            if (self.method_spec is None) == (self.checkpoints is None):
                raise ValueError("kind: method needs exactly one of `method_spec: method.yaml` (a mergekit built-in with "
                                 "a parameter grid) or `checkpoints` (one per scenario, with sha256)")
            return self
        if self.method_spec is not None or self.checkpoints is not None:
            raise ValueError("`method_spec` and `checkpoints` belong to kind: method; remove them")
        if not self.constituents:
            raise ValueError("constituents: list at least one model merged; family:babel-mini/<member> or org/name@<40-hex revision>")
        if self.kind == "recipe" and (self.recipe is None or self.checkpoint is not None):
            raise ValueError("kind: recipe needs `recipe: recipe.yml` and no `checkpoint`")
        if self.kind == "checkpoint" and (self.checkpoint is None or self.recipe is not None):
            raise ValueError("kind: checkpoint needs a `checkpoint` (path or hub, with sha256) and no `recipe`")
        if self.checkpoint is not None and (self.checkpoint.path is None) == (self.checkpoint.hub is None):
            raise ValueError("checkpoint: give exactly one of `path` (a folder inside the submission) or `hub`")
        return self


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
    identity: str | None = None        # what the result is reused for (harness/identity.py): a family member's or
                                       # merge's recipe identity, a checkpoint's content hash
    sha256: str                        # sha256 over the weight files' sha256s (the bytes that produced the numbers)
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
    dirty: bool = False                # written with --allow-dirty from a tree with uncommitted code changes
    data: dict | None = None           # suites on local data (harness/data.py): every file read -> sha256, revisions, lock


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
    perm: list[int] | None = None          # mt: document i's control prompt carries the source of document perm[i]
    hyp_control: list[str] | None = None   # mt: the outputs for the source-shuffled control prompts
    stats_control: dict[str, list[list[float]]] | None = None     # mt: those outputs against the right references
    stats_misaligned: dict[str, list[list[float]]] | None = None  # mt: the real outputs against references[perm]
    ll_given: list[float] | None = None    # mt: ln p(" " + reference | prompt with the real source), teacher-forced
    ll_shuffled: list[float] | None = None  # mt: the same given the control prompt (another document's source)
    tgt_bytes: list[int] | None = None     # mt: UTF-8 bytes of each reference (XMI's denominator)
    choice_ll: list[list[float]] | None = None  # mc: log-likelihood of each answer choice, as lm-eval scored it
    gold: list[int] | None = None          # mc: the index of the correct choice


class DocsFile(Strict):
    """submissions/<id>/results/<suite>.docs.json: per-document statistics beside the results file."""

    schema_version: Literal[1] = 1
    suite: str
    suite_sha256: str
    model_sha256: str
    tasks: dict[str, TaskDocs]


class SimilarityRow(Strict):
    """One tidy similarity row: a metric between two models (at one layer, layer pair, group or path point)."""

    metric: str                        # cka_linear | cka_debiased | cka_rbf | cka_linear_matrix | cka_minibatch (hub scale)
                                       # | neuron_jaccard_{lape,ap}
                                       # | task_cosine | sign_conflict[_trim] | sign_conflict_set[_trim] | path_bpb | loss_barrier
    a: str                             # model names (a = b = the merge for constituent-set rows)
    b: str
    a_sha256: str
    b_sha256: str
    relation: Literal["constituents", "merge-constituent", "constituent-set", "member-init"]
    layer: int | None = None           # hidden-state index: 0 = embeddings output, L = last block
    layer_b: int | None = None         # b's layer, for the layer x layer matrix
    group: str | None = None           # weight-space layer group: all | embeddings | lower | middle | upper | head
    alpha: float | None = None         # path_bpb: position on the linear path from a (0) to b (1)
    value: float
    probe: str                         # probe-set version


class SimilarityFile(Strict):
    """submissions/<id>/results/similarity.json; also references/<family>/movement.json (relation member-init)"""

    schema_version: Literal[1] = 1
    probe: str
    probe_sha256: str
    diagnostics: dict = {}             # versions and thresholds of what was computed (compute.DIAG_VERSION)
    identities: dict[str, str] = {}    # model name -> identity (harness/identity.py) of every model in the rows
    provenance: dict
    rows: list[SimilarityRow]


class NeuronRow(Strict):
    """Language-specific neurons of one model: a count or mean selectivity at one layer for one language."""

    metric: str                        # lape_count | ap_count | ap_mean | span_ap_{source,target} | span_count_{source,target}
    layer: int                         # 0 = embedding output dimensions, l = gate neurons of block l
    language: str
    value: float
    units: int                         # neurons (or dimensions) at this layer


class NeuronFile(Strict):
    """<model>/results/neurons.json: per-layer language-neuron statistics and the neuron sets themselves."""

    schema_version: Literal[1] = 1
    model: str
    model_identity: str | None = None  # harness/identity.py: what the file is reused for
    model_sha256: str
    probe: str
    probe_sha256: str
    diagnostics: dict
    provenance: dict
    rows: list[NeuronRow]
    sets: dict[str, dict[str, list[list[int]]]]  # method (lape | ap) -> language -> [layer, index] pairs


# -- merge methods (issue 15) ----------------------------------------------------------------------------
_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")
_METHOD_NAME = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
Scalar = float | int | bool
GRID_VALUES_MAX = 16                     # values one parameter may list


def _grid(v: dict) -> dict:
    for name, values in v.items():
        if not _PARAM.match(name):
            raise ValueError(f"'{name}': a parameter name is a Python identifier of at most 40 characters")
        if isinstance(values, list) and not 1 <= len(values) <= GRID_VALUES_MAX:
            raise ValueError(f"'{name}': a list of values (a tuning grid) holds 1 to {GRID_VALUES_MAX} values")
    return v


class MethodSpec(Strict):
    """methods/specs/<id>.yaml (or a researcher's own file): a merge method, benchmarked on every scenario by
    `babelmerge methods bench`. A parameter given as a list is a tuning grid (the product of all lists)."""

    schema_version: Literal[1] = 1
    id: str
    title: str = Field(min_length=3, max_length=200)
    authors: list[str] = Field(min_length=1)
    description: str | None = Field(default=None, max_length=2000)
    merge_method: str                                    # a mergekit method name (built in, or registered by `module`)
    parameters: dict[str, Scalar | list[Scalar]] = {}   # the method's global parameters (e.g. t, lambda)
    model_parameters: dict[str, Scalar | list[Scalar]] = {}  # every constituent's parameters (e.g. weight, density)
    base: Literal["scenario", "first", "none"] = "scenario"  # base_model: the scenario's base, the first constituent, none
    constituents: Literal["any", "pairs"] = "any"       # pairs: only scenarios with exactly two constituents (SLERP)
    module: str | None = None                            # a local .py beside the spec registering `merge_method` with
                                                         # mergekit (trusted code; never read from a submission)
    reference: str | None = Field(default=None, max_length=300)  # paper or documentation

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return check_id(v, reserved=("specs",))

    @field_validator("authors")
    @classmethod
    def _authors(cls, v: list[str]) -> list[str]:
        return check_authors(v)

    @field_validator("merge_method")
    @classmethod
    def _method(cls, v: str) -> str:
        if not _METHOD_NAME.match(v):
            raise ValueError("a mergekit method name: 2-40 characters of a-z, 0-9 and '_', starting with a letter")
        return v

    @field_validator("parameters", "model_parameters")
    @classmethod
    def _params(cls, v: dict) -> dict:
        return _grid(v)

    @field_validator("module")
    @classmethod
    def _module(cls, v):
        if v is not None and (not v.endswith(".py") or v.startswith("/") or ".." in v.split("/")):
            raise ValueError("a .py file beside the spec, given relative to it (no absolute path, no '..')")
        return v

    @model_validator(mode="after")
    def _known(self):
        if self.module is None and self.merge_method not in KNOWN_METHODS:
            raise ValueError(f"merge_method: '{self.merge_method}' is not a mergekit built-in; use one of "
                             f"{', '.join(KNOWN_METHODS)}, or give `module:` registering it")
        return self


class GridPoint(Strict):
    """One tuning point of a method on one scenario: its parameters, recipe, merge identity and dev scores."""

    parameters: dict[str, Scalar]             # global parameters at this point
    model_parameters: dict[str, Scalar]       # per-constituent parameters at this point
    recipe: dict                              # the mergekit recipe (family references)
    identity: str | None = None               # the merge's identity (harness/identity.py)
    dev: dict[str, float] = {}                # live dev task -> normalized dev score
    dev_score: float | None = None            # their mean (the tuning criterion)
    error: str | None = None                  # the merge or its evaluation failed: why


class MethodScenarioFile(Strict):
    """methods/<id>/<scenario>/method.json: one method on one scenario: the tuning record and the test result."""

    schema_version: Literal[1] = 1
    method: str
    spec_sha256: str                          # the spec as loaded, and the module's bytes when it has one
    scenario: str
    scenario_set: str
    group: str
    category: str
    constituents: list[str]
    base: str
    suite: str
    suite_sha256: str
    dev_suite_sha256: str | None = None       # the dev split's suite (None: not tuned, a submitted checkpoint)
    preset: str
    limit: int | None = None
    tuning: dict                              # rule (text), budget, seed, grid_size, sampled (indices)
    points: list[GridPoint]
    chosen: int | None = None                 # index into points
    results: str | None = None                # test results file, relative to this file's folder
    tasks: list[str]                          # the scenario's tasks
    live: list[str]                           # those live on the test split (the score's tasks)
    test: dict[str, float] = {}               # live test task -> normalized score
    score: float | None = None                # their mean: the method's score on this scenario
    status: Literal["ok", "failed", "skipped"] = "ok"
    error: str | None = None
    reproduced: bool = True                   # False: "checkpoints, not reproduced": the submitter's own checkpoint for
                                              # this scenario, evaluated as given (not merged, not tuned here)
    checkpoint: dict[str, str] | None = None  # reproduced False: its weight files -> sha256 (its identity: identity.py)
    submission: str | None = None             # the kind: method submission benchmarked (its id is the method's)
    provenance: dict
