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

{{/* A digest pins the image outright: the tag is left out, so what runs
never depends on where a tag points. */}}
{{- define "configmirror.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The operator's own database: the user's (database.urlSecret.name or
database.credentialsSecret), else the chart's PostgreSQL when
postgresql.enabled. "true" or empty. */}}
{{- define "configmirror.userDatabase" -}}
{{- if and .Values.database.urlSecret.name .Values.database.credentialsSecret -}}
{{- fail "set database.urlSecret.name or database.credentialsSecret, not both" -}}
{{- end -}}
{{- if or .Values.database.urlSecret.name .Values.database.credentialsSecret -}}true{{- end -}}
{{- end -}}

{{- define "configmirror.postgresql.enabled" -}}
{{- if and .Values.postgresql.enabled (not (include "configmirror.userDatabase" .)) -}}true{{- end -}}
{{- end -}}

{{- define "configmirror.hasDatabase" -}}
{{- if or (include "configmirror.userDatabase" .) (include "configmirror.postgresql.enabled" .) -}}true{{- end -}}
{{- end -}}

{{/* The mode comes from the values, never guessed by the process.
sharding.enabled: true or false force it; "auto" (or null) means sharded when
replicaCount > 1. Sharding needs a database: without one the chart fails
rather than silently running one active replica. "true" or empty; when
empty, the replicas run leader election, whatever their count, so
`kubectl scale` or `helm upgrade --set replicaCount=3` never runs two
unelected controllers. */}}
{{- define "configmirror.sharding" -}}
{{- $set := .Values.sharding.enabled -}}
{{- $on := false -}}
{{- if kindIs "bool" $set -}}
{{- $on = $set -}}
{{- else -}}
{{- $on = gt (int .Values.replicaCount) 1 -}}
{{- end -}}
{{- if $on -}}
{{- if not (include "configmirror.hasDatabase" .) -}}
{{- if kindIs "bool" $set -}}
{{- fail "sharding.enabled=true needs a database: keep postgresql.enabled=true (the chart's own PostgreSQL), or set database.urlSecret.name or database.credentialsSecret" -}}
{{- else -}}
{{- fail (printf "replicaCount=%d shards the mirrors among the replicas, which needs a database, and postgresql.enabled=false with no database.urlSecret.name or database.credentialsSecret leaves none: keep postgresql.enabled=true, set one of those, or set sharding.enabled=false for leader election (one replica active, the others standing by)" (int .Values.replicaCount)) -}}
{{- end -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{- define "configmirror.leaseName" -}}
{{- printf "%s-leader" (include "configmirror.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "configmirror.coordinatorLease" -}}
{{- printf "%s-coordinator" (include "configmirror.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The chart's PostgreSQL: its StatefulSet, Service, Secret and
ServiceAccount share this name. */}}
{{- define "configmirror.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "configmirror.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Distinct from the operator's selector (its name label differs), so the
operator's Service, PodDisruptionBudget and NetworkPolicy never select the
database pod. */}}
{{- define "configmirror.postgresql.selectorLabels" -}}
app.kubernetes.io/name: {{ include "configmirror.name" . }}-postgresql
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: database
{{- end -}}

{{- define "configmirror.postgresql.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "configmirror.postgresql.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: configmirror
{{- end -}}

{{- define "configmirror.postgresql.image" -}}
{{- $i := .Values.postgresql.image -}}
{{- if and $i.tag $i.digest -}}
{{- printf "%s:%s@%s" $i.repository $i.tag $i.digest -}}
{{- else if $i.digest -}}
{{- printf "%s@%s" $i.repository $i.digest -}}
{{- else -}}
{{- printf "%s:%s" $i.repository (required "postgresql.image.tag or postgresql.image.digest is required" $i.tag) -}}
{{- end -}}
{{- end -}}

{{/* The test hook's objects all carry this one name: `helm test --logs`
asks for the logs of a pod named like each test hook, RBAC objects included. */}}
{{- define "configmirror.testName" -}}
{{- printf "%s-test" (include "configmirror.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "configmirror.testLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "configmirror.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: configmirror
{{- end -}}

{{/* The pre-upgrade hook's objects (configmirror prepare-upgrade). */}}
{{- define "configmirror.upgradeName" -}}
{{- printf "%s-prepare-upgrade" (include "configmirror.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "configmirror.upgradeLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "configmirror.name" . }}-prepare-upgrade
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: upgrade
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: configmirror
{{- end -}}
