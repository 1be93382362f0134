"""Kubernetes shell: server-side apply of the built manifests, reads of workload status."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import Any

import kubernetes
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

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


def apply(manifest: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply (create or update) of one manifest, owning the fields it sets.

    ``force`` takes over fields another manager changed (e.g. someone ran ``kubectl scale``):
    the custom resource is the source of truth.
    """
    meta = manifest["metadata"]
    return api_client().call_api(
        _path(manifest["kind"], meta["namespace"], meta["name"]),
        "PATCH",
        query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
        header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
        # Serialized here: the client then sends the body as is with the apply content type.
        body=json.dumps(manifest),
        response_type="object",
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )


def get(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """The object as a dict, or None when it does not exist."""
    try:
        return api_client().call_api(
            _path(kind, namespace, name),
            "GET",
            header_params={"Accept": "application/json"},
            response_type="object",
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def delete(kind: str, namespace: str, name: str) -> bool:
    """Delete one object (its pods go with it); False when it was already gone."""
    try:
        api_client().call_api(
            _path(kind, namespace, name),
            "DELETE",
            header_params={"Accept": "application/json"},
            body={"propagationPolicy": "Background"},
            auth_settings=["BearerToken"],
        )
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def list_names(kind: str, namespace: str, label_selector: str) -> list[str]:
    """Names of the objects of ``kind`` matching ``label_selector``."""
    listing = api_client().call_api(
        _path(kind, namespace),
        "GET",
        query_params=[("labelSelector", label_selector)],
        header_params={"Accept": "application/json"},
        response_type="object",
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )
    return [item["metadata"]["name"] for item in listing.get("items", [])]


def delete_owned(namespace: str, label_selector: str, kinds: Iterable[str] = OWNED_KINDS) -> list[str]:
    """Delete every object the operator made for a consumer; returns ``Kind/name`` of each."""
    deleted = []
    for kind in kinds:
        for name in list_names(kind, namespace, label_selector):
            if delete(kind, namespace, name):
                deleted.append(f"{kind}/{name}")
    return deleted
