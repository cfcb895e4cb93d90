package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"kbbot/config"
)

// Tests run with the package directory (deploy/) as working directory; the
// repository root, which is also the Docker build context, is "..".
const repoRoot = ".."

// configVars returns the names of every variable kbbot reads (config.Vars,
// the table the README is generated from) and of the secret ones.
func configVars() (all, secret []string) {
	for _, v := range config.Vars() {
		all = append(all, v.Name)
		if v.Secret {
			secret = append(secret, v.Name)
		}
	}
	return all, secret
}

type yamlDoc struct {
	file  string // slash-separated, relative to deploy/
	index int    // position in a multi-document file
	m     map[string]any
}

func (d yamlDoc) String() string { return fmt.Sprintf("%s[%d]", d.file, d.index) }

// loadYAML parses every *.yml / *.yaml under deploy/, all documents of each.
func loadYAML(t *testing.T) []yamlDoc {
	t.Helper()
	var docs []yamlDoc
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if ext := filepath.Ext(path); ext != ".yml" && ext != ".yaml" {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		file := filepath.ToSlash(path)
		dec := yaml.NewDecoder(bytes.NewReader(data))
		n := 0
		for i := 0; ; i++ {
			var node yaml.Node
			err := dec.Decode(&node)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("%s: document %d: %w", file, i, err)
			}
			if len(node.Content) == 0 || (node.Content[0].Kind == yaml.ScalarNode && node.Content[0].Tag == "!!null") {
				continue // empty document, e.g. after a trailing "---"
			}
			if node.Content[0].Kind != yaml.MappingNode {
				return fmt.Errorf("%s: document %d: top level is not a mapping", file, i)
			}
			var m map[string]any
			if err := node.Decode(&m); err != nil {
				return fmt.Errorf("%s: document %d: %w", file, i, err)
			}
			docs = append(docs, yamlDoc{file: file, index: i, m: m})
			n++
		}
		if n == 0 {
			return fmt.Errorf("%s: no YAML documents", file)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) == 0 {
		t.Fatal("no YAML files found under deploy/")
	}
	return docs
}

// get walks nested mappings and sequences: string keys index mappings, int
// keys index sequences. It returns nil when any step is missing.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			s, ok := v.([]any)
			if !ok || k < 0 || k >= len(s) {
				return nil
			}
			v = s[k]
		default:
			panic(fmt.Sprintf("bad path element %T", p))
		}
	}
	return v
}

func getString(v any, path ...any) string {
	s, _ := get(v, path...).(string)
	return s
}

func getMap(v any, path ...any) map[string]any {
	m, _ := get(v, path...).(map[string]any)
	return m
}

func getList(v any, path ...any) []any {
	s, _ := get(v, path...).([]any)
	return s
}

func stringList(v any) []string {
	var out []string
	for _, e := range getList(v) {
		s, ok := e.(string)
		if !ok {
			return nil
		}
		out = append(out, s)
	}
	return out
}

func isK8s(d yamlDoc) bool { return strings.HasPrefix(d.file, "k8s/") }

func k8sByKind(t *testing.T, docs []yamlDoc, kind string) []yamlDoc {
	t.Helper()
	var out []yamlDoc
	for _, d := range docs {
		if isK8s(d) && getString(d.m, "kind") == kind {
			out = append(out, d)
		}
	}
	return out
}

func TestYAMLParses(t *testing.T) {
	docs := loadYAML(t)
	files := map[string]bool{}
	for _, d := range docs {
		files[d.file] = true
	}
	for _, want := range []string{
		"docker-compose.yml",
		"k8s/configmap.yaml", "k8s/secret.example.yaml", "k8s/deployment.yaml",
		"k8s/service.yaml", "k8s/ingest-job.yaml", "k8s/kustomization.yaml",
	} {
		if !files[want] {
			t.Errorf("%s missing or empty", want)
		}
	}
}

func composeDoc(t *testing.T) map[string]any {
	t.Helper()
	for _, d := range loadYAML(t) {
		if d.file == "docker-compose.yml" {
			return d.m
		}
	}
	t.Fatal("docker-compose.yml not found")
	return nil
}

