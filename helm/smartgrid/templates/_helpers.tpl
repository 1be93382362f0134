{{/* Chart name, cut to the 63 characters a label allows. */}}
{{- define "smartgrid.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every object name: <release>-smartgrid, or the release name if it says smartgrid. */}}
{{- define "smartgrid.fullname" -}}
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

{{/* Labels on every object. */}}
{{- define "smartgrid.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: smartgrid
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "operator"). */}}
{{- define "smartgrid.selectorLabels" -}}
app.kubernetes.io/name: {{ include "smartgrid.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component's objects and pods. */}}
{{- define "smartgrid.componentLabels" -}}
{{ include "smartgrid.labels" .ctx }}
{{ include "smartgrid.selectorLabels" . }}
{{- end }}

{{/* An image reference: call with (dict "ctx" $ "image" .Values.images.ingest). */}}
{{- define "smartgrid.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}

{{- define "smartgrid.operatorServiceAccount" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-operator" (include "smartgrid.fullname" .)) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* In-cluster URLs of the demo backends. */}}
{{- define "smartgrid.kafkaBootstrap" -}}
{{- printf "%s-kafka.%s.svc:9092" (include "smartgrid.fullname" .) .Release.Namespace }}
{{- end }}
{{- define "smartgrid.redisUrl" -}}
{{- printf "redis://%s-redis.%s.svc:6379/0" (include "smartgrid.fullname" .) .Release.Namespace }}
{{- end }}
{{- define "smartgrid.influxdbUrl" -}}
{{- printf "http://%s-influxdb.%s.svc:8086" (include "smartgrid.fullname" .) .Release.Namespace }}
{{- end }}

{{/* Name of the SmartGridConsumer the chart creates. */}}
{{- define "smartgrid.consumerName" -}}
{{- default (include "smartgrid.fullname" .) .Values.consumer.name | trunc 40 | trimSuffix "-" }}
{{- end }}

{{/* The consumer's spec: values.consumer.spec with the images and demo URLs filled in. */}}
{{- define "smartgrid.consumerSpec" -}}
{{- $spec := deepCopy .Values.consumer.spec }}
{{- $kafka := default dict $spec.kafka }}
{{- if and .Values.kafka.enabled (not $kafka.bootstrapServers) }}
{{- $_ := set $kafka "bootstrapServers" (include "smartgrid.kafkaBootstrap" .) }}
{{- end }}
{{- $_ := set $spec "kafka" $kafka }}
{{- $influx := default dict $spec.influxdb }}
{{- if and .Values.influxdb.enabled (not $influx.url) (not $influx.urls) }}
{{- $_ := set $influx "url" (include "smartgrid.influxdbUrl" .) }}
{{- $_ := set $influx "database" (default .Values.influxdb.database $influx.database) }}
{{- end }}
{{- $_ := set $spec "influxdb" $influx }}
{{- $redis := default dict $spec.redis }}
{{- if and .Values.redis.enabled (not $redis.url) }}
{{- $_ := set $redis "url" (include "smartgrid.redisUrl" .) }}
{{- end }}
{{- $_ := set $spec "redis" $redis }}
{{- range $component := list "ingest" "aggregator" "writer" }}
{{- $section := default dict (get $spec $component) }}
{{- if not $section.image }}
{{- $_ := set $section "image" (include "smartgrid.image" (dict "ctx" $ "image" (get $.Values.images $component))) }}
{{- end }}
{{- $_ := set $spec $component $section }}
{{- end }}
{{- /* The dashboard's API token and the region alert webhook (values auth.apiToken, alerts.webhook). */}}
{{- $aggregator := get $spec "aggregator" }}
{{- if and .Values.auth.apiToken.enabled (not $aggregator.apiTokenSecret) }}
{{- $_ := set $aggregator "apiTokenSecret" (dict "name" .Values.auth.apiToken.secretName "key" .Values.auth.apiToken.secretKey) }}
{{- end }}
{{- if and .Values.alerts.webhook.enabled (not $aggregator.alerts) }}
{{- $hook := .Values.alerts.webhook }}
{{- $share := .Values.alerts.regionShare }}
{{- $_ := set $aggregator "alerts" (dict "webhookSecret" (dict "name" $hook.secretName "key" $hook.secretKey) "format" $hook.format "faultShare" $share.fault "offlineShare" $share.offline "clockSkewShare" $share.clockSkew "clearRatio" $hook.clearRatio "for" .Values.alerts.for "repeatInterval" $hook.repeatInterval "severity" .Values.alerts.severity "dashboardUrl" $hook.dashboardUrl) }}
{{- end }}
{{- if not $spec.imagePullPolicy }}
{{- $_ := set $spec "imagePullPolicy" .Values.images.pullPolicy }}
{{- end }}
{{- if and .Values.imagePullSecrets (not $spec.imagePullSecrets) }}
{{- $_ := set $spec "imagePullSecrets" (include "smartgrid.pullSecrets" . | fromYamlArray) }}
{{- end }}
{{- toYaml $spec }}
{{- end }}

{{- define "smartgrid.pullSecrets" -}}
{{- range .Values.imagePullSecrets }}
- name: {{ . }}
{{- end }}
{{- end }}

{{/* Hardened security contexts (non-root, read-only root, no capabilities, RuntimeDefault seccomp). */}}
{{- define "smartgrid.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid | default 10001 }}
runAsGroup: {{ .uid | default 10001 }}
fsGroup: {{ .uid | default 10001 }}
seccompProfile:
  type: RuntimeDefault
{{- end }}
{{- define "smartgrid.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: {{ if hasKey . "readOnly" }}{{ .readOnly }}{{ else }}true{{ end }}
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Annotations of a pre-delete hook object; the argument is its weight (objects it needs go first).
Deleted before it is made again and once it succeeded.
*/}}
{{- define "smartgrid.preDeleteHook" -}}
helm.sh/hook: pre-delete
helm.sh/hook-weight: {{ . | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end }}
