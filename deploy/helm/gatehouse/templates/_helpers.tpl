{{/* Names and labels. */}}
{{- define "gatehouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gatehouse.fullname" -}}
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

{{- define "gatehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gatehouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gatehouse.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "gatehouse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "gatehouse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gatehouse.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gatehouse.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Where the secret files are mounted. */}}
{{- define "gatehouse.secretsDir" -}}/run/secrets/gatehouse{{- end }}

{{/*
gatehouse.validate fails the render on values that cannot work, each with what to do.
Every template includes it, so that `helm template -s` of one file fails too.
*/}}
{{- define "gatehouse.validate" -}}
{{- $store := .Values.store.type }}
{{- if not (has $store (list "memory" "bolt" "redis")) }}
{{- fail (printf "store.type %q is not memory, bolt or redis" $store) }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (ne $store "redis") }}
{{- fail (printf "replicaCount is %d but store.type is %s: the %s store belongs to one process, so more than one replica needs store.type: redis (and store.redis.url)" (int .Values.replicaCount) $store $store) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (ne $store "redis") }}
{{- fail (printf "autoscaling.enabled needs store.type: redis (the %s store belongs to one process)" $store) }}
{{- end }}
{{- if and (eq $store "redis") (not .Values.store.redis.url) }}
{{- fail "store.type is redis but store.redis.url is empty (redis://host:6379/0, rediss://…, redis-sentinel://…, redis-cluster://…)" }}
{{- end }}
{{- if and (ne $store "redis") .Values.store.redis.url }}
{{- fail (printf "store.redis.url is set but store.type is %s: set store.type: redis" $store) }}
{{- end }}
{{- if and .Values.forwardAuth.enabled (not .Values.forwardAuth.trustedProxies) }}
{{- fail "forwardAuth.enabled needs forwardAuth.trustedProxies: the ingress-nginx controller pods' network, the only peer whose description of a request Gatehouse believes" }}
{{- end }}
{{- if and .Values.forwardAuth.ingresses (not .Values.forwardAuth.enabled) }}
{{- fail "forwardAuth.ingresses is set but forwardAuth.enabled is false" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.admin.enabled) }}
{{- fail "serviceMonitor.enabled needs admin.enabled: Prometheus scrapes the admin listener's /metrics" }}
{{- end }}
{{- if and (not .Values.secrets.clientSecret.name) (not .Values.secrets.clientKey.name) }}
{{- fail "secrets.clientSecret.name or secrets.clientKey.name must name an existing Secret: the provider needs the client's credentials" }}
{{- end }}
{{- $cfg := .Values.config | default dict }}
{{- range $key := list "listen" "health" }}
{{- if hasKey $cfg $key }}
{{- fail (printf "config.%s is set by the chart (from ports); remove it from config" $key) }}
{{- end }}
{{- end }}
{{- $owned := dict
  "admin" (list "listen" "allow_non_loopback" "token" "token_file")
  "session" (list "store" "keys" "keys_file")
  "provider" (list "client_secret" "client_secret_file" "client_key_file") }}
{{- range $section, $keys := $owned }}
{{- $sub := get $cfg $section | default dict }}
{{- range $key := $keys }}
{{- if hasKey $sub $key }}
{{- fail (printf "config.%s.%s is set by the chart (from admin, store and secrets); remove it from config" $section $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- $redis := get (get $cfg "session" | default dict) "redis" | default dict }}
{{- range $key := list "password" "password_file" }}
{{- if hasKey $redis $key }}
{{- fail (printf "config.session.redis.%s is set by the chart (from store.redis.passwordSecret); remove it from config" $key) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
gatehouse.config is the gatehouse YAML: .Values.config with the keys the chart owns
(listeners, the store, the secret files) filled in.
*/}}
{{- define "gatehouse.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- $dir := include "gatehouse.secretsDir" . }}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%d" (int .Values.ports.http)) }}
{{- $_ := set $cfg "health" (dict "listen" (printf "0.0.0.0:%d" (int .Values.ports.health))) }}
{{- $provider := get $cfg "provider" | default dict }}
{{- if .Values.secrets.clientSecret.name }}
{{- $_ := set $provider "client_secret_file" (printf "%s/client_secret" $dir) }}
{{- end }}
{{- if .Values.secrets.clientKey.name }}
{{- $_ := set $provider "client_key_file" (printf "%s/client_key.pem" $dir) }}
{{- end }}
{{- $_ := set $cfg "provider" $provider }}
{{- $session := get $cfg "session" | default dict }}
{{- if eq .Values.store.type "bolt" }}
{{- $_ := set $session "store" "bolt:///var/lib/gatehouse/sessions.db" }}
{{- else if eq .Values.store.type "redis" }}
{{- $_ := set $session "store" .Values.store.redis.url }}
{{- if .Values.store.redis.passwordSecret.name }}
{{- $redis := get $session "redis" | default dict }}
{{- $_ := set $redis "password_file" (printf "%s/redis_password" $dir) }}
{{- $_ := set $session "redis" $redis }}
{{- end }}
{{- else }}
{{- $_ := set $session "store" "memory" }}
{{- end }}
{{- if .Values.secrets.sessionKeys.name }}
{{- $_ := set $session "keys_file" (printf "%s/session_keys" $dir) }}
{{- end }}
{{- $_ := set $cfg "session" $session }}
{{- $admin := get $cfg "admin" | default dict }}
{{- if .Values.admin.enabled }}
{{- $_ := set $admin "listen" (printf "0.0.0.0:%d" (int .Values.ports.admin)) }}
{{- $_ := set $admin "allow_non_loopback" true }}
{{- end }}
{{- if .Values.secrets.adminToken.name }}
{{- $_ := set $admin "token_file" (printf "%s/admin_token" $dir) }}
{{- end }}
{{- if $admin }}
{{- $_ := set $cfg "admin" $admin }}
{{- end }}
{{- if .Values.forwardAuth.enabled }}
{{- $trusted := concat (get $cfg "trusted_proxies" | default list) .Values.forwardAuth.trustedProxies | uniq }}
{{- $_ := set $cfg "trusted_proxies" $trusted }}
{{- $fa := get $cfg "forward_auth" | default dict }}
{{- if .Values.forwardAuth.redirectNavigations }}
{{- $_ := set $fa "redirect_navigations" true }}
{{- end }}
{{- if $fa }}
{{- $_ := set $cfg "forward_auth" $fa }}
{{- end }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}