func TestCompose(t *testing.T) {
	c := composeDoc(t)
	services := getMap(c, "services")
	for _, name := range []string{"bot", "redis", "qdrant"} {
		svc := getMap(services, name)
		if svc == nil {
			t.Errorf("compose: service %q missing", name)
			continue
		}
		if test := getList(svc, "healthcheck", "test"); len(test) < 2 {
			t.Errorf("compose: service %q has no healthcheck test", name)
		}
	}

	bot := getMap(services, "bot")
	for _, dep := range []string{"redis", "qdrant"} {
		if got := getString(bot, "depends_on", dep, "condition"); got != "service_healthy" {
			t.Errorf("compose: bot depends_on %s condition = %q, want service_healthy", dep, got)
		}
	}
	if got, want := stringList(get(bot, "healthcheck", "test")), []string{"CMD", "/app/kbbot", "healthcheck"}; !slices.Equal(got, want) {
		t.Errorf("compose: bot healthcheck test = %q, want %q", got, want)
	}
	ctx, dockerfile := getString(bot, "build", "context"), getString(bot, "build", "dockerfile")
	if ctx != ".." || dockerfile != "deploy/Dockerfile" {
		t.Errorf("compose: bot build = {context: %q, dockerfile: %q}, want {.., deploy/Dockerfile}", ctx, dockerfile)
	}
	if _, err := os.Stat(filepath.Join(ctx, filepath.FromSlash(dockerfile))); err != nil {
		t.Errorf("compose: bot dockerfile: %v", err)
	}
	if !hasPort(bot, "8080") {
		t.Errorf("compose: bot does not publish port 8080")
	}
	if got := getString(bot, "env_file"); got != "kbbot.env" {
		t.Errorf("compose: bot env_file = %q, want kbbot.env", got)
	}

	ingest := getMap(services, "ingest")
	if ingest == nil {
		t.Fatal("compose: service ingest missing")
	}
	if cmd := stringList(get(ingest, "command")); len(cmd) == 0 || cmd[0] != "ingest" {
		t.Errorf("compose: ingest command = %q, want [ingest ...]", cmd)
	}
	if !slices.Contains(stringList(get(ingest, "profiles")), "tools") {
		t.Errorf("compose: ingest is not in profile tools")
	}
	if getString(ingest, "image") != getString(bot, "image") {
		t.Errorf("compose: ingest image %q differs from bot image %q", getString(ingest, "image"), getString(bot, "image"))
	}

	for _, name := range []string{"bot", "ingest"} {
		env := getMap(services, name, "environment")
		if got := env["REDIS_URL"]; got != "redis://redis:6379/0" {
			t.Errorf("compose: %s REDIS_URL = %v", name, got)
		}
		if got := env["QDRANT_URL"]; got != "http://qdrant:6334" {
			t.Errorf("compose: %s QDRANT_URL = %v", name, got)
		}
	}

	redisCmd := strings.Join(stringList(get(services, "redis", "command")), " ")
	for _, want := range []string{"--appendonly yes", "--appendfsync everysec"} {
		if !strings.Contains(redisCmd, want) {
			t.Errorf("compose: redis command %q lacks %q", redisCmd, want)
		}
	}
	if img := getString(services, "qdrant", "image"); !regexp.MustCompile(`^qdrant/qdrant:v\d+\.\d+\.\d+$`).MatchString(img) {
		t.Errorf("compose: qdrant image %q is not pinned to a release tag", img)
	}
	for _, p := range []string{"6333", "6334"} {
		if !hasPort(getMap(services, "qdrant"), p) {
			t.Errorf("compose: qdrant does not publish port %s", p)
		}
	}

	// Every named volume a service mounts is declared.
	declared := getMap(c, "volumes")
	for name, svc := range services {
		for _, v := range stringList(get(svc, "volumes")) {
			src, _, ok := strings.Cut(v, ":")
			if ok && !strings.ContainsAny(src, "./") {
				if _, ok := declared[src]; !ok {
					t.Errorf("compose: service %s mounts undeclared volume %q", name, src)
				}
			}
		}
	}
}

