{{/* Name of the chart, or nameOverride. */}}
{{- define "orchestrator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name: release-chart, or fullnameOverride; at most 63 characters. */}}
{{- define "orchestrator.fullname" -}}
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

{{/* Name of one component's objects: fullname-component, at most 63 characters. */}}
{{- define "orchestrator.componentName" -}}
{{- printf "%s-%s" (include "orchestrator.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "orchestrator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "orchestrator.labels" -}}
helm.sh/chart: {{ include "orchestrator.chart" . }}
{{ include "orchestrator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: orchestrator
{{- end }}

{{- define "orchestrator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "orchestrator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: call with (dict "root" $ "component" "api"). */}}
{{- define "orchestrator.componentLabels" -}}
{{ include "orchestrator.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "orchestrator.componentSelectorLabels" -}}
{{ include "orchestrator.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "orchestrator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "orchestrator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The API's ServiceAccount: it may only read pods and their logs (rbac/pod-logs-role.yaml). */}}
{{- define "orchestrator.apiServiceAccountName" -}}
{{- if .Values.api.serviceAccount.create }}
{{- default (include "orchestrator.componentName" (dict "root" . "component" "api")) .Values.api.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.api.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Account and token of a pod by what it does with the Kubernetes API:
(dict "root" $ "access" "jobs"|"logs"|"none"). `jobs`: create and watch agent
Jobs (the Job manager's account); `logs`: read pods and their logs (the API's
account); `none`: no account of ours and no token. The local runner never calls
Kubernetes, so every pod is `none` with it.
*/}}
{{- define "orchestrator.podAccount" -}}
{{- $access := ternary .access "none" (eq .root.Values.config.runner "kubernetes") }}
{{- if eq $access "jobs" }}
serviceAccountName: {{ include "orchestrator.serviceAccountName" .root }}
automountServiceAccountToken: true
{{- else if eq $access "logs" }}
serviceAccountName: {{ include "orchestrator.apiServiceAccountName" .root }}
automountServiceAccountToken: true
{{- else }}
# This pod never calls the Kubernetes API: the namespace's default account, no token.
automountServiceAccountToken: false
{{- end }}
{{- end }}

{{/* Kubernetes access of a worker group, from the steps its queues run (see podAccount). */}}
{{- define "orchestrator.workerAccess" -}}
{{- if has "deploy" .queues }}jobs{{ else if has "coordination" .queues }}logs{{ else }}none{{ end }}
{{- end }}

{{- define "orchestrator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The agent Jobs' image: config.agentImage, else agentImage at its tag or the appVersion. */}}
{{- define "orchestrator.agentImage" -}}
{{- default (printf "%s:%s" .Values.agentImage.repository (default .Chart.AppVersion .Values.agentImage.tag)) .Values.config.agentImage }}
{{- end }}

{{/* Namespace of agent Jobs. */}}
{{- define "orchestrator.jobNamespace" -}}
{{- default .Release.Namespace .Values.config.jobNamespace }}
{{- end }}

{{/* Secret holding the credentials (the chart's own or existingSecret). */}}
{{- define "orchestrator.secretName" -}}
{{- default (include "orchestrator.componentName" (dict "root" . "component" "secrets")) .Values.secrets.existingSecret }}
{{- end }}

{{- define "orchestrator.configMapName" -}}
{{- include "orchestrator.componentName" (dict "root" . "component" "config") }}
{{- end }}

{{- define "orchestrator.jobTemplateConfigMapName" -}}
{{- include "orchestrator.componentName" (dict "root" . "component" "job-template") }}
{{- end }}

{{/* True when a workspace claim is mounted (created here or elsewhere). */}}
{{- define "orchestrator.workspaceClaim" -}}
{{- if or .Values.sharedWorkspace.enabled .Values.sharedWorkspace.useExisting }}{{ .Values.sharedWorkspace.name }}{{ end }}
{{- end }}

{{/*
Pod annotations: the user's, plus checksums of the ConfigMaps and Secret the
pod reads, so `helm upgrade` rolls the pods when one of them changes.
*/}}
{{- define "orchestrator.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/config/configmap.yaml") . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret: {{ include (print .Template.BasePath "/config/secret.yaml") . | sha256sum }}
{{- end }}
{{- if .Values.claudeCodeChart.enabled }}
checksum/job-template: {{ include (print .Template.BasePath "/config/job-template-configmap.yaml") . | sha256sum }}
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Where every process finds Redis: the URL, with Sentinel the Sentinels (their
password from the same Secret as Redis's), and the wait for replicas.
*/}}
{{- define "orchestrator.redisEnv" -}}
{{- include "orchestrator.redisUrlEnv" . }}
{{- with .Values.redis.sentinel }}
{{- if .enabled }}
- name: ORCHESTRATOR_REDIS_SENTINELS
  value: {{ required "redis.sentinel.hosts is required when redis.sentinel.enabled" (join "," .hosts) | quote }}
- name: ORCHESTRATOR_REDIS_SENTINEL_MASTER
  value: {{ .masterSet | quote }}
{{- if and .usePassword $.Values.redis.auth.enabled }}
- name: ORCHESTRATOR_REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.redis.auth.existingSecret }}
      key: {{ $.Values.redis.auth.existingSecretPasswordKey }}
{{- end }}
{{- end }}
{{- end }}
- name: ORCHESTRATOR_REDIS_WAIT_REPLICAS
  value: {{ .Values.redis.waitReplicas | toString | quote }}
- name: ORCHESTRATOR_REDIS_WAIT_TIMEOUT_MS
  value: {{ .Values.redis.waitTimeoutMs | toString | quote }}
{{- end }}

{{/*
ORCHESTRATOR_REDIS_URL: the whole URL from a Secret, or built from host, port
and a password from a Secret (Kubernetes expands $(REDIS_PASSWORD), which must
be defined first). With Sentinel its host is the master set's name, for the
reader only: the processes ask the Sentinels where the master is.
*/}}
{{- define "orchestrator.redisUrlEnv" -}}
{{- $host := ternary .Values.redis.sentinel.masterSet .Values.redis.host .Values.redis.sentinel.enabled }}
{{- if .Values.redis.externalUrl.existingSecret }}
- name: ORCHESTRATOR_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.externalUrl.existingSecret }}
      key: {{ .Values.redis.externalUrl.key }}
{{- else }}
{{- $scheme := ternary "rediss" "redis" .Values.redis.tls }}
{{- if .Values.redis.auth.enabled }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ required "redis.auth.existingSecret is required when redis.auth.enabled" .Values.redis.auth.existingSecret }}
      key: {{ .Values.redis.auth.existingSecretPasswordKey }}
- name: ORCHESTRATOR_REDIS_URL
  value: {{ printf "%s://:$(REDIS_PASSWORD)@%s:%d/%d" $scheme $host (int .Values.redis.port) (int .Values.redis.db) | quote }}
{{- else }}
- name: ORCHESTRATOR_REDIS_URL
  value: {{ printf "%s://%s:%d/%d" $scheme $host (int .Values.redis.port) (int .Values.redis.db) | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* One credential from the Secret, as an env entry: (dict "root" $ "env" "NAME" "key" "key"). */}}
{{- define "orchestrator.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ include "orchestrator.secretName" .root }}
      key: {{ .key }}
      optional: true
{{- end }}

{{/* Volumes of every pod: a writable /tmp under the read-only root filesystem. */}}
{{- define "orchestrator.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{- define "orchestrator.volumes" -}}
- name: tmp
  emptyDir: {}
{{- end }}

{{/* Volumes of the pods that touch workspaces and launch Jobs (workers, watcher). */}}
{{- define "orchestrator.workVolumeMounts" -}}
- name: workspace
  mountPath: {{ .Values.sharedWorkspace.mountPath }}
{{- if .Values.claudeCodeChart.enabled }}
- name: job-template
  mountPath: {{ .Values.claudeCodeChart.mountPath }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "orchestrator.workVolumes" -}}
{{- with (include "orchestrator.workspaceClaim" .) }}
- name: workspace
  persistentVolumeClaim:
    claimName: {{ . }}
{{- else }}
# No shared claim: a scratch directory (enough for the local runner only).
- name: workspace
  emptyDir: {}
{{- end }}
{{- if .Values.claudeCodeChart.enabled }}
- name: job-template
  configMap:
    name: {{ include "orchestrator.jobTemplateConfigMapName" . }}
{{- end }}
{{- end }}

{{/* Env of the processes that run pipeline steps. */}}
{{- define "orchestrator.workerEnv" -}}
{{ include "orchestrator.redisEnv" . | trim }}
{{ include "orchestrator.secretEnv" (dict "root" . "env" "GITHUB_TOKEN" "key" "github-token") }}
{{ include "orchestrator.secretEnv" (dict "root" . "env" "ORCHESTRATOR_OTEL_EXPORTER_OTLP_HEADERS" "key" "otel-exporter-otlp-headers") }}
{{- /* The local runner's agent needs the key itself. With Jobs, workers and the watcher read the
agents' pod logs (a run keeps a scrubbed excerpt, the stall check reads them), and mask only
the secrets they know: an agent printing its own key must find it masked. */}}
{{ include "orchestrator.secretEnv" (dict "root" . "env" "ANTHROPIC_API_KEY" "key" "anthropic-api-key") }}
{{- end }}

{{- define "orchestrator.flowerSecretName" -}}
{{- default (include "orchestrator.componentName" (dict "root" . "component" "flower")) .Values.flower.basicAuth.existingSecret }}
{{- end }}
