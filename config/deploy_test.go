package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// Every variable the deployment examples (deploy/ and the Dockerfile) set
// for Relink's containers is one Relink reads: a field of Config, a
// Temporal connection variable the SDK's envconfig module reads
// (TEMPORAL_GRPC_META_* by prefix), or the CLI's RELINK_URL. A misspelt or
// retired name in an example would otherwise be silently ignored. Only
// containers running Relink's image count: compose services built from the
// repository or using the relink image, the Kubernetes workloads running
// it and the ConfigMaps and Secrets they envFrom, the env-file examples and
// the image's own ENV. The Temporal server's, PostgreSQL's and the Web UI's
// variables are theirs.
func TestDeployExamplesSetOnlyVariablesRelinkReads(t *testing.T) {
	reads := relinkReads(t)
	scan := newDeployScan()
	err := filepath.WalkDir("../deploy", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !deployFile(p) {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return scan.add(strings.TrimPrefix(filepath.ToSlash(p), "../"), data)
	})
	require.NoError(t, err)
	dockerfile, err := os.ReadFile("../Dockerfile")
	require.NoError(t, err)
	require.NoError(t, scan.add("Dockerfile", dockerfile))
	scan.finish()
	for _, e := range scan.errs {
		t.Error(e)
	}

	// Not vacuous: the scan found Relink's containers and their variables
	// in each kind of example.
	assert.GreaterOrEqual(t, len(scan.containers["compose"]), 3, "Relink's compose services (setup, worker, gateway): %v", scan.containers)
	assert.GreaterOrEqual(t, len(scan.containers["kubernetes"]), 3, "Relink's Kubernetes workloads (setup Job, worker, gateway): %v", scan.containers)
	for _, source := range []string{"compose", "env file", "ConfigMap", "Secret"} {
		assert.NotZero(t, scan.sources[source], "variables from a %s", source)
	}
	require.GreaterOrEqual(t, len(scan.vars), 15, "variables found: %v", sortedKeys(scan.vars))
	for _, name := range []string{"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "RELINK_PAYLOAD_KEYS", "RELINK_API_KEY", "RELINK_METRICS_ADDR", "QUILTT_API_SECRET"} {
		assert.Contains(t, scan.vars, name, "the examples set %s", name)
	}

	names := sortedKeys(scan.vars)
	for _, name := range names {
		if !reads(name) {
			t.Errorf("%s is set in %s, but Relink does not read it", name, strings.Join(scan.vars[name], "; "))
		}
	}
	t.Logf("%d variables set for Relink's containers: %s", len(names), strings.Join(names, " "))
}

