"""A cell's container asks the Docker Engine for the accelerators its template needs, by vendor and count."""

from __future__ import annotations

from docker.types import DeviceRequest

from validators.containers import ContainerSpec, _device_options


def test_nvidia_cells_request_exactly_their_gpu_count() -> None:
    options = _device_options(ContainerSpec(image="r/x@sha256:0", command=(), port=1, vendor="nvidia", gpu_count=2))
    requests = options["device_requests"]
    assert isinstance(requests, list) and len(requests) == 1
    request = requests[0]
    assert isinstance(request, DeviceRequest)
    assert request["Count"] == 2 and request["Capabilities"] == [["gpu"]]


def test_amd_cells_get_the_rocm_devices_and_cpu_cells_nothing() -> None:
    amd = _device_options(ContainerSpec(image="r/x@sha256:0", command=(), port=1, vendor="amd", gpu_count=1))
    assert amd["devices"] == ["/dev/kfd:/dev/kfd:rwm", "/dev/dri:/dev/dri:rwm"] and amd["group_add"] == ["video"]
    assert _device_options(ContainerSpec(image="r/x@sha256:0", command=(), port=1)) == {}