func hasPort(svc map[string]any, port string) bool {
	for _, p := range stringList(get(svc, "ports")) {
		if strings.HasSuffix(p, ":"+port) || p == port {
			return true
		}
	}
	return false
}

func TestK8sDocsHaveIdentity(t *testing.T) {
	for _, d := range loadYAML(t) {
		if !isK8s(d) {
			continue
		}
		if getString(d.m, "apiVersion") == "" || getString(d.m, "kind") == "" {
			t.Errorf("%s: apiVersion or kind missing", d)
		}
		if getString(d.m, "kind") == "Kustomization" {
			continue
		}
		if getString(d.m, "metadata", "name") == "" {
			t.Errorf("%s: metadata.name missing", d)
		}
		if ns := getString(d.m, "metadata", "namespace"); ns != "" {
			t.Errorf("%s: metadata.namespace = %q; manifests must be namespace-less", d, ns)
		}
	}
}

func TestK8sDeployment(t *testing.T) {
	docs := loadYAML(t)
	deps := k8sByKind(t, docs, "Deployment")
	if len(deps) != 1 {
		t.Fatalf("want exactly one Deployment, found %d", len(deps))
	}
	d := deps[0].m
	if r, _ := get(d, "spec", "replicas").(int); r < 2 {
		t.Errorf("Deployment replicas = %v, want >= 2", get(d, "spec", "replicas"))
	}
	pod := getMap(d, "spec", "template", "spec")
	containers := getList(pod, "containers")
	if len(containers) == 0 {
		t.Fatal("Deployment has no containers")
	}
	c := containers[0]
	if got := getString(c, "readinessProbe", "httpGet", "path"); got != "/readyz" {
		t.Errorf("readinessProbe path = %q, want /readyz", got)
	}
	if got := getString(c, "livenessProbe", "httpGet", "path"); got != "/healthz" {
		t.Errorf("livenessProbe path = %q, want /healthz", got)
	}
	if get(pod, "securityContext", "runAsNonRoot") != true && get(c, "securityContext", "runAsNonRoot") != true {
		t.Error("runAsNonRoot is not set")
	}
	if get(c, "securityContext", "readOnlyRootFilesystem") != true {
		t.Error("readOnlyRootFilesystem is not set")
	}
	if got, _ := get(pod, "terminationGracePeriodSeconds").(int); got != 30 {
		t.Errorf("terminationGracePeriodSeconds = %v, want 30", get(pod, "terminationGracePeriodSeconds"))
	}
	if getMap(c, "resources", "requests") == nil || getMap(c, "resources", "limits") == nil {
		t.Error("container resources requests/limits missing")
	}

	// /data is a writable emptyDir.
	dataVol := ""
	for _, m := range getList(c, "volumeMounts") {
		if getString(m, "mountPath") == "/data" {
			dataVol = getString(m, "name")
		}
	}
	found := false
	for _, v := range getList(pod, "volumes") {
		if getString(v, "name") == dataVol && get(v, "emptyDir") != nil {
			found = true
		}
	}
	if dataVol == "" || !found {
		t.Error("no emptyDir volume mounted at /data")
	}

	ann := getMap(d, "spec", "template", "metadata", "annotations")
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/path"] != "/metrics" || ann["prometheus.io/port"] != "8080" {
		t.Errorf("Prometheus scrape annotations = %v", ann)
	}

	// The selector matches the pod labels, and the Service selects the pods.
	labels := getMap(d, "spec", "template", "metadata", "labels")
	for k, v := range getMap(d, "spec", "selector", "matchLabels") {
		if labels[k] != v {
			t.Errorf("Deployment selector %s=%v does not match pod labels %v", k, v, labels)
		}
	}
	svcs := k8sByKind(t, docs, "Service")
	if len(svcs) != 1 {
		t.Fatalf("want exactly one Service, found %d", len(svcs))
	}
	for k, v := range getMap(svcs[0].m, "spec", "selector") {
		if labels[k] != v {
			t.Errorf("Service selector %s=%v does not match pod labels %v", k, v, labels)
		}
	}
	if tp := get(svcs[0].m, "spec", "ports", 0, "targetPort"); tp != "http" && tp != 8080 {
		t.Errorf("Service targetPort = %v, want http or 8080", tp)
	}

	checkEnvFrom(t, docs, "Deployment", c)
}