// The check above finds made-up names wherever an example can set them,
// and leaves other containers' variables alone.
func TestDeployVariableScanFindsMadeUpNames(t *testing.T) {
	reads := relinkReads(t)
	for _, tc := range []struct {
		name    string
		files   map[string]string
		set     []string // found, and not read by Relink (the check fails on them)
		read    []string // found, and read by Relink
		ignored []string // not Relink's containers': not found
		errs    []string // substrings of scan errors
	}{{
		name: "compose environment map",
		files: map[string]string{"compose.yaml": `
services:
  db:
    image: postgres:16
    environment:
      POSTGRES_PASSWORD: x
  relink:
    build: ../..
    env_file: relink.env
    environment:
      RELINK_API_KEY: k
      RELINK_MADE_UP: "1"
`, "relink.env.example": "RELINK_LOG_LEVEL=debug\n"},
		set:     []string{"RELINK_MADE_UP"},
		read:    []string{"RELINK_API_KEY", "RELINK_LOG_LEVEL"},
		ignored: []string{"POSTGRES_PASSWORD"},
	}, {
		name: "compose environment list and merged anchors",
		files: map[string]string{"compose.yml": `
x-env: &env
  RELINK_ANCHORED_MADE_UP: a
services:
  ui:
    image: temporalio/ui:2.34.0
    environment: [TEMPORAL_UI_PORT=8080]
  worker:
    image: ghcr.io/relink-dev/relink:v1.2.3
    environment:
      <<: *env
      TEMPORAL_ADDRESS: temporal:7233
  gateway:
    image: relink@sha256:0123
    environment:
      - RELINK_LISTED_MADE_UP=1
      - TEMPORAL_GRPC_META_X_TENANT=a
      - RELINK_LOG_FORMAT
`},
		set:     []string{"RELINK_ANCHORED_MADE_UP", "RELINK_LISTED_MADE_UP"},
		read:    []string{"TEMPORAL_ADDRESS", "TEMPORAL_GRPC_META_X_TENANT", "RELINK_LOG_FORMAT"},
		ignored: []string{"TEMPORAL_UI_PORT"},
	}, {
		name: "compose env_file without a committed example",
		files: map[string]string{"compose.yaml": `
services:
  relink:
    build: .
    env_file: [{path: secrets.env}]
`},
		errs: []string{"secrets.env.example"},
	}, {
		name: "env file example, including commented-out settings",
		files: map[string]string{"relink.env.example": `
# Relink's settings; set RELINK_PROSE to nothing (prose is not a setting)
RELINK_API_KEY=k
export RELINK_EXPORTED_MADE_UP=1
# RELINK_COMMENTED_MADE_UP=https://example.com
#MELD_API_KEY=m
`},
		set:     []string{"RELINK_EXPORTED_MADE_UP", "RELINK_COMMENTED_MADE_UP"},
		read:    []string{"RELINK_API_KEY", "MELD_API_KEY"},
		ignored: []string{"RELINK_PROSE"},
	}, {
		name: "kubernetes env, and the ConfigMap and Secret a Relink workload reads",
		files: map[string]string{"k8s.yaml": `
apiVersion: apps/v1
kind: Deployment
metadata: {name: relink-worker}
spec:
  template:
    spec:
      initContainers:
        - name: wait
          image: busybox
          env: [{name: BUSYBOX_MADE_UP, value: "1"}]
      containers:
        - name: worker
          image: ghcr.io/relink-dev/relink:latest
          command: [/usr/local/bin/relink-worker]
          env:
            - {name: RELINK_ENV_MADE_UP, value: "1"}
            - name: QUILTT_API_SECRET
              valueFrom: {secretKeyRef: {name: other, key: q}}
          envFrom:
            - configMapRef: {name: relink-config}
            - secretRef: {name: relink-secrets}
              prefix: QUILTT_
---
apiVersion: v1
kind: ConfigMap
metadata: {name: relink-config}
data:
  RELINK_CONFIGMAP_MADE_UP: x
  TEMPORAL_NAMESPACE: default
  temporal.toml: "not a variable"
---
apiVersion: v1
kind: Secret
metadata: {name: relink-secrets}
stringData:
  WEBHOOK_SECRET: s
  SECRET_MADE_UP: s
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers:
            - name: stats
              image: relink:dev
              args: [stats]
              env: [{name: RELINK_CRON_MADE_UP, value: "1"}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: postgres}
spec:
  template:
    spec:
      containers:
        - name: postgres
          image: postgres:16
          env: [{name: POSTGRES_DB, value: temporal}]
          envFrom: [{configMapRef: {name: postgres-config}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: postgres-config}
data: {PGDATA: /data}
`},
		set:     []string{"RELINK_ENV_MADE_UP", "RELINK_CONFIGMAP_MADE_UP", "QUILTT_SECRET_MADE_UP", "RELINK_CRON_MADE_UP"},
		read:    []string{"QUILTT_API_SECRET", "TEMPORAL_NAMESPACE", "QUILTT_WEBHOOK_SECRET"},
		ignored: []string{"BUSYBOX_MADE_UP", "POSTGRES_DB", "PGDATA", "WEBHOOK_SECRET", "temporal.toml"},
	}, {
		name: "kubernetes envFrom a ConfigMap the examples lack",
		files: map[string]string{"k8s.yaml": `
apiVersion: batch/v1
kind: Job
metadata: {name: relink-setup}
spec:
  template:
    spec:
      containers:
        - name: setup
          image: ghcr.io/relink-dev/relink:latest
          envFrom:
            - configMapRef: {name: absent}
            - secretRef: {name: optional-absent, optional: true}
`},
		errs: []string{`ConfigMap "absent"`},
	}, {
		name: "Dockerfile ENV of the final stage",
		files: map[string]string{"Dockerfile": `
FROM golang:1.26 AS build
ENV GOFLAGS=-trimpath
FROM gcr.io/distroless/static-debian12:nonroot
ENV RELINK_LOG_FORMAT=json RELINK_DOCKER_MADE_UP="a b" \
    RELINK_CONTINUED_MADE_UP=1
env RELINK_LEGACY_MADE_UP value with spaces
`},
		set:     []string{"RELINK_DOCKER_MADE_UP", "RELINK_CONTINUED_MADE_UP", "RELINK_LEGACY_MADE_UP"},
		read:    []string{"RELINK_LOG_FORMAT"},
		ignored: []string{"GOFLAGS", "a", "b"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			scan := newDeployScan()
			for _, name := range sortedKeys(tc.files) {
				require.NoError(t, scan.add(name, []byte(tc.files[name])))
			}
			scan.finish()
			for _, name := range tc.set {
				if assert.Contains(t, scan.vars, name) {
					assert.False(t, reads(name), "%s must be flagged", name)
				}
			}
			for _, name := range tc.read {
				if assert.Contains(t, scan.vars, name) {
					assert.True(t, reads(name), "%s is Relink's", name)
				}
			}
			for _, name := range tc.ignored {
				assert.NotContains(t, scan.vars, name)
			}
			assert.Len(t, scan.errs, len(tc.errs), "%v", scan.errs)
			for i, want := range tc.errs {
				if i < len(scan.errs) {
					assert.Contains(t, scan.errs[i], want)
				}
			}
		})
	}
}

