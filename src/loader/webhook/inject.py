"""What the webhook adds to a pod, as a JSONPatch (RFC 6902). Pure: dicts in, dicts out.

A pod annotated ``loader.dev/inject: "true"`` (and not yet ``loader.dev/injected``) gets:

- ``loader-secrets``: an ``emptyDir`` with ``medium: Memory`` (the agent writes only to tmpfs),
  mounted read-only at ``/secrets`` in every app container;
- ``loader-render``: an init container, ``loader render --once``, so the files exist before the
  app starts (it is appended: the pod's own init containers run before it);
- ``loader-agent``: the sidecar, ``loader agent``, which keeps them fresh and serves
  ``/healthz`` and ``/readyz`` on ``127.0.0.1:8701`` (probed with an exec, since kubelet's
  ``httpGet`` goes to the pod IP and the agent listens on loopback only);
- the workload's identity: a projected service-account token for the store's audience (the
  agent trades it at the store, ``LOADER_AUTH=jwt``; the default), or the token Secret
  (``auth=token``, or a pod that names ``loader.dev/token-secret``); and, if asked, the template
  ConfigMap and the store's CA, as volumes;
- the annotation ``loader.dev/injected: "true"`` (so a re-invocation changes nothing) and the
  client label the store's NetworkPolicy admits.

With the ``native_sidecar`` setting (Kubernetes 1.29+) the agent is instead the last init
container, with ``restartPolicy: Always`` and a startup probe on ``/readyz``: the app starts
only once the first render is done (so no ``loader-render``), and the agent stops after the
app (a Job's pod completes). Containers named in ``loader.dev/inject-env`` also get their
secrets as environment variables: :mod:`loader.webhook.envinject`.

What the pod asks for comes from its ``loader.dev/*`` annotations (the constants below;
docs/kubernetes.md lists them with their defaults); where the store is,
which image and which token Secret come from the webhook's settings.

The agent writes its files with mode 0600, so the app must run as the same uid to read them
(or as root): the injected containers take the app containers' ``runAsUser`` when they all
agree on one non-root uid, else the configured one (65532, the image's user).

Failure policy, decided here once: a pod annotated for injection whose annotations are wrong
(a bad app id, environment, format, template name) is **denied** with a message naming the
annotation, because running it without its secrets would fail later and less clearly. So is a
pod whose other processes could reach the agent's token through ``/proc``: ``hostPID``, and
``shareProcessNamespace`` unless the pod opts in (:func:`_check_process_isolation`). Anything
else that goes wrong (a malformed object, a bug in this module) **admits the pod unchanged**
with a warning: refusing pods because of the webhook's own fault would be worse, and it is what
``failurePolicy: Ignore`` does when the webhook is down anyway.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from loader.errors import InvalidRequestError
from loader.names import APP_ID_PATTERN, ENV_NAME_MAX, ENV_NAME_PATTERN, MAX_ID
from loader.settingtypes import FORMATS, seconds
from loader.webhook import envinject
from loader.webhook.settings import WebhookSettings, is_k8s_name
from loader.workload import AUTH_MODES, DEFAULT_JWT_FILE

log = logging.getLogger("loader.webhook")

ADMISSION_VERSION = "admission.k8s.io/v1"

INJECT = "loader.dev/inject"
INJECTED = "loader.dev/injected"
APP = "loader.dev/app"
ENVIRONMENT = "loader.dev/environment"
FORMAT = "loader.dev/format"
TEMPLATE = "loader.dev/template"
TEMPLATE_KEY = "loader.dev/template-key"
TOKEN_SECRET = "loader.dev/token-secret"
AUTH = "loader.dev/auth"
SHARED_PROCESSES = "loader.dev/allow-shared-process-namespace"

SECRETS_VOLUME = "loader-secrets"
TOKEN_VOLUME = "loader-token"
TEMPLATE_VOLUME = "loader-template"
CA_VOLUME = "loader-ca"
INIT_CONTAINER = "loader-render"
SIDECAR = "loader-agent"
TOKEN_DIR = "/var/run/secrets/loader"
JWT_DIR, JWT_NAME = DEFAULT_JWT_FILE.rsplit("/", 1)  # the projected service-account token
TEMPLATE_DIR = "/etc/loader/template"
CA_DIR = "/etc/loader/ca"
DEFAULT_TEMPLATE_KEY = "spicepod.yaml"
SECRETS_SIZE_LIMIT = "16Mi"
# The token file is readable by every uid: only loader's own containers mount the volume, and a
# pod without fsGroup would leave a 0400/0440 root-owned file unreadable to the non-root agent.
TOKEN_MODE = 0o444
_CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_ENV_NAME = re.compile(ENV_NAME_PATTERN)
_APP_ID = re.compile(APP_ID_PATTERN)


class AnnotationError(InvalidRequestError):
    """A pod asked for injection with annotations that cannot work: the pod is denied."""


class MalformedReviewError(InvalidRequestError):
    """Not an AdmissionReview we can answer (no request uid): HTTP 400, the API server's
    failure policy decides."""


@dataclass(frozen=True, slots=True)
class Wish:
    """What an annotated pod asks for."""

    app: int
    environment: str
    format: str
    template: str | None
    template_key: str
    token_secret: str
    auth: str = "jwt"  # jwt: a projected service-account token; token: the token Secret


# -- reading the pod --------------------------------------------------------------------------


def _shown(value: str) -> str:
    return repr(value if len(value) <= 64 else value[:61] + "...")


def wants_injection(pod: dict[str, Any]) -> bool:
    annotations = _mapping(pod.get("metadata"), "annotations")
    asked = str(annotations.get(INJECT, "")).lower() == "true" or envinject.wants_env(annotations)
    return asked and str(annotations.get(INJECTED, "")).lower() != "true"


def read_wish(annotations: dict[str, Any], settings: WebhookSettings) -> Wish:
    """The annotations, checked; :class:`AnnotationError` names the first bad one."""
    raw_app = annotations.get(APP)
    if raw_app is None:
        raise AnnotationError(f"{INJECT} is set but {APP} is missing: set it to the app id")
    app_text = str(raw_app).strip()
    if not _APP_ID.fullmatch(app_text) or len(app_text) > 19 or int(app_text) > MAX_ID:
        raise AnnotationError(f"{APP} must be a positive integer app id, got {_shown(app_text)}")
    environment = str(annotations.get(ENVIRONMENT, "default")).strip()
    if len(environment) > ENV_NAME_MAX or not _ENV_NAME.fullmatch(environment):
        raise AnnotationError(
            f"{ENVIRONMENT} must match {ENV_NAME_PATTERN} (at most {ENV_NAME_MAX} characters), "
            f"got {_shown(environment)}"
        )
    fmt = str(annotations.get(FORMAT, "dotenv")).strip()
    if fmt not in FORMATS:
        raise AnnotationError(f"{FORMAT} must be one of {', '.join(FORMATS)}, got {_shown(fmt)}")
    template = annotations.get(TEMPLATE)
    template_name = str(template).strip() if template is not None else None
    if template_name is not None and not is_k8s_name(template_name):
        raise AnnotationError(
            f"{TEMPLATE} must name a ConfigMap (a DNS-1123 name), got {_shown(template_name)}"
        )
    key = str(annotations.get(TEMPLATE_KEY, DEFAULT_TEMPLATE_KEY)).strip()
    if not _CONFIGMAP_KEY.fullmatch(key) or key in (".", ".."):
        raise AnnotationError(f"{TEMPLATE_KEY} must be a ConfigMap key, got {_shown(key)}")
    if template_name is not None and key == output_name(fmt):
        raise AnnotationError(f"{TEMPLATE_KEY} {key!r} collides with the env file's name")
    token_secret = str(annotations.get(TOKEN_SECRET, settings.token_secret)).strip()
    if not is_k8s_name(token_secret):
        raise AnnotationError(
            f"{TOKEN_SECRET} must name a Secret (a DNS-1123 name), got {_shown(token_secret)}"
        )
    # A pod that names its token Secret wants the Secret, unless it says otherwise.
    default_auth = "token" if TOKEN_SECRET in annotations else settings.auth
    auth = str(annotations.get(AUTH, default_auth)).strip().lower()
    if auth not in AUTH_MODES:
        raise AnnotationError(f"{AUTH} must be one of {', '.join(AUTH_MODES)}, got {_shown(auth)}")
    return Wish(
        app=int(app_text),
        environment=environment,
        format=fmt,
        template=template_name,
        template_key=key,
        token_secret=token_secret,
        auth=auth,
    )


def output_name(fmt: str) -> str:
    return "app.json" if fmt == "json" else "app.env"


def _mapping(obj: Any, key: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        return {}
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def _list(obj: dict[str, Any], key: str) -> list[Any] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise TypeError(f"{key} is not a list")
    return value


def _identity(spec: dict[str, Any], containers: list[Any]) -> tuple[int, int | None] | None:
    """The app's uid (and gid) when its containers agree on one non-root uid, so the injected
    containers can run as it and the app can read the agent's 0600 files; else ``None``."""
    pod_ctx = _mapping(spec, "securityContext")

    def effective(field: str) -> set[Any]:
        return {
            _mapping(c, "securityContext").get(field, pod_ctx.get(field))
            for c in containers
            if isinstance(c, dict)
        }

    uids, gids = effective("runAsUser"), effective("runAsGroup")
    if len(uids) != 1:
        return None
    (uid,) = uids
    if not isinstance(uid, int) or isinstance(uid, bool) or uid <= 0:
        return None
    gid = next(iter(gids)) if len(gids) == 1 else None
    return uid, gid if isinstance(gid, int) and not isinstance(gid, bool) else None


