{{/* The chart name, possibly overridden. */}}
{{- define "verdict.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name: release-chart, or the override. */}}
{{- define "verdict.fullname" -}}
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

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "verdict.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "verdict.labels" -}}
helm.sh/chart: {{ include "verdict.chart" . }}
{{ include "verdict.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the pods. */}}
{{- define "verdict.selectorLabels" -}}
app.kubernetes.io/name: {{ include "verdict.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount name. */}}
{{- define "verdict.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "verdict.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference; the tag defaults to appVersion and is never `latest`. */}}
{{- define "verdict.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if eq $tag "latest" }}
{{- fail "image.tag: `latest` is not allowed; pin a version" }}
{{- end }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}

{{/* Where the policy bundle is mounted. */}}
{{- define "verdict.policiesMount" -}}
{{- if eq .Values.policies.source "gitSync" }}/git{{ else }}/etc/verdict/policies{{ end }}
{{- end }}

{{/* `policies` (the setting): the bundle directory Verdict reads. */}}
{{- define "verdict.policiesPath" -}}
{{- if eq .Values.policies.source "gitSync" }}
{{- $sub := trimAll "/" .Values.policies.gitSync.subPath }}
{{- if $sub }}/git/current/{{ $sub }}{{ else }}/git/current{{ end }}
{{- else }}/etc/verdict/policies
{{- end }}
{{- end }}

{{/* The ConfigMap holding the bundle (inline and configMap sources). */}}
{{- define "verdict.policiesConfigMap" -}}
{{- if eq .Values.policies.source "configMap" }}
{{- required "policies.configMap.name is required with policies.source=configMap" .Values.policies.configMap.name }}
{{- else }}
{{- printf "%s-policies" (include "verdict.fullname" .) }}
{{- end }}
{{- end }}