// relinkReads reports whether Relink reads a variable: Config's fields and
// the providers' settings,
// the Temporal connection's (names ending in _ are prefixes), RELINK_URL.
func relinkReads(t *testing.T) func(string) bool {
	code := configEnv()
	names := map[string]bool{"RELINK_URL": true}
	for name := range code {
		names[name] = true
	}
	var prefixes []string
	for _, name := range temporalVariables(t) {
		if strings.HasSuffix(name, "_") {
			prefixes = append(prefixes, name)
		} else {
			names[name] = true
		}
	}
	require.Contains(t, prefixes, "TEMPORAL_GRPC_META_")
	return func(name string) bool {
		if names[name] {
			return true
		}
		for _, p := range prefixes {
			if strings.HasPrefix(name, p) && len(name) > len(p) {
				return true
			}
		}
		return false
	}
}

func deployFile(p string) bool {
	return strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml") || strings.HasSuffix(p, ".env.example")
}

// deployScan collects the variables the examples set for Relink's
// containers, with where each is set.
type deployScan struct {
	vars       map[string][]string // name → places
	sources    map[string]int      // kind of example → variables found
	containers map[string][]string // "compose", "kubernetes" → Relink's containers
	errs       []string

	files      map[string]bool
	envFiles   []envFileRef
	objects    []k8sObject
	envFromRef []k8sEnvFrom
}

type envFileRef struct{ from, path string }

type k8sObject struct {
	file, kind, name string
	doc              map[string]any
}

type k8sEnvFrom struct {
	from, kind, name, prefix string
	optional                 bool
}

func newDeployScan() *deployScan {
	return &deployScan{
		vars:       map[string][]string{},
		sources:    map[string]int{},
		containers: map[string][]string{},
		files:      map[string]bool{},
	}
}

