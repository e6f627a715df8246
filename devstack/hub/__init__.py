"""The Hub-compatible test server: serves a RepoStore to the real `huggingface_hub`."""

from devstack.hub.app import HubApp, HubError, HubSettings
from devstack.hub.control import Fault, Faults, RequestLog, RequestRecord
from devstack.hub.server import HubServer, HubServerError, main

__all__ = [
    "Fault",
    "Faults",
    "HubApp",
    "HubError",
    "HubServer",
    "HubServerError",
    "HubSettings",
    "RequestLog",
    "RequestRecord",
    "main",
]
