{{/* Names and labels, as in the prometheus-community charts. */}}
{{- define "mailprobe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mailprobe.fullname" -}}
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

{{- define "mailprobe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mailprobe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mailprobe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mailprobe.labels" -}}
helm.sh/chart: {{ include "mailprobe.chart" . }}
{{ include "mailprobe.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "mailprobe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mailprobe.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* registry/repository:tag@digest; global.imageRegistry wins over image.registry. */}}
{{- define "mailprobe.image" -}}
{{- with (.Values.global.imageRegistry | default .Values.image.registry) -}}{{ . }}/{{- end -}}
{{- .Values.image.repository -}}:{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- with .Values.image.digest -}}@{{ . }}{{- end -}}
{{- end -}}

{{- define "mailprobe.secretName" -}}
{{- .Values.existingSecret | default (printf "%s-passwords" (include "mailprobe.fullname" .)) -}}
{{- end -}}

{{/* "true" when the sidecar is an init container with restartPolicy: Always. */}}
{{- define "mailprobe.nativeSidecar" -}}
{{- $native := toString .Values.app.nativeSidecar -}}
{{- if eq $native "auto" -}}
{{- semverCompare ">=1.29-0" .Capabilities.KubeVersion.Version -}}
{{- else -}}
{{- eq $native "true" -}}
{{- end -}}
{{- end -}}

{{/*
The config file: the values above it, then `config` merged over them. Passwords are files of the
Secret, never values.
*/}}
{{- define "mailprobe.config" -}}
{{- $boxes := list -}}
{{- range .Values.mailboxes -}}
{{- $box := omit . "passwordKey" "password" -}}
{{- $key := .passwordKey | default .name -}}
{{- $_ := set $box "password" (dict "file" (printf "/run/secrets/mailprobe/%s" $key)) -}}
{{- $boxes = append $boxes $box -}}
{{- end -}}
{{- $config := dict "interval" .Values.interval "timeout" .Values.timeout "concurrency" .Values.concurrency "listen" "0.0.0.0:9925" "mailboxes" $boxes -}}
{{- with .Values.otlp.endpoint -}}
{{- $_ := set $config "otlp" (dict "endpoint" . "protocol" $.Values.otlp.protocol) -}}
{{- end -}}
{{- with .Values.alertmanager.url -}}
{{- $_ := set $config "alerts" (dict "alertmanager" .) -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite $config (deepCopy .Values.config)) -}}
{{- end -}}

{{/*
The mailprobe container. Also usable from another chart to add the probe as a sidecar to an
existing pod: {{ include "mailprobe.container" . | nindent 8 }} (plus mailprobe.volumes).
*/}}
{{- define "mailprobe.container" -}}
{{- $standalone := eq .Values.mode "standalone" -}}
- name: mailprobe
  image: {{ include "mailprobe.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if and (not $standalone) (eq (include "mailprobe.nativeSidecar" .) "true") }}
  restartPolicy: Always
  {{- end }}
  args:
    - run
    - --config=/etc/mailprobe/mailprobe.yaml
    - --reload-interval={{ .Values.reloadInterval }}
    - --web.listen-address={{ .Values.listenAddress }}
  ports:
    - name: metrics
      containerPort: {{ (split ":" (.Values.listenAddress | toString))._1 | default "9925" | int }}
  env:
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    {{- if $standalone }}
    {{- if semverCompare ">=1.28-0" .Capabilities.KubeVersion.Version }}
    - name: POD_INDEX
      valueFrom:
        fieldRef:
          fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
    - name: MAILPROBE_SHARD
      value: "$(POD_INDEX)/{{ .Values.replicas }}"
    {{- else }}
    # No pod-index label before Kubernetes 1.28: the probe reads the ordinal ending the name.
    - name: MAILPROBE_SHARD
      value: "$(POD_NAME)/{{ .Values.replicas }}"
    {{- end }}
    {{- end }}
    - name: OTEL_SERVICE_NAME
      value: mailprobe
    - name: OTEL_RESOURCE_ATTRIBUTES
      value: "k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE){{ with .Values.extraResourceAttributes }},{{ . }}{{ end }}"
    {{- with .Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.extraEnvFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- /* The sidecar has no probes: none of them could help the application's pod, each could hold it back. */}}
  {{- if $standalone }}
  {{- with .Values.livenessProbe }}
  livenessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.readinessProbe }}
  readinessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.startupProbe }}
  startupProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
  {{- if $standalone }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- else }}
  {{- /* Requests equal to limits: a Guaranteed application pod stays Guaranteed. */}}
  resources:
    requests:
      cpu: {{ .Values.sidecarResources.cpu | quote }}
      memory: {{ .Values.sidecarResources.memory | quote }}
    limits:
      cpu: {{ .Values.sidecarResources.cpu | quote }}
      memory: {{ .Values.sidecarResources.memory | quote }}
  {{- end }}
  {{- with .Values.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: mailprobe-config
      mountPath: /etc/mailprobe
      readOnly: true
    - name: mailprobe-passwords
      mountPath: /run/secrets/mailprobe
      readOnly: true
    - name: mailprobe-tmp
      mountPath: /tmp
    {{- with .Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{- define "mailprobe.volumes" -}}
- name: mailprobe-config
  configMap:
    name: {{ include "mailprobe.fullname" . }}
- name: mailprobe-passwords
  secret:
    secretName: {{ include "mailprobe.secretName" . }}
    # A missing Secret leaves the mailboxes incomplete instead of keeping the pod from starting.
    optional: true
    # Only the probe mounts this volume; with no pod-wide fsGroup the files (owned by root)
    # must be readable by the probe's non-root UID.
    defaultMode: 0444
- name: mailprobe-tmp
  # Memory-backed: a tmpfs of sizeLimit, where a full disk is a write error (ENOSPC) in the probe;
  # a disk-backed emptyDir over its sizeLimit would evict the whole pod.
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.scratchSizeLimit }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "mailprobe.podScheduling" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
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
{{- with .Values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "mailprobe.podMetadata" -}}
labels:
  {{- include "mailprobe.selectorLabels" . | nindent 2 }}
  {{- with .Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- if or (ne .Values.mode "sidecar") .Values.podAnnotations }}
annotations:
  {{- if ne .Values.mode "sidecar" }}
  {{- /* A shard restarts on a config change (settings like otlp apply only at start). In
  sidecar mode the probe reloads the mounted file itself: a config change never rolls the
  application's pods. */}}
  checksum/config: {{ include "mailprobe.config" . | sha256sum }}
  {{- end }}
  {{- with .Values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
{{- end -}}