func (s *deployScan) set(name, source, where string) {
	s.vars[name] = append(s.vars[name], where)
	s.sources[source]++
}

func (s *deployScan) errorf(format string, args ...any) {
	s.errs = append(s.errs, fmt.Sprintf(format, args...))
}

// add scans one file by its name: a Dockerfile, an env-file example, or
// YAML (compose files have services, Kubernetes objects a kind).
func (s *deployScan) add(file string, data []byte) error {
	s.files[file] = true
	switch base := path.Base(file); {
	case base == "Dockerfile":
		s.dockerfile(file, data)
		return nil
	case strings.HasSuffix(base, ".env.example"):
		s.envFile(file, data)
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		if services, ok := doc["services"].(map[string]any); ok {
			s.compose(file, services)
		} else if kind, ok := doc["kind"].(string); ok {
			name, _ := dig(doc, "metadata", "name").(string)
			s.objects = append(s.objects, k8sObject{file: file, kind: kind, name: name, doc: doc})
		}
	}
}

// relinkImage reports whether an image reference names Relink's image
// (any registry, tag or digest): ghcr.io/relink-dev/relink:latest,
// relink:compose.
func relinkImage(ref string) bool {
	ref, _, _ = strings.Cut(ref, "@")
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref = ref[:i]
	}
	return path.Base(ref) == "relink"
}

func (s *deployScan) compose(file string, services map[string]any) {
	for _, name := range sortedKeys(services) {
		svc, _ := services[name].(map[string]any)
		image, _ := svc["image"].(string)
		if _, built := svc["build"]; !built && !relinkImage(image) {
			continue
		}
		where := fmt.Sprintf("%s: service %s", file, name)
		s.containers["compose"] = append(s.containers["compose"], where)
		switch env := svc["environment"].(type) {
		case map[string]any:
			for _, k := range sortedKeys(env) {
				s.set(k, "compose", where)
			}
		case []any:
			for _, item := range env {
				k, _, _ := strings.Cut(fmt.Sprint(item), "=")
				s.set(k, "compose", where)
			}
		}
		var envFiles []any
		switch f := svc["env_file"].(type) {
		case string:
			envFiles = []any{f}
		case []any:
			envFiles = f
		}
		for _, f := range envFiles {
			if m, ok := f.(map[string]any); ok {
				f = m["path"]
			}
			if p, ok := f.(string); ok {
				s.envFiles = append(s.envFiles, envFileRef{from: where, path: path.Join(path.Dir(file), p)})
			}
		}
	}
}

var (
	envAssignment          = regexp.MustCompile(`^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*(?:=|$)`)
	commentedEnvAssignment = regexp.MustCompile(`^#\s*(?:export\s+)?([A-Z][A-Z0-9_]*)=`)
)

// envFile reads NAME=value lines, and commented-out ones (# NAME=value),
// which the reader is invited to uncomment.
func (s *deployScan) envFile(file string, data []byte) {
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		where := fmt.Sprintf("%s:%d", file, i+1)
		if m := commentedEnvAssignment.FindStringSubmatch(line); m != nil {
			s.set(m[1], "env file", where+" (commented out)")
		} else if line == "" || strings.HasPrefix(line, "#") {
			continue
		} else if m := envAssignment.FindStringSubmatch(line); m != nil {
			s.set(m[1], "env file", where)
		} else {
			s.errorf("%s: not NAME=value: %q", where, line)
		}
	}
}

// dockerfile reads the ENV instructions of the final stage (the image's
// environment; a build stage's are the build's).
func (s *deployScan) dockerfile(file string, data []byte) {
	var instructions []string
	var cur strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cont, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(trimmed)
		instructions = append(instructions, cur.String())
		cur.Reset()
	}
	var env [][]string
	for _, ins := range instructions {
		word, rest, _ := strings.Cut(ins, " ")
		switch strings.ToUpper(word) {
		case "FROM":
			env = nil
		case "ENV":
			env = append(env, shellFields(rest))
		}
	}
	for _, fields := range env {
		if len(fields) > 0 && !strings.Contains(fields[0], "=") {
			fields = fields[:1] // ENV NAME value with spaces
		}
		for _, f := range fields {
			name, _, _ := strings.Cut(f, "=")
			s.set(name, "Dockerfile", file+": ENV")
		}
	}
}

