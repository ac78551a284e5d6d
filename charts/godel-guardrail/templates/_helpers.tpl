{{/* The operator's image, its tag the chart's appVersion unless set. */}}
{{- define "godel.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Labels every object carries, as in the kustomize base. */}}
{{- define "godel.labels" -}}
app.kubernetes.io/name: godel-operator
{{- end }}
