{{/*
Names and labels.
*/}}
{{- define "loader.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "loader.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "loader.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "loader.selectorLabels" -}}
app.kubernetes.io/name: {{ include "loader.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "loader.labels" -}}
helm.sh/chart: {{ include "loader.chart" . }}
{{ include "loader.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "loader.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "loader.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The loader image: repository@digest, else repository:tag (tag defaults to appVersion). */}}
{{- define "loader.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "loader.storeName" -}}
{{- printf "%s-store" (include "loader.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "loader.webhookName" -}}
{{- printf "%s-webhook" (include "loader.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The store's URL as pods anywhere in the cluster reach it. */}}
{{- define "loader.storeUrl" -}}
{{- $scheme := ternary "https" "http" (not (empty .Values.store.tls.existingSecret)) }}
{{- printf "%s://%s.%s.svc:%v" $scheme (include "loader.storeName" .) .Release.Namespace .Values.service.port }}
{{- end }}

{{/* "true" when the agent runs as a native sidecar (agent.nativeSidecar; auto: Kubernetes
1.29+), else "". */}}
{{- define "loader.nativeSidecar" -}}
{{- $mode := toString .Values.agent.nativeSidecar }}
{{- if or (eq $mode "true") (and (eq $mode "auto") (semverCompare ">=1.29-0" .Capabilities.KubeVersion.Version)) }}true{{- end }}
{{- end }}

{{- define "loader.postgres" -}}
{{- if .Values.database.existingSecret }}true{{- end }}
{{- end }}

{{/*
Refusals: settings that cannot work, with the reason and the fix.
*/}}
{{- define "loader.validate" -}}
{{- if not .Values.masterKey.existingSecret }}
{{- fail "loader: set masterKey.existingSecret to a Secret holding the master key (base64 of 32 random bytes), e.g. `openssl rand -base64 32 | kubectl create secret generic loader-master-key --from-file=master.key=/dev/stdin`. The chart never takes a key in values." }}
{{- end }}
{{- if regexMatch "^[A-Za-z0-9+/]{43}=$" (toString .Values.masterKey.key) }}
{{- fail "loader: masterKey.key is the NAME of the key inside the Secret (e.g. master.key), not the key itself: never put a key in values" }}
{{- end }}
{{- if and (gt (int .Values.replicas) 1) (not .Values.database.existingSecret) }}
{{- fail (printf "loader: replicas is %v but the store is on SQLite (one writer on a ReadWriteOnce volume): set database.existingSecret to a Secret holding a postgresql:// URL for more than one replica" .Values.replicas) }}
{{- end }}
{{- if lt (int .Values.replicas) 0 }}
{{- fail "loader: replicas must be 0 or more" }}
{{- end }}
{{- if .Values.webhook.enabled }}
{{- if not (or .Values.webhook.certManager.enabled (and .Values.webhook.tls.existingSecret .Values.webhook.caBundle)) }}
{{- fail "loader: webhook.enabled needs a serving certificate: webhook.certManager.enabled=true, or both webhook.tls.existingSecret (a kubernetes.io/tls Secret) and webhook.caBundle (the base64 PEM of the CA that signed it)" }}
{{- end }}
{{- if not (has .Values.webhook.failurePolicy (list "Ignore" "Fail")) }}
{{- fail "loader: webhook.failurePolicy must be Ignore or Fail" }}
{{- end }}
{{- end }}
{{- if not (has (toString .Values.agent.nativeSidecar) (list "auto" "true" "false")) }}
{{- fail "loader: agent.nativeSidecar must be auto, true or false" }}
{{- end }}
{{- if .Values.exampleApp.enabled }}
{{- if not (regexMatch "^[1-9][0-9]*$" (toString .Values.exampleApp.app)) }}
{{- fail "loader: exampleApp.app must be the app id (a positive integer) the example reads; create the app first (docs/kubernetes.md)" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Security contexts shared by every pod and container the chart renders. */}}
{{- define "loader.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "loader.containerSecurityContext" -}}
{{ toYaml .Values.containerSecurityContext }}
{{- end }}

{{/* The store's environment: where the database and the master key are. The PostgreSQL URL
(it holds the password) is a mounted file, never an environment variable. */}}
{{- define "loader.storeEnv" -}}
{{- if .Values.database.existingSecret }}
- name: LOADER_DATABASE_URL_FILE
  value: /etc/loader/database/url
{{- else }}
- name: LOADER_DATA_DIR
  value: /var/lib/loader
{{- end }}
- name: LOADER_MASTER_KEY_FILE
  value: /etc/loader/master-key/master.key
- name: LOADER_LOG_LEVEL
  value: {{ .Values.store.logLevel | quote }}
{{- with .Values.store.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "loader.storeMounts" -}}
{{- if not .Values.database.existingSecret }}
- name: data
  mountPath: /var/lib/loader
{{- end }}
{{- if .Values.database.existingSecret }}
- name: database
  mountPath: /etc/loader/database
  readOnly: true
{{- end }}
- name: master-key
  mountPath: /etc/loader/master-key
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if .Values.store.tls.existingSecret }}
- name: tls
  mountPath: /etc/loader/tls
  readOnly: true
{{- end }}
{{- if .Values.store.jwksConfigMap }}
- name: jwks
  mountPath: /etc/loader/jwks
  readOnly: true
{{- end }}
{{- end }}

{{/*
============================================================================================
Helpers for your own pod specs. Each takes a dict; with "root" ($) the image and the store URL
come from this chart's values, otherwise pass "image" and "storeUrl".

  initContainers:
    {{- include "loader.initContainer" (dict "root" $ "app" 1 "environment" "prod"
          "tokenSecret" "loader-agent-token" "template" "my-spicepod") | nindent 4 }}
  containers:
    - name: app
      volumeMounts:
        {{- include "loader.secretsMount" (dict) | nindent 8 }}
    {{- include "loader.agentSidecar" (dict "root" $ "app" 1 ...same...) | nindent 4 }}
  volumes:
    {{- include "loader.secretsVolume" (dict) | nindent 4 }}
    {{- include "loader.agentVolumes" (dict "tokenSecret" "loader-agent-token"
          "template" "my-spicepod") | nindent 4 }}

Parameters (defaults in brackets):
  root            the top-level context ($) of this chart, for image and storeUrl
  image           the loader image [from root]
  imagePullPolicy [IfNotPresent]
  storeUrl        [from root: http://<release>-store.<namespace>.svc:8700]
  app             the app id (required)
  environment     [default]
  format          dotenv | dotenv-expand | shell | docker | json [dotenv]
  output          the env file [<mountPath>/app.env]
  auth            jwt: a projected service-account token traded at the store (see
                  `loader store trust`); token: a token Secret [token when tokenSecret is
                  given, else jwt]
  tokenAudience   auth=jwt: the projected token's audience [from root, else loader-store]
  tokenExpiration auth=jwt: its lifetime in seconds, at least 600 [from root, else 600]
  tokenSecret     auth=token: Secret holding the agent token [loader-agent-token]
  tokenKey        its key [token]
  template        ConfigMap holding a template (a spicepod) [none]
  templateKey     its key, also the rendered file's name [spicepod.yaml]
  caConfigMap     ConfigMap with ca.crt for an https store [none]
  mountPath       where the memory volume is mounted [/secrets]
  volumeName      the memory volume's name [loader-secrets]
  agentPort       the agent's loopback port [8701]
  runAsUser       uid of the agent; the app must run as the same uid (or as root) to read the
                  0600 files it writes [65532]
  timeout         render --once gives up after this long [60s]
  native          the agent is a native sidecar: put loader.agentSidecar under initContainers
                  and leave loader.initContainer out (Kubernetes 1.29+) [false]
  startupSeconds  a native sidecar's first render must be done within this [60]
  onChange        command the agent runs after each re-render [none]
  maxStale        /readyz fails when the data is older [none]
  resources       [requests 10m/64Mi, limits 200m/256Mi]
  sizeLimit       of the memory volume (it counts against the pod's memory) [16Mi]
============================================================================================
*/}}

{{- define "loader.agent.image" -}}
{{- if .image }}{{ .image }}
{{- else if .root }}{{ include "loader.image" .root }}
{{- else }}{{ fail "loader.agentSidecar / loader.initContainer: pass \"image\" (or \"root\" $)" }}
{{- end }}
{{- end }}

{{- define "loader.agent.storeUrl" -}}
{{- if .storeUrl }}{{ .storeUrl }}
{{- else if .root }}{{ include "loader.storeUrl" .root }}
{{- else }}{{ fail "loader.agentSidecar / loader.initContainer: pass \"storeUrl\" (or \"root\" $)" }}
{{- end }}
{{- end }}

{{- define "loader.agent.auth" -}}
{{- $auth := .auth | default (ternary "token" "jwt" (hasKey . "tokenSecret")) -}}
{{- if not (has $auth (list "jwt" "token")) }}
{{- fail (printf "loader agent helpers: \"auth\" must be jwt or token, got %v" $auth) }}
{{- end -}}
{{ $auth }}
{{- end }}

{{- define "loader.agent.env" -}}
{{- if not (regexMatch "^[1-9][0-9]*$" (toString .app)) }}
{{- fail (printf "loader.agentSidecar / loader.initContainer: \"app\" must be the app id (a positive integer), got %v" .app) }}
{{- end }}
{{- $mount := .mountPath | default "/secrets" }}
{{- $format := .format | default "dotenv" }}
- name: LOADER_STORE_URL
  value: {{ include "loader.agent.storeUrl" . | quote }}
{{- if eq (include "loader.agent.auth" .) "jwt" }}
- name: LOADER_AUTH
  value: jwt
- name: LOADER_JWT_FILE
  value: /var/run/secrets/tokens/loader
{{- else }}
- name: LOADER_TOKEN_FILE
  value: /var/run/secrets/loader/token
{{- end }}
- name: LOADER_APP
  value: {{ toString .app | quote }}
- name: LOADER_ENVIRONMENT
  value: {{ .environment | default "default" | quote }}
- name: LOADER_OUTPUT
  value: {{ .output | default (printf "%s/%s" $mount (ternary "app.json" "app.env" (eq $format "json"))) | quote }}
- name: LOADER_FORMAT
  value: {{ $format | quote }}
{{- if .template }}
- name: LOADER_TEMPLATE
  value: {{ printf "/etc/loader/template/%s" (.templateKey | default "spicepod.yaml") | quote }}
- name: LOADER_TEMPLATE_OUTPUT
  value: {{ printf "%s/%s" $mount (.templateKey | default "spicepod.yaml") | quote }}
{{- end }}
{{- if .caConfigMap }}
- name: LOADER_CA_FILE
  value: /etc/loader/ca/ca.crt
{{- end }}
{{- end }}

{{- define "loader.agent.mounts" -}}
- name: {{ .volumeName | default "loader-secrets" }}
  mountPath: {{ .mountPath | default "/secrets" }}
- name: loader-token
  mountPath: {{ ternary "/var/run/secrets/tokens" "/var/run/secrets/loader" (eq (include "loader.agent.auth" .) "jwt") }}
  readOnly: true
{{- if .template }}
- name: loader-template
  mountPath: /etc/loader/template
  readOnly: true
{{- end }}
{{- if .caConfigMap }}
- name: loader-ca
  mountPath: /etc/loader/ca
  readOnly: true
{{- end }}
{{- end }}

{{- define "loader.agent.securityContext" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser | default 65532 }}
runAsGroup: {{ .runAsGroup | default (.runAsUser | default 65532) }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "loader.agent.resources" -}}
{{- if .resources }}
{{ toYaml .resources }}
{{- else if and .root .root.Values.agent.resources }}
{{ toYaml .root.Values.agent.resources }}
{{- else }}
requests:
  cpu: 10m
  memory: 64Mi
limits:
  cpu: 200m
  memory: 256Mi
{{- end }}
{{- end }}

{{/* The agent's local endpoint is loopback-only and kubelet's httpGet goes to the pod IP, so
the probes run a one-line Python request inside the container. */}}
{{- define "loader.agent.probe" -}}
exec:
  command:
    - python
    - -c
    - "import urllib.request as u; u.urlopen('http://127.0.0.1:{{ .port }}{{ .path }}', timeout=3)"
periodSeconds: {{ .period }}
timeoutSeconds: 5
failureThreshold: {{ .failures | default 3 }}
{{- end }}

{{/* `loader render --once`: the files exist before the app starts (exit 69/77 fail the pod). */}}
{{- define "loader.initContainer" -}}
- name: {{ .name | default "loader-render" }}
  image: {{ include "loader.agent.image" . | quote }}
  imagePullPolicy: {{ .imagePullPolicy | default "IfNotPresent" }}
  command: ["python", "-m", "loader"]
  args: ["render", "--once"]
  env:
    {{- include "loader.agent.env" . | trim | nindent 4 }}
    - name: LOADER_TIMEOUT
      value: {{ .timeout | default "60s" | quote }}
  volumeMounts:
    {{- include "loader.agent.mounts" . | trim | nindent 4 }}
  resources:
    {{- include "loader.agent.resources" . | trim | nindent 4 }}
  securityContext:
    {{- include "loader.agent.securityContext" . | nindent 4 }}
{{- end }}

{{/* `loader agent`: follows the store and keeps the files fresh. */}}
{{- define "loader.agentSidecar" -}}
{{- $port := .agentPort | default 8701 -}}
- name: {{ .name | default "loader-agent" }}
  image: {{ include "loader.agent.image" . | quote }}
  imagePullPolicy: {{ .imagePullPolicy | default "IfNotPresent" }}
  command: ["python", "-m", "loader"]
  args: ["agent"]
  env:
    {{- include "loader.agent.env" . | trim | nindent 4 }}
    - name: LOADER_LISTEN
      value: {{ printf "127.0.0.1:%v" $port | quote }}
    {{- with .onChange }}
    - name: LOADER_ON_CHANGE
      value: {{ . | quote }}
    {{- end }}
    {{- with .maxStale }}
    - name: LOADER_MAX_STALE
      value: {{ . | quote }}
    {{- end }}
  volumeMounts:
    {{- include "loader.agent.mounts" . | trim | nindent 4 }}
  resources:
    {{- include "loader.agent.resources" . | trim | nindent 4 }}
  securityContext:
    {{- include "loader.agent.securityContext" . | nindent 4 }}
  livenessProbe:
    {{- include "loader.agent.probe" (dict "port" $port "path" "/healthz" "period" 20) | nindent 4 }}
  readinessProbe:
    {{- include "loader.agent.probe" (dict "port" $port "path" "/readyz" "period" 10) | nindent 4 }}
  {{- if .native }}
  # A native sidecar (an init container that keeps running): the app starts once /readyz
  # answers, i.e. after the first render, within startupSeconds.
  restartPolicy: Always
  startupProbe:
    {{- include "loader.agent.probe" (dict "port" $port "path" "/readyz" "period" 2 "failures" (div (int (.startupSeconds | default 60)) 2)) | nindent 4 }}
  {{- end }}
{{- end }}

{{/* The memory-backed volume the agent writes to (it refuses disk-backed ones). */}}
{{- define "loader.secretsVolume" -}}
- name: {{ .volumeName | default "loader-secrets" }}
  emptyDir:
    medium: Memory
    sizeLimit: {{ .sizeLimit | default "16Mi" }}
{{- end }}

{{/* Read-only mount of the rendered files, for app containers. */}}
{{- define "loader.secretsMount" -}}
- name: {{ .volumeName | default "loader-secrets" }}
  mountPath: {{ .mountPath | default "/secrets" }}
  readOnly: true
{{- end }}

{{/* The agent's identity -- a projected service-account token for the store's audience
(auth=jwt), or the token Secret -- and the template ConfigMap and CA, when given. The token
file is 0444: only loader's containers mount it, and without a pod fsGroup a 0400 root-owned
file would be unreadable to the non-root agent. */}}
{{- define "loader.agentVolumes" -}}
{{- $values := .root | default dict }}
{{- $agentValues := ($values.Values | default dict).agent | default dict }}
- name: loader-token
{{- if eq (include "loader.agent.auth" .) "jwt" }}
  projected:
    defaultMode: 0444
    sources:
      - serviceAccountToken:
          audience: {{ .tokenAudience | default $agentValues.tokenAudience | default "loader-store" | quote }}
          expirationSeconds: {{ .tokenExpiration | default $agentValues.tokenExpirationSeconds | default 600 }}
          path: loader
{{- else }}
  secret:
    secretName: {{ .tokenSecret | default "loader-agent-token" }}
    defaultMode: 0444
    items:
      - key: {{ .tokenKey | default "token" }}
        path: token
{{- end }}
{{- if .template }}
- name: loader-template
  configMap:
    name: {{ .template }}
    items:
      - key: {{ .templateKey | default "spicepod.yaml" }}
        path: {{ .templateKey | default "spicepod.yaml" }}
{{- end }}
{{- if .caConfigMap }}
- name: loader-ca
  configMap:
    name: {{ .caConfigMap }}
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end }}
