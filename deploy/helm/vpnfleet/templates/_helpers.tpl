{{/*
The chart's name, or nameOverride.
*/}}
{{- define "vpnfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name, the prefix of every object's name: at most 63
characters less the longest suffix the chart adds ("-headless", 9), so
every Service name stays a valid DNS label.
*/}}
{{- define "vpnfleet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "vpnfleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object; "vpnfleet.selectorLabels" plus a component is
what a workload's selector matches.
*/}}
{{- define "vpnfleet.labels" -}}
helm.sh/chart: {{ include "vpnfleet.chart" . }}
{{ include "vpnfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vpnfleet
{{- end }}

{{- define "vpnfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vpnfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
vpnd's selector labels.
*/}}
{{- define "vpnfleet.vpnd.selectorLabels" -}}
{{ include "vpnfleet.selectorLabels" . }}
app.kubernetes.io/component: vpnd
{{- end }}

{{- define "vpnfleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vpnfleet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {repository, tag}; the tag defaults to the
chart's appVersion.
*/}}
{{- define "vpnfleet.image" -}}
{{- printf "%s:%s" .repository (toString (default .appVersion .tag)) }}
{{- end }}

{{/*
The NATS Service's name and the in-cluster names agents dial; vpnd
advertises them (join tokens, its TLS certificate) before
vpnd.nats.advertise.
*/}}
{{- define "vpnfleet.natsServiceName" -}}
{{- printf "%s-nats" (include "vpnfleet.fullname" .) }}
{{- end }}

{{- define "vpnfleet.natsAdvertise" -}}
{{- $svc := include "vpnfleet.natsServiceName" . }}
{{- $names := list (printf "%s.%s.svc.%s" $svc .Release.Namespace .Values.clusterDomain) (printf "%s.%s.svc" $svc .Release.Namespace) }}
{{- concat $names .Values.vpnd.nats.advertise | uniq | join "," }}
{{- end }}

{{/*
The name of one node's agent DaemonSet: <fullname>-agent-<node>, cut to
63 characters with a hash of the node's name when longer, so names of
different nodes never collide.
*/}}
{{- define "vpnfleet.agentName" -}}
{{- $base := printf "%s-agent-%s" (include "vpnfleet.fullname" .root) .node }}
{{- if le (len $base) 63 }}
{{- $base }}
{{- else }}
{{- printf "%s-%s" ($base | trunc 54 | trimSuffix "-" | trimSuffix ".") (sha256sum .node | trunc 8) }}
{{- end }}
{{- end }}

{{/*
A probe of vpnd's ops listener: path and timings.
*/}}
{{- define "vpnfleet.opsProbe" -}}
httpGet:
  path: {{ .path }}
  port: ops
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end }}
