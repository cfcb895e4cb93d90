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
		"k8s/pdb.yaml", "k8s/networkpolicy.yaml",
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
		if got, _ := env["REDIS_URL"].(string); !regexp.MustCompile(`^redis://:\$\{REDIS_PASSWORD:\?[^}]+\}@redis:6379/0$`).MatchString(got) {
			t.Errorf("compose: %s REDIS_URL = %q, want redis://:${REDIS_PASSWORD:?…}@redis:6379/0", name, got)
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

// composePort is one published port of a compose service: its host
// address ("" is every interface) and the host and container ports.
type composePort struct{ hostIP, published, target string }

// composePorts reads both compose port syntaxes: "[[ip:]host:]container"
// strings and long-form maps.
func composePorts(t *testing.T, svc map[string]any) []composePort {
	t.Helper()
	var out []composePort
	for _, p := range getList(svc, "ports") {
		switch p := p.(type) {
		case string:
			parts := strings.Split(strings.TrimSuffix(strings.TrimSuffix(p, "/tcp"), "/udp"), ":")
			switch len(parts) {
			case 1: // a container port alone: a random host port on every interface
				out = append(out, composePort{target: parts[0]})
			case 2:
				out = append(out, composePort{published: parts[0], target: parts[1]})
			default:
				n := len(parts)
				out = append(out, composePort{hostIP: strings.Join(parts[:n-2], ":"), published: parts[n-2], target: parts[n-1]})
			}
		case int:
			out = append(out, composePort{target: fmt.Sprint(p)})
		case map[string]any:
			out = append(out, composePort{hostIP: getString(p, "host_ip"), published: fmt.Sprint(get(p, "published")), target: fmt.Sprint(get(p, "target"))})
		default:
			t.Errorf("compose: port %v of an unknown form", p)
		}
	}
	return out
}

// Nothing but the bot's webhook is published on every host interface:
// Qdrant and Redis have their data, the admin port /metrics.
func TestComposePublishesOnlyTheWebhook(t *testing.T) {
	services := getMap(composeDoc(t), "services")
	webhook := false
	for name := range services {
		for _, p := range composePorts(t, getMap(services, name)) {
			public := p.hostIP == "" || p.hostIP == "0.0.0.0" || p.hostIP == "::" || p.hostIP == "[::]"
			if name == "bot" && p.target == "8080" {
				webhook = true
				continue
			}
			if public {
				t.Errorf("compose: %s publishes %s on every interface (%+v); bind it to 127.0.0.1 or drop it", name, p.target, p)
			} else if p.hostIP != "127.0.0.1" && p.hostIP != "[::1]" && p.hostIP != "::1" {
				t.Errorf("compose: %s publishes %s on %s, want 127.0.0.1", name, p.target, p.hostIP)
			}
		}
	}
	if !webhook {
		t.Error("compose: the bot's webhook port 8080 is not published")
	}
	if got := getString(services, "bot", "environment", "KBBOT_ADMIN_ADDR"); got != ":9090" {
		t.Errorf("compose: bot KBBOT_ADMIN_ADDR = %q, want :9090 (inside the container; published on loopback)", got)
	}
}

// required is compose's ${NAME:?message}: interpolation fails loudly when
// NAME is unset or empty.
func required(name string) *regexp.Regexp {
	return regexp.MustCompile(`\$\{` + name + `:\?[^}]+\}`)
}

// Qdrant runs with an API key and the bot and the ingest tool use it;
// Redis with a password (the one in their REDIS_URL) and noeviction; both
// from kbbot.env.
func TestComposeCredentials(t *testing.T) {
	services := getMap(composeDoc(t), "services")
	if got := getString(services, "qdrant", "environment", "QDRANT__SERVICE__API_KEY"); !required("QDRANT_API_KEY").MatchString(got) {
		t.Errorf("compose: qdrant QDRANT__SERVICE__API_KEY = %q, want ${QDRANT_API_KEY:?…}", got)
	}
	for _, name := range []string{"bot", "ingest"} {
		if got := getString(services, name, "environment", "QDRANT_API_KEY"); !required("QDRANT_API_KEY").MatchString(got) {
			t.Errorf("compose: %s QDRANT_API_KEY = %q, want ${QDRANT_API_KEY:?…}", name, got)
		}
	}

	cmd := stringList(get(services, "redis", "command"))
	arg := func(flag string) string {
		if i := slices.Index(cmd, flag); i >= 0 && i+1 < len(cmd) {
			return cmd[i+1]
		}
		return ""
	}
	if !required("REDIS_PASSWORD").MatchString(arg("--requirepass")) {
		t.Errorf("compose: redis --requirepass %q, want ${REDIS_PASSWORD:?…} (command %q)", arg("--requirepass"), cmd)
	}
	if arg("--maxmemory") == "" || arg("--maxmemory-policy") != "noeviction" {
		t.Errorf("compose: redis --maxmemory %q --maxmemory-policy %q, want a limit and noeviction (evicting would drop claims and queued questions)", arg("--maxmemory"), arg("--maxmemory-policy"))
	}
	// The health check must authenticate, or it fails on a healthy Redis.
	if got := getString(services, "redis", "environment", "REDISCLI_AUTH"); !required("REDIS_PASSWORD").MatchString(got) {
		t.Errorf("compose: redis REDISCLI_AUTH = %q, want ${REDIS_PASSWORD:?…} for the health check", got)
	}
	names := envExample(t)
	for _, want := range []string{"REDIS_PASSWORD", "QDRANT_API_KEY"} {
		if !slices.Contains(names, want) {
			t.Errorf("kbbot.env.example does not set %s, which docker-compose.yml requires", want)
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
	// terminationGracePeriodSeconds against serve's shutdown budget:
	// cmd/kbbot's TestGracePeriodCoversShutdown, beside the constants.
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

	// Prometheus scrapes /metrics on the pods' admin port, which the
	// ConfigMap opens on the pod's interfaces and the Service leaves out.
	ann := getMap(d, "spec", "template", "metadata", "annotations")
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/path"] != "/metrics" || ann["prometheus.io/port"] != "9090" {
		t.Errorf("Prometheus scrape annotations = %v, want /metrics on 9090", ann)
	}
	ports := map[string]int{}
	for _, p := range getList(c, "ports") {
		n, _ := get(p, "containerPort").(int)
		ports[getString(p, "name")] = n
	}
	if ports["http"] != 8080 || ports["admin"] != 9090 {
		t.Errorf("container ports = %v, want http 8080 and admin 9090", ports)
	}
	if cm := k8sByKind(t, docs, "ConfigMap"); len(cm) == 1 && getString(cm[0].m, "data", "KBBOT_ADMIN_ADDR") != ":9090" {
		t.Errorf("ConfigMap KBBOT_ADMIN_ADDR = %q, want :9090", getString(cm[0].m, "data", "KBBOT_ADMIN_ADDR"))
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
	for _, p := range getList(svcs[0].m, "spec", "ports") {
		if tp := get(p, "targetPort"); tp == "admin" || tp == 9090 || get(p, "port") == 9090 {
			t.Errorf("Service exposes the admin port: %v", p)
		}
	}

	checkEnvFrom(t, docs, "Deployment", c)
}

// A PodDisruptionBudget keeps a bot replica up through drains.
func TestK8sPodDisruptionBudget(t *testing.T) {
	docs := loadYAML(t)
	pdbs := k8sByKind(t, docs, "PodDisruptionBudget")
	if len(pdbs) != 1 {
		t.Fatalf("want one PodDisruptionBudget, found %d", len(pdbs))
	}
	pdb := pdbs[0].m
	replicas, _ := get(k8sByKind(t, docs, "Deployment")[0].m, "spec", "replicas").(int)
	if n, _ := get(pdb, "spec", "minAvailable").(int); n < 1 || n >= replicas {
		t.Errorf("PDB minAvailable = %v, want at least 1 and fewer than the %d replicas (or no drain could proceed)", get(pdb, "spec", "minAvailable"), replicas)
	}
	if !selectsBot(t, docs, getMap(pdb, "spec", "selector", "matchLabels")) {
		t.Errorf("PDB selector %v does not select the bot's pods", getMap(pdb, "spec", "selector", "matchLabels"))
	}
}

// selectsBot reports whether labels (a matchLabels) select the bot pods.
func selectsBot(t *testing.T, docs []yamlDoc, labels map[string]any) bool {
	t.Helper()
	pod := getMap(k8sByKind(t, docs, "Deployment")[0].m, "spec", "template", "metadata", "labels")
	if len(labels) == 0 {
		return false
	}
	for k, v := range labels {
		if pod[k] != v {
			return false
		}
	}
	return true
}

// Only kbbot reaches Redis and Qdrant: a NetworkPolicy selects each by the
// labels networkpolicy.yaml documents and admits kbbot's pods (and the
// store's own peers), nothing else.
func TestK8sNetworkPolicy(t *testing.T) {
	docs := loadYAML(t)
	byStore := map[string]map[string]any{}
	for _, d := range k8sByKind(t, docs, "NetworkPolicy") {
		byStore[getString(d.m, "spec", "podSelector", "matchLabels", "app")] = d.m
	}
	for store, ports := range map[string][]int{"kbbot-redis": {6379}, "kbbot-qdrant": {6333, 6334}} {
		np := byStore[store]
		if np == nil {
			t.Errorf("no NetworkPolicy selects app: %s", store)
			continue
		}
		if !slices.Contains(stringList(get(np, "spec", "policyTypes")), "Ingress") {
			t.Errorf("%s policy: policyTypes %v lacks Ingress", store, get(np, "spec", "policyTypes"))
		}
		rules := getList(np, "spec", "ingress")
		if len(rules) == 0 {
			t.Errorf("%s policy admits nothing", store)
		}
		botAdmitted := map[int]bool{}
		for _, r := range rules {
			peers := getList(r, "from")
			if len(peers) == 0 {
				t.Errorf("%s policy: a rule without from admits everyone: %v", store, r)
			}
			for _, p := range peers {
				m := getMap(p, "podSelector", "matchLabels")
				if get(p, "namespaceSelector") != nil || get(p, "ipBlock") != nil {
					t.Errorf("%s policy admits %v from outside the namespace", store, p)
				}
				switch {
				case m["app"] == store: // the store's own peers
				case m["app.kubernetes.io/name"] == "kbbot" && (m["app.kubernetes.io/component"] == nil || m["app.kubernetes.io/component"] == "bot"):
					for _, port := range getList(r, "ports") {
						n, _ := get(port, "port").(int)
						botAdmitted[n] = true
					}
				default:
					t.Errorf("%s policy admits %v, which is not kbbot", store, p)
				}
			}
		}
		for _, port := range ports {
			if !botAdmitted[port] {
				t.Errorf("%s policy does not let the bot reach port %d", store, port)
			}
		}
	}
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

// composeOnly are the kbbot.env.example variables kbbot does not read:
// docker-compose.yml interpolates them (--env-file) for its other services.
var composeOnly = []string{"REDIS_PASSWORD"}

func TestEnvExample(t *testing.T) {
	names := envExample(t)
	all, _ := configVars()
	for _, want := range all {
		if !slices.Contains(names, want) {
			t.Errorf("kbbot.env.example does not set %s (config.Vars has it)", want)
		}
	}
	compose, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		switch {
		case slices.Contains(composeOnly, name):
			if !bytes.Contains(compose, []byte("${"+name)) {
				t.Errorf("kbbot.env.example sets %s for docker-compose.yml, which does not use it", name)
			}
		case !slices.Contains(all, name):
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
	var example []string
	for _, name := range envExample(t) {
		if !slices.Contains(composeOnly, name) {
			example = append(example, name)
		}
	}
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