func TestK8sIngestJob(t *testing.T) {
	docs := loadYAML(t)
	jobs := k8sByKind(t, docs, "Job")
	if len(jobs) != 1 {
		t.Fatalf("want exactly one Job, found %d", len(jobs))
	}
	pod := getMap(jobs[0].m, "spec", "template", "spec")
	c := get(pod, "containers", 0)
	cmd := append(stringList(get(c, "command")), stringList(get(c, "args"))...)
	if want := []string{"/app/kbbot", "ingest", "/app/seeds"}; !slices.Equal(cmd, want) {
		t.Errorf("Job command+args = %q, want %q", cmd, want)
	}
	if rp := getString(pod, "restartPolicy"); rp != "Never" && rp != "OnFailure" {
		t.Errorf("Job restartPolicy = %q", rp)
	}
	if get(pod, "securityContext", "runAsNonRoot") != true && get(c, "securityContext", "runAsNonRoot") != true {
		t.Error("Job: runAsNonRoot is not set")
	}
	checkEnvFrom(t, docs, "Job", c)
}

// checkEnvFrom verifies that a container takes its environment from the
// ConfigMap and the Secret defined in deploy/k8s.
func checkEnvFrom(t *testing.T, docs []yamlDoc, what string, container any) {
	t.Helper()
	cms, secrets := k8sByKind(t, docs, "ConfigMap"), k8sByKind(t, docs, "Secret")
	if len(cms) != 1 || len(secrets) != 1 {
		t.Fatalf("want one ConfigMap and one Secret, found %d and %d", len(cms), len(secrets))
	}
	var cmRef, secretRef string
	for _, e := range getList(container, "envFrom") {
		if n := getString(e, "configMapRef", "name"); n != "" {
			cmRef = n
		}
		if n := getString(e, "secretRef", "name"); n != "" {
			secretRef = n
		}
	}
	if want := getString(cms[0].m, "metadata", "name"); cmRef != want {
		t.Errorf("%s: envFrom configMapRef = %q, want %q", what, cmRef, want)
	}
	if want := getString(secrets[0].m, "metadata", "name"); secretRef != want {
		t.Errorf("%s: envFrom secretRef = %q, want %q", what, secretRef, want)
	}
}

func TestKustomization(t *testing.T) {
	docs := loadYAML(t)
	ks := k8sByKind(t, docs, "Kustomization")
	if len(ks) != 1 {
		t.Fatalf("want exactly one Kustomization, found %d", len(ks))
	}
	listed := stringList(get(ks[0].m, "resources"))
	for _, r := range listed {
		if _, err := os.Stat(filepath.Join("k8s", filepath.FromSlash(r))); err != nil {
			t.Errorf("kustomization resource %s: %v", r, err)
		}
	}
	// Every manifest is listed, except the Secret template, which must not
	// be applied (it would overwrite real secrets with placeholders).
	seen := map[string]bool{}
	for _, d := range docs {
		if !isK8s(d) || seen[d.file] {
			continue
		}
		seen[d.file] = true
		rel := strings.TrimPrefix(d.file, "k8s/")
		switch rel {
		case "kustomization.yaml", "secret.example.yaml":
			if slices.Contains(listed, rel) {
				t.Errorf("kustomization must not list %s", rel)
			}
		default:
			if !slices.Contains(listed, rel) {
				t.Errorf("kustomization does not list %s", rel)
			}
		}
	}
}