// shellFields splits on spaces outside quotes (enough for ENV lines).
func shellFields(s string) []string {
	var fields []string
	var cur strings.Builder
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote == 0 && (r == '"' || r == '\''):
			quote = r
		case quote == 0 && (r == ' ' || r == '\t'):
			if cur.Len() > 0 {
				fields = append(fields, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		fields = append(fields, cur.String())
	}
	return fields
}

var envVarName = regexp.MustCompile(`^[A-Z][A-Z0-9_]+$`)

// finish resolves what needs every file: Kubernetes workloads running
// Relink's image, their env and the ConfigMaps and Secrets they envFrom,
// and compose env files' committed examples.
func (s *deployScan) finish() {
	for _, o := range s.objects {
		for _, c := range podContainers(o) {
			image, _ := c["image"].(string)
			if !relinkImage(image) {
				continue
			}
			cname, _ := c["name"].(string)
			where := fmt.Sprintf("%s: %s %s, container %s", o.file, o.kind, o.name, cname)
			s.containers["kubernetes"] = append(s.containers["kubernetes"], where)
			env, _ := c["env"].([]any)
			for _, e := range env {
				if name, ok := dig(e, "name").(string); ok {
					s.set(name, "kubernetes env", where)
				}
			}
			envFrom, _ := c["envFrom"].([]any)
			for _, e := range envFrom {
				prefix, _ := dig(e, "prefix").(string)
				for kind, ref := range map[string]string{"ConfigMap": "configMapRef", "Secret": "secretRef"} {
					if name, ok := dig(e, ref, "name").(string); ok {
						optional, _ := dig(e, ref, "optional").(bool)
						s.envFromRef = append(s.envFromRef, k8sEnvFrom{from: where, kind: kind, name: name, prefix: prefix, optional: optional})
					}
				}
			}
		}
	}
	for _, ref := range s.envFromRef {
		found := false
		for _, o := range s.objects {
			if o.kind != ref.kind || o.name != ref.name {
				continue
			}
			found = true
			for _, field := range []string{"data", "stringData"} {
				data, _ := o.doc[field].(map[string]any)
				for _, k := range sortedKeys(data) {
					if envVarName.MatchString(k) {
						s.set(ref.prefix+k, ref.kind, fmt.Sprintf("%s: %s %s (envFrom of %s)", o.file, o.kind, o.name, ref.from))
					}
				}
			}
		}
		if !found && !ref.optional {
			s.errorf("%s: envFrom %s %q, which no example defines: its variables go unchecked", ref.from, ref.kind, ref.name)
		}
	}
	for _, f := range s.envFiles {
		if !s.files[f.path+".example"] {
			s.errorf("%s: env_file %s has no committed %s.example to check", f.from, f.path, path.Base(f.path))
		}
	}
}

// podContainers are the containers and init containers of a workload's
// pod template (or a Pod's).
func podContainers(o k8sObject) []map[string]any {
	var spec any
	switch o.kind {
	case "Pod":
		spec = dig(o.doc, "spec")
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job":
		spec = dig(o.doc, "spec", "template", "spec")
	case "CronJob":
		spec = dig(o.doc, "spec", "jobTemplate", "spec", "template", "spec")
	}
	var out []map[string]any
	for _, field := range []string{"initContainers", "containers"} {
		list, _ := dig(spec, field).([]any)
		for _, c := range list {
			if m, ok := c.(map[string]any); ok {
				out = append(out, m)
			}
		}
	}
	return out
}

// dig follows map keys through decoded YAML; nil where one is missing.
func dig(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// sortedKeys is keys for maps of any values.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