def _check_process_isolation(
    spec: dict[str, Any],
    annotations: dict[str, Any],
    containers: list[Any],
    init_containers: list[Any] | None,
) -> None:
    """The agent holds the token: no pod process outside it may reach it through ``/proc``.

    ``hostPID`` (every process of the node) is always refused. ``shareProcessNamespace`` (every
    container of the pod) is refused unless the pod opts in with :data:`SHARED_PROCESSES`; the
    agent then relies on being non-dumpable, which ``CAP_SYS_PTRACE`` overrides, so even with
    the opt-in no container may be privileged or add that capability.
    """
    if spec.get("hostPID") is True:
        raise AnnotationError(
            f"{INJECT}: pods with hostPID are not supported (every process on the node could "
            "reach the agent's token through /proc)"
        )
    if spec.get("shareProcessNamespace") is not True:
        return
    if str(annotations.get(SHARED_PROCESSES, "")).lower() != "true":
        raise AnnotationError(
            f"{INJECT}: pods with shareProcessNamespace are refused (the app's containers could "
            f'reach the agent\'s token through /proc); set {SHARED_PROCESSES}: "true" to accept '
            "that risk for containers without CAP_SYS_PTRACE"
        )
    for container in [*containers, *(init_containers or ())]:
        ctx = _mapping(container, "securityContext")
        added = {str(c).upper().removeprefix("CAP_") for c in _adds(ctx)}
        if ctx.get("privileged") is True or added & {"SYS_PTRACE", "ALL"}:
            raise AnnotationError(
                f"{INJECT}: container {container.get('name')} is privileged or adds SYS_PTRACE, "
                "and shares the pod's process namespace with the agent"
            )