// envExample returns the variable names of kbbot.env.example, in order.
func envExample(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("kbbot.env.example")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line := regexp.MustCompile(`^([A-Z][A-Z0-9_]*)=(\S*)$`)
	var names []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		s := sc.Text()
		if strings.TrimSpace(s) == "" || strings.HasPrefix(s, "#") {
			continue
		}
		m := line.FindStringSubmatch(s)
		if m == nil {
			t.Errorf("kbbot.env.example:%d: not KEY=value without spaces: %q", n, s)
			continue
		}
		if slices.Contains(names, m[1]) {
			t.Errorf("kbbot.env.example:%d: %s set twice", n, m[1])
		}
		if strings.ContainsAny(m[2], `"'`) {
			t.Errorf("kbbot.env.example:%d: quotes are taken literally by env_file", n)
		}
		names = append(names, m[1])
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

func TestEnvExample(t *testing.T) {
	names := envExample(t)
	all, _ := configVars()
	for _, want := range all {
		if !slices.Contains(names, want) {
			t.Errorf("kbbot.env.example does not set %s (config.Vars has it)", want)
		}
	}
	for _, name := range names {
		if !slices.Contains(all, name) {
			t.Errorf("kbbot.env.example sets %s, which config.Vars does not know", name)
		}
	}
	// Each variable is preceded by a comment line.
	data, err := os.ReadFile("kbbot.env.example")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		if i > 0 && regexp.MustCompile(`^[A-Z][A-Z0-9_]*=`).MatchString(l) && !strings.HasPrefix(lines[i-1], "#") {
			t.Errorf("kbbot.env.example:%d: %s has no comment above it", i+1, l)
		}
	}
}

// TestK8sEnvMatchesExample checks that the ConfigMap and the Secret together
// set exactly the variables of kbbot.env.example, the secret ones (as marked
// in config.Vars) in the Secret and only there.
func TestK8sEnvMatchesExample(t *testing.T) {
	docs := loadYAML(t)
	cms, secrets := k8sByKind(t, docs, "ConfigMap"), k8sByKind(t, docs, "Secret")
	if len(cms) != 1 || len(secrets) != 1 {
		t.Fatalf("want one ConfigMap and one Secret, found %d and %d", len(cms), len(secrets))
	}
	_, secretVars := configVars()
	cm, sec := getMap(cms[0].m, "data"), getMap(secrets[0].m, "stringData")
	for k, v := range cm {
		if _, ok := v.(string); !ok {
			t.Errorf("ConfigMap %s: value %v is not a string (quote it)", k, v)
		}
		if slices.Contains(secretVars, k) {
			t.Errorf("ConfigMap holds secret %s; move it to the Secret", k)
		}
	}
	for k, v := range sec {
		if _, ok := v.(string); !ok {
			t.Errorf("Secret %s: value %v is not a string (quote it)", k, v)
		}
		if !slices.Contains(secretVars, k) {
			t.Errorf("Secret holds %s, which config.Vars does not mark secret; move it to the ConfigMap", k)
		}
	}
	for _, k := range secretVars {
		if _, ok := sec[k]; !ok {
			t.Errorf("Secret stringData lacks %s", k)
		}
	}
	var k8s []string
	for k := range cm {
		k8s = append(k8s, k)
	}
	for k := range sec {
		k8s = append(k8s, k)
	}
	example := envExample(t)
	sort.Strings(k8s)
	sort.Strings(example)
	if !slices.Equal(k8s, example) {
		t.Errorf("ConfigMap+Secret keys\n  %q\ndiffer from kbbot.env.example\n  %q", k8s, example)
	}
}

// dockerfileInstructions returns the Dockerfile's instructions with line
// continuations joined and comments dropped.
func dockerfileInstructions(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var cur strings.Builder
	for _, l := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(l)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\"))
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(trimmed)
		if s := strings.TrimSpace(cur.String()); s != "" {
			out = append(out, s)
		}
		cur.Reset()
	}
	return out
}

