"""The Kubernetes work pool's base job template for GPU cells (workpools/kubernetes-gpu-cell.json), checked against
prefect-kubernetes' own schema: the server's validation of a pool's template, the Kubernetes worker's variables
and its job configuration model, rendered with the job variables the dispatcher sends for a cell."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from prefect.server.schemas.actions import WorkPoolCreate
from prefect.utilities.schema_tools import validate
from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration

from registry.quotas import gpu_job_variables
from registry.settings import load_settings

TEMPLATE = Path(__file__).resolve().parents[2] / "workpools" / "kubernetes-gpu-cell.json"


def template() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(TEMPLATE.read_text())
    return loaded


def render(values: dict[str, Any]) -> KubernetesWorkerJobConfiguration:
    return asyncio.run(KubernetesWorkerJobConfiguration.from_template_and_values(template(), values))


def test_the_server_accepts_it_as_a_kubernetes_pools_base_job_template() -> None:
    pool = WorkPoolCreate(name="gpu-a100", type=KubernetesWorker.type, base_job_template=template())
    assert pool.base_job_template["job_configuration"]["job_manifest"]["kind"] == "Job"
    jsonschema.Draft202012Validator.check_schema(template()["variables"])


def test_it_keeps_every_variable_of_the_kubernetes_worker_but_cpu_and_memory() -> None:
    default = KubernetesWorker.get_default_base_job_template()
    ours = template()["variables"]["properties"]
    merged_into_requests = {"cpu_request", "cpu_limit", "memory_request", "memory_limit"}
    missing = set(default["variables"]["properties"]) - set(ours) - merged_into_requests
    assert not missing, f"variables of prefect-kubernetes' template missing here: {sorted(missing)}"
    assert set(default["job_configuration"]) == set(template()["job_configuration"])
    for name, schema in default["variables"]["properties"].items():
        if name not in merged_into_requests:
            assert ours[name].get("type") == schema.get("type"), name


@pytest.mark.parametrize(
    ("family", "count", "resource"), [("A100_80GB", 2, "nvidia.com/gpu"), ("MI_300_192GB", 1, "amd.com/gpu")]
)
def test_a_cells_job_variables_render_its_gpus_and_node_selector(family: str, count: int, resource: str) -> None:
    settings = load_settings()
    variables = gpu_job_variables(settings, family, count)
    validate(variables, template()["variables"], raise_on_error=True, preprocess=True, ignore_required=True)
    configuration = render({**variables, "image": "registry.example/curation:1", "namespace": "cells"})
    pod = configuration.job_manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"] == {resource: str(count)}
    assert container["resources"]["requests"] == {"cpu": "4", "memory": "32Gi"}
    assert pod["nodeSelector"] == dict(settings.accelerators[family].node_selector) != {}
    assert {t["key"] for t in pod["tolerations"]} == {"nvidia.com/gpu", "amd.com/gpu"}
    assert configuration.namespace == "cells" and container["image"] == "registry.example/curation:1"


def test_a_gpu_count_that_is_not_a_count_is_refused() -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"gpu_limits": {"nvidia.com/gpu": "two"}}, template()["variables"])