def _adds(ctx: dict[str, Any]) -> list[Any]:
    added = _mapping(ctx, "capabilities").get("add")
    return added if isinstance(added, list) else []


# -- what is added ----------------------------------------------------------------------------


def _escape(key: str) -> str:
    """A JSON pointer token (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def _probe(port: int, path: str, period: int, failures: int = 3) -> dict[str, Any]:
    code = f"import urllib.request as u; u.urlopen('http://127.0.0.1:{port}{path}', timeout=3)"
    return {
        "exec": {"command": ["python", "-c", code]},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def _security_context(uid: int, gid: int | None) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid if gid is not None else uid,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def agent_env(wish: Wish, settings: WebhookSettings) -> list[dict[str, str]]:
    mount = settings.mount_path
    env = [
        {"name": "LOADER_STORE_URL", "value": settings.store_url},
        *(
            [
                {"name": "LOADER_AUTH", "value": "jwt"},
                {"name": "LOADER_JWT_FILE", "value": DEFAULT_JWT_FILE},
            ]
            if wish.auth == "jwt"
            else [{"name": "LOADER_TOKEN_FILE", "value": f"{TOKEN_DIR}/token"}]
        ),
        {"name": "LOADER_APP", "value": str(wish.app)},
        {"name": "LOADER_ENVIRONMENT", "value": wish.environment},
        {"name": "LOADER_OUTPUT", "value": f"{mount}/{output_name(wish.format)}"},
        {"name": "LOADER_FORMAT", "value": wish.format},
    ]
    if wish.template is not None:
        env += [
            {"name": "LOADER_TEMPLATE", "value": f"{TEMPLATE_DIR}/{wish.template_key}"},
            {"name": "LOADER_TEMPLATE_OUTPUT", "value": f"{mount}/{wish.template_key}"},
        ]
    if settings.ca_configmap is not None:
        env.append({"name": "LOADER_CA_FILE", "value": f"{CA_DIR}/ca.crt"})
    return env


def _agent_mounts(wish: Wish, settings: WebhookSettings) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"name": SECRETS_VOLUME, "mountPath": settings.mount_path},
        {
            "name": TOKEN_VOLUME,
            "mountPath": JWT_DIR if wish.auth == "jwt" else TOKEN_DIR,
            "readOnly": True,
        },
    ]
    if wish.template is not None:
        mounts.append({"name": TEMPLATE_VOLUME, "mountPath": TEMPLATE_DIR, "readOnly": True})
    if settings.ca_configmap is not None:
        mounts.append({"name": CA_VOLUME, "mountPath": CA_DIR, "readOnly": True})
    return mounts


def _resources(settings: WebhookSettings) -> dict[str, Any]:
    return {
        "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
        "limits": {"cpu": settings.cpu_limit, "memory": settings.memory_limit},
    }


def init_container(
    wish: Wish, settings: WebhookSettings, uid: int, gid: int | None
) -> dict[str, Any]:
    return {
        "name": INIT_CONTAINER,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "loader"],
        "args": ["render", "--once"],
        "env": [
            *agent_env(wish, settings),
            {"name": "LOADER_TIMEOUT", "value": settings.render_timeout},
        ],
        "volumeMounts": _agent_mounts(wish, settings),
        "resources": _resources(settings),
        "securityContext": _security_context(uid, gid),
    }


def sidecar(wish: Wish, settings: WebhookSettings, uid: int, gid: int | None) -> dict[str, Any]:
    port = settings.agent_port
    container = _sidecar(wish, settings, uid, gid)
    if settings.native_sidecar:
        # Up to the render timeout for the first render, as loader-render would have had.
        period = 2
        failures = max(1, -(-int(seconds(settings.render_timeout)) // period))
        container["restartPolicy"] = "Always"
        container["startupProbe"] = _probe(port, "/readyz", period, failures)
    return container


def _sidecar(wish: Wish, settings: WebhookSettings, uid: int, gid: int | None) -> dict[str, Any]:
    port = settings.agent_port
    return {
        "name": SIDECAR,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "loader"],
        "args": ["agent"],
        "env": [
            *agent_env(wish, settings),
            {"name": "LOADER_LISTEN", "value": f"127.0.0.1:{port}"},
        ],
        "volumeMounts": _agent_mounts(wish, settings),
        "resources": _resources(settings),
        "securityContext": _security_context(uid, gid),
        "livenessProbe": _probe(port, "/healthz", 20),
        "readinessProbe": _probe(port, "/readyz", 10),
    }


def token_source(wish: Wish, settings: WebhookSettings) -> dict[str, Any]:
    """The token volume's source: a projected service-account token for the store's audience
    (auth=jwt: nothing to create or rotate by hand), or the token Secret."""
    if wish.auth == "jwt":
        return {
            "projected": {
                "defaultMode": TOKEN_MODE,
                "sources": [
                    {
                        "serviceAccountToken": {
                            "audience": settings.token_audience,
                            "expirationSeconds": settings.token_expiration,
                            "path": JWT_NAME,
                        }
                    }
                ],
            }
        }
    return {
        "secret": {
            "secretName": wish.token_secret,
            "defaultMode": TOKEN_MODE,
            "items": [{"key": settings.token_secret_key, "path": "token"}],
        }
    }


def volumes(wish: Wish, settings: WebhookSettings) -> list[dict[str, Any]]:
    added: list[dict[str, Any]] = [
        {"name": SECRETS_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": SECRETS_SIZE_LIMIT}},
        {"name": TOKEN_VOLUME, **token_source(wish, settings)},
    ]
    if wish.template is not None:
        added.append(
            {
                "name": TEMPLATE_VOLUME,
                "configMap": {
                    "name": wish.template,
                    "items": [{"key": wish.template_key, "path": wish.template_key}],
                },
            }
        )
    if settings.ca_configmap is not None:
        added.append(
            {
                "name": CA_VOLUME,
                "configMap": {
                    "name": settings.ca_configmap,
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                },
            }
        )
    return added


def _append(
    ops: list[dict[str, Any]], path: str, existing: list[Any] | None, items: list[Any]
) -> None:
    """``add`` the whole array when there is none yet, else append each item with ``/-``."""
    if existing is None:
        ops.append({"op": "add", "path": path, "value": items})
    else:
        ops.extend({"op": "add", "path": f"{path}/-", "value": item} for item in items)


def _names(items: list[Any] | None) -> set[str]:
    return {str(i.get("name")) for i in items or () if isinstance(i, dict)}


def plan(pod: dict[str, Any], settings: WebhookSettings) -> list[dict[str, Any]]:
    """The JSONPatch for ``pod``: empty when it is not to be touched. Raises
    :class:`AnnotationError` for a pod that asked for injection and cannot have it."""
    if not wants_injection(pod):
        return []
    metadata = pod["metadata"]
    annotations = metadata["annotations"]
    wish = read_wish(annotations, settings)
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        raise TypeError("the pod has no spec")
    containers = _list(spec, "containers")
    if not containers:
        raise TypeError("the pod has no containers")
    init_containers = _list(spec, "initContainers")
    pod_volumes = _list(spec, "volumes")
    if spec.get("hostNetwork") is True:
        raise AnnotationError(
            f"{INJECT}: pods with hostNetwork are not supported (the agent's loopback endpoint "
            "would be the node's)"
        )
    _check_process_isolation(spec, annotations, containers, init_containers)
    try:
        env_targets = envinject.targets(annotations, containers)
    except envinject.EnvInjectionError as exc:
        raise AnnotationError(f"{envinject.INJECT_ENV}: {exc}") from None
    taken = _names(containers) | _names(init_containers)
    for name in (INIT_CONTAINER, SIDECAR, envinject.COPY_CONTAINER):
        if name in taken:
            raise AnnotationError(
                f"{INJECT}: the pod already has a container named {name}; remove it or the "
                "annotation"
            )
    added_volumes = volumes(wish, settings)
    if env_targets:
        added_volumes.append(envinject.volume())
    for volume in added_volumes:
        if volume["name"] in _names(pod_volumes):
            raise AnnotationError(
                f"{INJECT}: the pod already has a volume named {volume['name']}; remove it or "
                "the annotation"
            )

    uid, gid = _identity(spec, containers) or (settings.run_as_user, None)
    mount = {"name": SECRETS_VOLUME, "mountPath": settings.mount_path, "readOnly": True}
    agent = sidecar(wish, settings, uid, gid)
    added_init = []
    if env_targets:
        added_init.append(
            envinject.copy_container(settings, _security_context(uid, gid), _resources(settings))
        )
    # A native sidecar's startup probe holds the app back until the first render.
    added_init.append(
        agent if settings.native_sidecar else init_container(wish, settings, uid, gid)
    )

    ops: list[dict[str, Any]] = []
    _append(ops, "/spec/volumes", pod_volumes, added_volumes)
    _append(ops, "/spec/initContainers", init_containers, added_init)
    by_index = {t.index: t for t in env_targets}
    for index, container in enumerate(containers):
        if not isinstance(container, dict):
            raise TypeError("a container is not an object")
        mounts = _list(container, "volumeMounts")
        wanted = [mount, envinject.mount()] if index in by_index else [mount]
        for new in wanted:
            if any(
                isinstance(m, dict) and m.get("mountPath") == new["mountPath"] for m in mounts or ()
            ):
                raise AnnotationError(
                    f"{INJECT}: container {container.get('name')} already mounts something at "
                    f"{new['mountPath']}"
                )
        _append(ops, f"/spec/containers/{index}/volumeMounts", mounts, wanted)
        if index in by_index:
            ops.extend(envinject.container_ops(by_index[index], settings))
    if not settings.native_sidecar:
        ops.append({"op": "add", "path": "/spec/containers/-", "value": agent})
    ops.append({"op": "add", "path": f"/metadata/annotations/{_escape(INJECTED)}", "value": "true"})
    if settings.label is not None:
        key, value = settings.label
        labels = metadata.get("labels")
        if isinstance(labels, dict):
            ops.append({"op": "add", "path": f"/metadata/labels/{_escape(key)}", "value": value})
        else:
            ops.append({"op": "add", "path": "/metadata/labels", "value": {key: value}})
    return ops


# -- the AdmissionReview ----------------------------------------------------------------------


def _pod_name(request: dict[str, Any], pod: dict[str, Any]) -> str:
    metadata = _mapping(pod, "metadata")
    name = metadata.get("name") or request.get("name") or f"{metadata.get('generateName', '')}*"
    return f"{request.get('namespace') or metadata.get('namespace') or '?'}/{name}"


def review(body: Any, settings: WebhookSettings) -> dict[str, Any]:
    """Answer one AdmissionReview. Raises :class:`MalformedReviewError` only when there is no
    request uid to answer to; every other outcome is a response (see the module docstring)."""
    if not isinstance(body, dict) or body.get("kind") != "AdmissionReview":
        raise MalformedReviewError("expected an AdmissionReview object")
    if body.get("apiVersion") != ADMISSION_VERSION:
        raise MalformedReviewError(f"only {ADMISSION_VERSION} AdmissionReviews are supported")
    request = body.get("request")
    uid = request.get("uid") if isinstance(request, dict) else None
    if not isinstance(request, dict) or not isinstance(uid, str) or not uid:
        raise MalformedReviewError("the AdmissionReview has no request.uid")
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    kind = request.get("kind")
    pod = request.get("object")
    is_pod_create = (
        isinstance(kind, dict)
        and kind.get("kind") == "Pod"
        and kind.get("group", "") == ""
        and request.get("operation", "CREATE") == "CREATE"
    )
    if not is_pod_create or not isinstance(pod, dict):
        return _answer(response)
    where = _pod_name(request, pod)
    try:
        ops = plan(pod, settings)
    except AnnotationError as exc:
        log.info("denied pod %s: %s", where, exc.message)
        response["allowed"] = False
        response["status"] = {"code": 400, "reason": "BadRequest", "message": exc.message}
        return _answer(response)
    except Exception as exc:  # our fault or a malformed object: admit unchanged, say so
        log.error("pod %s admitted without the agent: %s in the webhook", where, type(exc).__name__)
        response["warnings"] = [
            "loader: the agent was not injected (the webhook could not read this pod; see its log)"
        ]
        return _answer(response)
    if ops:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
        log.info("injected the agent into pod %s", where)
    return _answer(response)


def _answer(response: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": ADMISSION_VERSION, "kind": "AdmissionReview", "response": response}
