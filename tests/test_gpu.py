"""GPU paths: evaluation on CUDA agrees with CPU. Skipped without a CUDA device."""

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_cuda_bits_per_byte_matches_cpu(tiny_models):
    from lm_eval.tasks import TaskManager

    from harness.evaluate import SuiteTasks, load_model, make_lm, run_task, task_rows
    from harness.tasks import TaskSpec, lm_eval_configs

    docs = [{"id": str(i), "text": t} for i, t in enumerate(["In the beginning.", "В начале сотворил Бог небо."])]
    suite = {"tasks": {"lm": {"version": 1}}}
    spec = TaskSpec("lm:x", "lm", "x", 1)
    suite["seed"] = 0
    td = TaskManager(include_defaults=False).load(lm_eval_configs(spec, suite, docs))
    tasks = SuiteTasks(suite, [spec], {spec.name: docs}, {spec.name: td}, None)
    values = []
    for device in ("cpu", "cuda"):
        model, tok = load_model(tiny_models[0], device, "float32")
        values.append(task_rows(spec, run_task(make_lm(model, tok, device), spec, tasks), suite)[0]["value"])
    assert abs(values[0] - values[1]) < 1e-4
