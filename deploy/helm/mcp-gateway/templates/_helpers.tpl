{{- define "mcp-gateway.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mcp-gateway.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mcp-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcp-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mcp-gateway.labels" -}}
{{ include "mcp-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The gateway config as the pods read it: the user's, with the parts the chart owns. */}}
{{- define "mcp-gateway.config" -}}
{{- $server := dict "host" "0.0.0.0" "port" 8080 "shutdownGrace" .Values.shutdownGrace -}}
{{- $server = merge $server (default (dict) .Values.config.server) -}}
{{- $store := dict "url" "${MCP_GATEWAY_STORE}" -}}
{{- toYaml (merge (dict "server" $server "store" $store) (omit .Values.config "server" "store")) -}}
{{- end -}}
