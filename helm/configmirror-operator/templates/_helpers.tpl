{{- define "configmirror.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "configmirror.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "configmirror.selectorLabels" -}}
app.kubernetes.io/name: {{ include "configmirror.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "configmirror.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "configmirror.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: configmirror
{{- end -}}

{{- define "configmirror.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "configmirror.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "configmirror.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The mode comes from the values, never guessed by the process: leader
election whenever more than one replica runs. */}}
{{- define "configmirror.leaderElect" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.sharding.enabled) -}}true{{- end -}}
{{- end -}}

{{- define "configmirror.sharding" -}}
{{- if .Values.sharding.enabled -}}
{{- if not (or .Values.database.urlSecret.name .Values.database.credentialsSecret) -}}
{{- fail "sharding.enabled needs the operator's database: set database.urlSecret.name or database.credentialsSecret" -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{- define "configmirror.leaseName" -}}
{{- printf "%s-leader" (include "configmirror.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