func TestDockerfile(t *testing.T) {
	ins := dockerfileInstructions(t)
	var froms, builds []string
	has := func(prefix string) bool {
		return slices.ContainsFunc(ins, func(s string) bool { return s == prefix })
	}
	for _, s := range ins {
		switch {
		case strings.HasPrefix(s, "FROM "):
			froms = append(froms, s)
		case strings.HasPrefix(s, "RUN ") && strings.Contains(s, "go build"):
			builds = append(builds, s)
		}
	}
	if len(froms) < 2 {
		t.Fatalf("want a multi-stage build, found FROM lines %q", froms)
	}
	if !strings.Contains(froms[0], "golang:1.26-bookworm") {
		t.Errorf("builder stage = %q, want golang:1.26-bookworm", froms[0])
	}
	if last := froms[len(froms)-1]; !strings.Contains(last, "gcr.io/distroless/static-debian12:nonroot") {
		t.Errorf("final stage = %q, want gcr.io/distroless/static-debian12:nonroot", last)
	}
	if len(builds) != 1 {
		t.Fatalf("want one go build, found %q", builds)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-o /out/kbbot", "./cmd/kbbot"} {
		if !strings.Contains(builds[0], want) {
			t.Errorf("build line %q lacks %q", builds[0], want)
		}
	}
	for _, want := range []string{
		"WORKDIR /app",
		`ENTRYPOINT ["/app/kbbot"]`,
		`CMD ["serve"]`,
		"EXPOSE 8080",
		"USER 65532:65532",
	} {
		if !has(want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if !slices.ContainsFunc(ins, func(s string) bool {
		return strings.HasPrefix(s, "ENV ") && strings.Contains(s, "KBBOT_DATA_DIR=/data")
	}) {
		t.Error("Dockerfile does not set KBBOT_DATA_DIR=/data")
	}

	// COPY sources from the build context exist in the repository, and the
	// seeds end up in /app/seeds.
	seeds := false
	for _, s := range ins {
		if !strings.HasPrefix(s, "COPY ") || strings.Contains(s, "--from=") {
			continue
		}
		f := strings.Fields(s)[1:]
		for len(f) > 0 && strings.HasPrefix(f[0], "--") {
			f = f[1:]
		}
		if len(f) < 2 {
			t.Errorf("bad COPY: %q", s)
			continue
		}
		for _, src := range f[:len(f)-1] {
			if _, err := os.Stat(filepath.Join(repoRoot, filepath.FromSlash(src))); err != nil {
				t.Errorf("COPY source %s: %v", src, err)
			}
		}
		if f[0] == "seeds/" && f[len(f)-1] == "/app/seeds/" {
			seeds = true
		}
	}
	if !seeds {
		t.Error("Dockerfile does not copy seeds/ to /app/seeds/")
	}
}

func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile("Dockerfile.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for _, want := range []string{".git", "deploy/kbbot.env", "deploy/k8s/secret.yaml"} {
		if !slices.Contains(lines, want) {
			t.Errorf("Dockerfile.dockerignore does not exclude %s", want)
		}
	}
	for _, must := range []string{"go.mod", "go.sum", "seeds", "cmd", "seeds/", "cmd/"} {
		if slices.Contains(lines, must) {
			t.Errorf("Dockerfile.dockerignore excludes %s, which the build needs", must)
		}
	}
}

// TestDockerfileBuildCommand runs the Dockerfile's go build (same package,
// same flags) on the current tree.
func TestDockerfileBuildCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not in PATH")
	}
	out := filepath.Join(t.TempDir(), "kbbot")
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd/kbbot")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' ./cmd/kbbot: %v\n%s", err, b)
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() == 0 {
		t.Fatalf("no binary produced: %v", err)
	}
}

func TestEnvExampleDocumentedInREADME(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if errors.Is(err, fs.ErrNotExist) {
		t.Skip("README.md does not exist yet")
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range envExample(t) {
		if !regexp.MustCompile(`\b` + regexp.QuoteMeta(name) + `\b`).Match(data) {
			t.Errorf("README.md does not mention %s", name)
		}
	}
}
