"""Kubernetes shell: server-side apply of the built manifests, reads of workload status."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import Any

import kubernetes
from kubernetes.client import ApiClient

FIELD_MANAGER = "smartgrid-operator"

# kind -> (API path prefix, plural) of everything the operator owns.
_RESOURCES = {
    "ConfigMap": ("/api/v1", "configmaps"),
    "Service": ("/api/v1", "services"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
}
OWNED_KINDS = tuple(_RESOURCES)


@functools.cache
def api_client() -> ApiClient:
    """One API client, configured from the pod's ServiceAccount or else from KUBECONFIG."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    return ApiClient()


def _path(kind: str, namespace: str, name: str | None = None) -> str:
    prefix, plural = _RESOURCES[kind]
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


class KubeError(RuntimeError):
    """The API server answered with an error status."""

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status


def _request(
    method: str,
    path: str,
    query: list[tuple[str, str]] | None = None,
    body: Any = None,
    content_type: str = "application/json",
) -> Any:
    """One API request through the client's auth and TLS settings; the JSON answer as dicts.

    A JSON ``body`` is given as dicts (the client serializes it); any other content type as a
    string, sent as is.
    """
    client = api_client()
    _, url, headers, serialized, _ = client.param_serialize(
        method=method,
        resource_path=path,
        query_params=query or [],
        header_params={"Content-Type": content_type, "Accept": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = client.call_api(method, url, header_params=headers, body=serialized, _request_timeout=30)
    data = response.read()
    if response.status >= 400:
        raise KubeError(response.status, method, path, data.decode(errors="replace"))
    return json.loads(data) if data else None


def apply(manifest: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply (create or update) of one manifest, owning the fields it sets.

    ``force`` takes over fields another manager changed (e.g. someone ran ``kubectl scale``):
    the custom resource is the source of truth.
    """
    meta = manifest["metadata"]
    return _request(
        "PATCH",
        _path(manifest["kind"], meta["namespace"], meta["name"]),
        query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
        # JSON is YAML: the apply content type takes it as is.
        body=json.dumps(manifest),
        content_type="application/apply-patch+yaml",
    )


def get(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """The object as a dict, or None when it does not exist."""
    try:
        return _request("GET", _path(kind, namespace, name))
    except KubeError as error:
        if error.status == 404:
            return None
        raise


def delete(kind: str, namespace: str, name: str) -> bool:
    """Delete one object (its pods go with it); False when it was already gone."""
    try:
        _request("DELETE", _path(kind, namespace, name), body={"propagationPolicy": "Background"})
    except KubeError as error:
        if error.status == 404:
            return False
        raise
    return True


def list_names(kind: str, namespace: str, label_selector: str) -> list[str]:
    """Names of the objects of ``kind`` matching ``label_selector``."""
    listing = _request("GET", _path(kind, namespace), query=[("labelSelector", label_selector)])
    return [item["metadata"]["name"] for item in listing.get("items", [])]


def delete_owned(namespace: str, label_selector: str, kinds: Iterable[str] = OWNED_KINDS) -> list[str]:
    """Delete every object the operator made for a consumer; returns ``Kind/name`` of each."""
    deleted = []
    for kind in kinds:
        for name in list_names(kind, namespace, label_selector):
            if delete(kind, namespace, name):
                deleted.append(f"{kind}/{name}")
    return deleted
