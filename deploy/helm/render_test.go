package helm

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// chartDir is the chart under test.
const chartDir = "vpnfleet"

// Release name and namespace of every render.
const (
	releaseName = "vf"
	namespace   = "vpn"
)

// rendered is one render of the chart: its objects by kind and name,
// decoded strictly into their k8s.io/api types, and its NOTES.
type rendered struct {
	objects map[string]any // "Kind/name" -> *appsv1.StatefulSet, ...
	notes   string
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	return ch
}

// render renders the chart as `helm template` does (install, client-only
// dry run) with vals over values.yaml; a refused value is returned as the
// error.
func render(t *testing.T, vals map[string]any) (*rendered, error) {
	t.Helper()
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = releaseName
	install.Namespace = namespace
	install.KubeVersion = &common.KubeVersion{Version: "v1.33.0", Major: "1", Minor: "33"}
	rel, err := install.Run(loadChart(t), vals)
	if err != nil {
		return nil, err
	}
	r, ok := rel.(*release.Release)
	if !ok {
		t.Fatalf("install returned %T, not a v1 release", rel)
	}
	if len(r.Hooks) != 0 {
		t.Fatalf("the chart has %d hooks; none are expected", len(r.Hooks))
	}
	objs, err := decodeManifest(r.Manifest)
	if err != nil {
		t.Fatalf("%v\n--- manifest ---\n%s", err, r.Manifest)
	}
	return &rendered{objects: objs, notes: r.Info.Notes}, nil
}

// mustRender renders vals and fails the test when the chart refuses them.
func mustRender(t *testing.T, vals map[string]any) *rendered {
	t.Helper()
	r, err := render(t, vals)
	if err != nil {
		t.Fatalf("rendering: %v", err)
	}
	return r
}

// newObject is the k8s.io/api type of each kind the chart may render;
// any other kind fails the test.
func newObject(apiVersion, kind string) (any, bool) {
	switch apiVersion + "/" + kind {
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, true
	case "v1/Service":
		return &corev1.Service{}, true
	case "v1/Secret":
		return &corev1.Secret{}, true
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, true
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}, true
	case "apps/v1/DaemonSet":
		return &appsv1.DaemonSet{}, true
	case "networking.k8s.io/v1/Ingress":
		return &networkingv1.Ingress{}, true
	}
	return nil, false
}

// decodeManifest splits a rendered manifest into its YAML documents and
// decodes each into its k8s.io/api type, strictly: an unknown or
// duplicated field, a value of the wrong type or an unknown kind is an
// error naming the document.
func decodeManifest(manifest string) (map[string]any, error) {
	out := map[string]any{}
	rd := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	for {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("splitting the manifest: %w", err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		js, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, fmt.Errorf("document is not valid YAML: %w\n%s", err, doc)
		}
		var tm metav1.TypeMeta
		if err := json.Unmarshal(js, &tm); err != nil {
			return nil, fmt.Errorf("reading apiVersion and kind: %w\n%s", err, doc)
		}
		obj, ok := newObject(tm.APIVersion, tm.Kind)
		if !ok {
			return nil, fmt.Errorf("unexpected kind %s %s\n%s", tm.APIVersion, tm.Kind, doc)
		}
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		if err := dec.Decode(obj); err != nil {
			return nil, fmt.Errorf("%s does not decode strictly into %T: %w\n%s", tm.Kind, obj, err, doc)
		}
		name := obj.(metav1.Object).GetName()
		if name == "" {
			return nil, fmt.Errorf("%s without a name\n%s", tm.Kind, doc)
		}
		if ns := obj.(metav1.Object).GetNamespace(); ns != namespace {
			return nil, fmt.Errorf("%s/%s in namespace %q, not the release's %q", tm.Kind, name, ns, namespace)
		}
		key := tm.Kind + "/" + name
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("%s rendered twice", key)
		}
		out[key] = obj
	}
	return out, nil
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.Bytes()
}

// get returns the object key ("Kind/name") as T, failing when it is
// missing.
func get[T any](t *testing.T, r *rendered, key string) T {
	t.Helper()
	o, ok := r.objects[key]
	if !ok {
		t.Fatalf("%s not rendered; got %v", key, keys(r))
	}
	v, ok := o.(T)
	if !ok {
		t.Fatalf("%s is %T", key, o)
	}
	return v
}

func keys(r *rendered) []string {
	var out []string
	for k := range r.objects {
		out = append(out, k)
	}
	return out
}

// settings are a binary's command-line flags and environment variables,
// read from its -h: the chart may pass nothing else.
type settings struct {
	flags, env map[string]bool
}

var (
	flagLine = regexp.MustCompile(`^  --([a-z0-9-]+)`)
	envName  = regexp.MustCompile(`\(env ([A-Z0-9_]+)\)`)
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// binary builds one of the product's binaries (once per test run) and
// returns its path.
func binary(t *testing.T, name string) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "vpnfleet-helm-bin-")
		if binErr != nil {
			return
		}
		for pkg, bin := range map[string]string{
			"github.com/vpnfleet/vpnfleet/services/vpnd/cmd/vpnd":               "vpnd",
			"github.com/vpnfleet/vpnfleet/services/runtime-agent/cmd/vpn-agent": "vpn-agent",
		} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, bin), pkg).CombinedOutput()
			if err != nil {
				binErr = fmt.Errorf("building %s: %v\n%s", bin, err, out)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, name)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// settingsOf runs `<binary> -h` and collects what it lists.
func settingsOf(t *testing.T, name string) settings {
	t.Helper()
	out, err := exec.Command(binary(t, name), "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -h: %v\n%s", name, err, out)
	}
	s := settings{flags: map[string]bool{}, env: map[string]bool{}}
	for _, line := range strings.Split(string(out), "\n") {
		if m := flagLine.FindStringSubmatch(line); m != nil {
			s.flags[m[1]] = true
		}
		if m := envName.FindStringSubmatch(line); m != nil {
			s.env[m[1]] = true
		}
	}
	if len(s.flags) < 10 || !s.env["VPN_DATA_DIR"] {
		t.Fatalf("%s -h lists %d flags and no VPN_DATA_DIR: its format changed?\n%s", name, len(s.flags), out)
	}
	return s
}

// checkSettings fails for every environment variable or flag of c that
// the binary does not have.
func checkSettings(t *testing.T, c corev1.Container, s settings) {
	t.Helper()
	for _, e := range c.Env {
		if !s.env[e.Name] {
			t.Errorf("container %s sets %s, which its binary does not read", c.Name, e.Name)
		}
	}
	for _, a := range append(append([]string{}, c.Command...), c.Args...) {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !s.flags[name] {
			t.Errorf("container %s passes %s, which is not a flag of its binary", c.Name, a)
		}
	}
}

func lintChart(t *testing.T, vals map[string]any) []support.Message {
	t.Helper()
	var bad []support.Message
	for _, m := range lint.RunAll(chartDir, vals, namespace).Messages {
		if m.Severity >= support.WarningSev {
			bad = append(bad, m)
		}
	}
	return bad
}
