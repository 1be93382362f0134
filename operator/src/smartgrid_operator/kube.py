"""Kubernetes shell: server-side apply of the built manifests, reads of workload status."""

from __future__ import annotations

import base64
import functools
import json
import os
from collections.abc import Iterable
from typing import Any

import kubernetes
from kubernetes.client import ApiClient

from smartgrid_operator.builders import GROUP, PLURAL, VERSION, is_owned_by

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
CONSUMER = "SmartGridConsumer"
_RESOURCES |= {CONSUMER: (f"/apis/{GROUP}/{VERSION}", PLURAL)}  # the custom resource itself, owned by no one


@functools.cache
def api_client() -> ApiClient:
    """One API client, configured from the pod's ServiceAccount or else from KUBECONFIG."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        # KUBECONFIG as it is now: the client library's own default was fixed when it was imported.
        kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
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
    the custom resource is the source of truth. It would take over a whole object of the same
    name made by someone else just as well, so callers apply only what is absent or owned
    (``builders.is_owned_by``).
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


def delete(kind: str, namespace: str, name: str, uid: str) -> bool:
    """Delete one object (its pods go with it) if it is still the object with ``uid``.

    The uid precondition makes the API server refuse when the object was replaced since the
    caller checked who owns it. False when it was already gone or replaced.
    """
    options = {"propagationPolicy": "Background", "preconditions": {"uid": uid}}
    try:
        _request("DELETE", _path(kind, namespace, name), body=options)
    except KubeError as error:
        if error.status in (404, 409):
            return False
        raise
    return True


def remove_finalizer(kind: str, namespace: str, name: str, finalizer: str) -> bool:
    """Take ``finalizer`` off the object (the others stay); False when the object is gone or
    does not hold it. A JSON patch tested against the list it read: a concurrent change fails it."""
    obj = get(kind, namespace, name)
    finalizers = (obj or {}).get("metadata", {}).get("finalizers") or []
    if finalizer not in finalizers:
        return False
    patch = [
        {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
        {"op": "replace", "path": "/metadata/finalizers", "value": [f for f in finalizers if f != finalizer]},
    ]
    try:
        _request("PATCH", _path(kind, namespace, name), body=patch, content_type="application/json-patch+json")
    except KubeError as error:
        if error.status in (404, 409, 422):
            return False
        raise
    return True


def list_objects(kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
    """The objects of ``kind`` matching ``label_selector``."""
    listing = _request("GET", _path(kind, namespace), query=[("labelSelector", label_selector)])
    return listing.get("items", [])


def delete_owned(
    namespace: str, label_selector: str, owner_uid: str, kinds: Iterable[str] = OWNED_KINDS
) -> list[str]:
    """Delete every object a consumer owns; returns ``Kind/name`` of each.

    Labels are only a filter (anyone can copy them): an object goes only when one of its owner
    references carries ``owner_uid``.
    """
    deleted = []
    for kind in kinds:
        for obj in list_objects(kind, namespace, label_selector):
            meta = obj["metadata"]
            if is_owned_by(obj, owner_uid) and delete(kind, namespace, meta["name"], meta["uid"]):
                deleted.append(f"{kind}/{meta['name']}")
    return deleted


def read_secret(namespace: str, name: str) -> dict[str, bytes] | None:
    """The data of a Secret (base64-decoded bytes), or None when it does not exist.

    Only ``get`` of a named Secret: the operator's RBAC has no ``list`` or ``watch`` on Secrets,
    and it keeps nothing it read (the caller uses the values for one Kafka check).
    """
    try:
        secret = _request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
    except KubeError as error:
        if error.status == 404:
            return None
        raise
    return {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}
