"""The webhook's settings: ``LOADER_WEBHOOK_*`` variables and flags (flags win)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from loader.envsettings import LoaderSettings, Lower, Seconds, TcpListen, as_typed, one_of
from loader.settingtypes import (
    LOG_LEVELS,
    PULL_POLICIES,
    Listen,
    http_url,
    load,
    parse_listen,
    seconds,
    tls_pair,
)
from loader.workload import AUTH_MODES

if TYPE_CHECKING:
    LogLevel = str
    PullPolicy = str
    AuthMode = str
else:
    LogLevel = Annotated[one_of(LOG_LEVELS), Lower]
    PullPolicy = one_of(PULL_POLICIES)
    AuthMode = Annotated[one_of(AUTH_MODES), Lower]

# Kubernetes names: a DNS-1123 subdomain (Secrets, ConfigMaps) and a label value.
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_SUBDOMAIN_MAX = 253
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def is_k8s_name(name: str) -> bool:
    return len(name) <= DNS_SUBDOMAIN_MAX and DNS_SUBDOMAIN.fullmatch(name) is not None


class WebhookSettings(LoaderSettings):
    """What the webhook listens on and what it injects. Field names avoid ``port`` and
    ``service_*``: Kubernetes service links export ``LOADER_WEBHOOK_PORT`` and friends for a
    Service named ``loader-webhook``."""

    model_config = SettingsConfigDict(env_prefix="LOADER_WEBHOOK_")

    listen: TcpListen = Field("0.0.0.0:8443", description="HOST:PORT; port 0 picks a free one")
    tls_cert: Path | None = Field(
        None, description="PEM certificate chain, re-read when it changes (required)"
    )
    tls_key: Path | None = Field(None, description="PEM private key for --tls-cert (required)")
    tls_reload_interval: Seconds = Field(
        as_typed("10s"),
        gt=0,
        description="Time between looks at the certificate files for a renewal",
    )
    insecure: bool = Field(False, description="Serve plain HTTP (tests only)")
    image: str = Field(min_length=1, description="The loader image to inject (required)")
    image_pull_policy: PullPolicy = Field(
        "IfNotPresent", description="The injected containers' imagePullPolicy"
    )
    store_url: str = Field(
        description="The store as pods reach it, e.g. http://loader-store.loader:8700"
    )
    auth: AuthMode = Field(
        "jwt",
        description="How injected agents authenticate: jwt (a projected service-account token "
        "traded at the store, see `loader store trust`) or token (a token Secret); a pod's "
        "loader.dev/auth annotation, or its loader.dev/token-secret, chooses for itself",
    )
    token_audience: str = Field(
        "loader-store",
        min_length=1,
        max_length=253,
        description="auth=jwt: the audience of the projected token (the trust policy's)",
    )
    token_expiration: int = Field(
        600,
        ge=600,
        le=86400,
        description="auth=jwt: the projected token's lifetime in seconds (the kubelet renews "
        "it before it ends; Kubernetes' minimum is 600)",
    )
    token_secret: str = Field(
        "loader-agent-token",
        description="auth=token: Secret holding the agent token, in the pod's namespace",
    )
    token_secret_key: str = Field("token", description="Key of the token in that Secret")
    ca_configmap: str | None = Field(
        None, description="ConfigMap with ca.crt, to verify an https store (pod's namespace)"
    )
    mount_path: str = Field("/secrets", description="Where app containers see the secrets")
    agent_port: int = Field(8701, ge=1, le=65535, description="The agent's loopback port")
    run_as_user: int = Field(65532, ge=1, description="uid of the injected containers by default")
    render_timeout: str = Field("60s", description="The init container gives up after this long")
    native_sidecar: bool = Field(
        False,
        description="Inject the agent as a native sidecar (Kubernetes 1.29+): an init container "
        "with restartPolicy Always and a startup probe on /readyz",
    )
    client_label: str = Field(
        "loader.dev/client=true",
        description="KEY=VALUE label added to injected pods (the store's NetworkPolicy admits "
        "it); '' for none",
    )
    cpu_request: str = Field("10m", description="CPU request of each injected container")
    cpu_limit: str = Field("200m", description="CPU limit of each injected container")
    memory_request: str = Field("64Mi", description="Memory request of each injected container")
    memory_limit: str = Field("256Mi", description="Memory limit of each injected container")
    log_level: LogLevel | None = Field(
        None, description="debug|info|warning|error (else LOADER_LOG_LEVEL, else info)"
    )

    @field_validator("store_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("token_secret", "ca_configmap")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not is_k8s_name(value):
            raise ValueError(f"{value!r} is not a Kubernetes object name")
        return value

    @field_validator("token_secret_key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not re.fullmatch(r"[-._a-zA-Z0-9]+", value):
            raise ValueError("a Secret key is made of letters, digits, '-', '_' and '.'")
        return value

    @field_validator("mount_path")
    @classmethod
    def _mount(cls, value: str) -> str:
        if not value.startswith("/") or value.rstrip("/") == "" or ":" in value:
            raise ValueError("the mount path must be an absolute path other than /")
        return value.rstrip("/")

    @field_validator("cpu_request", "cpu_limit", "memory_request", "memory_limit")
    @classmethod
    def _quantity(cls, value: str) -> str:
        if not QUANTITY.fullmatch(value):
            raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 100m, 64Mi)")
        return value

    @field_validator("render_timeout")
    @classmethod
    def _timeout(cls, value: str) -> str:
        seconds(value)
        return value

    @field_validator("client_label")
    @classmethod
    def _label(cls, value: str) -> str:
        if value:
            key, sep, val = value.partition("=")
            if not sep or not LABEL_KEY.fullmatch(key) or not LABEL_VALUE.fullmatch(val):
                raise ValueError("the client label must be KEY=VALUE (a valid label)")
        return value

    @model_validator(mode="after")
    def _tls(self) -> WebhookSettings:
        tls_pair(self.tls_cert, self.tls_key)
        if self.tls_cert is None and not self.insecure:
            raise ValueError(
                "the API server only calls webhooks over HTTPS: pass --tls-cert and --tls-key "
                "(or --insecure, for tests)"
            )
        return self

    @property
    def listen_address(self) -> Listen:
        return parse_listen(self.listen, allow_unix=False)

    @property
    def label(self) -> tuple[str, str] | None:
        if not self.client_label:
            return None
        key, _, value = self.client_label.partition("=")
        return key, value


def load_settings(**flags: Any) -> WebhookSettings:
    """Settings from ``LOADER_WEBHOOK_*`` plus the flags given (``None`` flags are absent)."""
    return load(WebhookSettings, **flags)
