{{/* Names and labels. */}}
{{- define "mailprobe.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mailprobe.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mailprobe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mailprobe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mailprobe.labels" -}}
{{ include "mailprobe.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/*
The mailprobe container. Also usable from another chart to add the probe as a sidecar to an
existing pod: {{ include "mailprobe.container" . | nindent 8 }} (plus the volumes below).
*/}}
{{- define "mailprobe.container" -}}
- name: mailprobe
  image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["run", "--config", "/etc/mailprobe/mailprobe.yaml"]
  ports:
    - name: metrics
      containerPort: 9925
  env:
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    {{- if eq .Values.mode "standalone" }}
    # Shard INDEX/COUNT: INDEX is the StatefulSet pod's ordinal, the end of its name.
    - name: MAILPROBE_SHARD
      value: "$(POD_NAME)/{{ .Values.shards }}"
    {{- end }}
    - name: OTEL_SERVICE_NAME
      value: mailprobe
    - name: OTEL_RESOURCE_ATTRIBUTES
      value: "k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE){{ with .Values.extraResourceAttributes }},{{ . }}{{ end }}"
  livenessProbe:
    httpGet: { path: /healthz, port: metrics }
    periodSeconds: 10
    failureThreshold: 3
  readinessProbe:
    httpGet: { path: /readyz, port: metrics }
    periodSeconds: 5
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    readOnlyRootFilesystem: true
    allowPrivilegeEscalation: false
    capabilities:
      drop: ["ALL"]
  volumeMounts:
    - name: mailprobe-config
      mountPath: /etc/mailprobe
      readOnly: true
    - name: mailprobe-passwords
      mountPath: /run/secrets/mailprobe
      readOnly: true
    - name: mailprobe-tmp
      mountPath: /tmp
{{- end -}}

{{- define "mailprobe.volumes" -}}
- name: mailprobe-config
  configMap:
    name: {{ include "mailprobe.fullname" . }}
- name: mailprobe-passwords
  secret:
    secretName: {{ required "existingSecret: name the Secret that holds the mailboxes' passwords" .Values.existingSecret }}
    defaultMode: 0440
- name: mailprobe-tmp
  emptyDir:
    sizeLimit: 16Mi
{{- end -}}

{{- define "mailprobe.podSecurityContext" -}}
runAsNonRoot: true
# Secret files are owned by root; fsGroup makes them readable (mode 0440) by the probe.
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "mailprobe.podScheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
