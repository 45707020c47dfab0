package helm

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// Names of the objects of release "vf".
const (
	fullname = "vf-vpnfleet"
	stsKey   = "StatefulSet/" + fullname
)

func values(t *testing.T, y string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := yaml.Unmarshal([]byte(y), &v); err != nil {
		t.Fatalf("test values: %v", err)
	}
	return v
}

func envOf(c corev1.Container) map[string]corev1.EnvVar {
	m := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		m[e.Name] = e
	}
	return m
}

func portOf(t *testing.T, c corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port %q", c.Name, name)
	return 0
}

func mountOf(c corev1.Container, volume string) (corev1.VolumeMount, bool) {
	for _, m := range c.VolumeMounts {
		if m.Name == volume {
			return m, true
		}
	}
	return corev1.VolumeMount{}, false
}

// addrPort is the port of a host:port setting.
func addrPort(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	return int32(n)
}

// helpDefault is the default -h shows for a flag.
func helpDefault(t *testing.T, bin, flag string) string {
	t.Helper()
	out, err := exec.Command(binary(t, bin), "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -h: %v", bin, err)
	}
	m := regexp.MustCompile(`(?m)^  --` + regexp.QuoteMeta(flag) + ` \(default ([^)]*)\)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("%s -h shows no default of --%s", bin, flag)
	}
	return string(m[1])
}

func vpndContainer(t *testing.T, sts *appsv1.StatefulSet) corev1.Container {
	t.Helper()
	if n := len(sts.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("vpnd pod has %d containers", n)
	}
	return sts.Spec.Template.Spec.Containers[0]
}

// checkRestricted checks the pod and container security contexts vpnd
// must have: non-root uid 65532, read-only root, no privilege escalation,
// every capability dropped, the runtime's default seccomp profile.
func checkRestricted(t *testing.T, pod corev1.PodSpec, c corev1.Container) {
	t.Helper()
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil || sc == nil {
		t.Fatalf("security contexts missing: pod %v, container %v", psc, sc)
	}
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 || psc.RunAsGroup == nil || *psc.RunAsGroup != 65532 {
		t.Errorf("pod security context: want non-root uid/gid 65532, got %+v", psc)
	}
	if psc.FSGroup == nil || *psc.FSGroup != 65532 {
		t.Errorf("pod fsGroup: want 65532 (the data volume is the user's), got %v", psc.FSGroup)
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod seccomp profile: want RuntimeDefault, got %+v", psc.SeccompProfile)
	}
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != 65532 {
		t.Errorf("container: want non-root uid 65532, got %+v", sc)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("container: root filesystem not read-only")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("container: privilege escalation allowed")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("container: privileged")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("container capabilities: want drop [ALL] and none added, got %+v", sc.Capabilities)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container seccomp profile: want RuntimeDefault, got %+v", sc.SeccompProfile)
	}
}

// checkSelects fails unless svc selects the pods of template.
func checkSelects(t *testing.T, svc *corev1.Service, template corev1.PodTemplateSpec) {
	t.Helper()
	if len(svc.Spec.Selector) == 0 {
		t.Errorf("Service %s selects nothing", svc.Name)
	}
	for k, v := range svc.Spec.Selector {
		if template.Labels[k] != v {
			t.Errorf("Service %s selects %s=%s, which vpnd's pods lack", svc.Name, k, v)
		}
	}
}

func servicePort(t *testing.T, svc *corev1.Service) corev1.ServicePort {
	t.Helper()
	if len(svc.Spec.Ports) != 1 {
		t.Fatalf("Service %s has %d ports, want 1", svc.Name, len(svc.Spec.Ports))
	}
	return svc.Spec.Ports[0]
}

// TestDefaultValues renders the chart as installed with no values: vpnd
// alone, hardened, on a persistent data dir, with the ports, probes,
// settings and flags of the real binary.
func TestDefaultValues(t *testing.T) {
	r := mustRender(t, nil)
	want := []string{
		"ServiceAccount/" + fullname, stsKey,
		"Service/" + fullname, "Service/" + fullname + "-nats", "Service/" + fullname + "-headless", "Service/" + fullname + "-metrics",
	}
	got := keys(r)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("objects: got %v, want %v", got, want)
	}

	sts := get[*appsv1.StatefulSet](t, r, stsKey)
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 1 {
		t.Errorf("replicas: want 1, got %v", sts.Spec.Replicas)
	}
	if sts.Spec.ServiceName != fullname+"-headless" {
		t.Errorf("serviceName %q is not the headless Service", sts.Spec.ServiceName)
	}
	for k, v := range sts.Spec.Selector.MatchLabels {
		if sts.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod template", k, v)
		}
	}
	for _, l := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "app.kubernetes.io/component", "helm.sh/chart"} {
		if sts.Labels[l] == "" || sts.Spec.Template.Labels[l] == "" {
			t.Errorf("label %s missing on the StatefulSet or its pods", l)
		}
	}
	pod := sts.Spec.Template.Spec
	c := vpndContainer(t, sts)
	checkRestricted(t, pod, c)
	if c.Image != "vpnfleet/vpnd:local" {
		t.Errorf("image %q, want vpnfleet/vpnd:local (make image)", c.Image)
	}
	if pod.ServiceAccountName != fullname || pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("service account %q, automount %v: want %s without a token", pod.ServiceAccountName, pod.AutomountServiceAccountToken, fullname)
	}
	if sa := get[*corev1.ServiceAccount](t, r, "ServiceAccount/"+fullname); sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Error("the ServiceAccount mounts its token")
	}
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources: want memory requests and limits, got %+v", c.Resources)
	}

	// Every setting is one vpnd reads, and the ports are vpnd's defaults.
	checkSettings(t, c, settingsOf(t, "vpnd"))
	env := envOf(c)
	for _, s := range []struct{ env, port, flag string }{
		{"VPN_HTTP_ADDR", "http", "http-addr"},
		{"VPN_NATS_LISTEN", "nats", "nats-listen"},
		{"VPN_OPS_ADDR", "ops", "ops-addr"},
	} {
		p := addrPort(t, env[s.env].Value)
		if portOf(t, c, s.port) != p {
			t.Errorf("%s=%s but container port %s is %d", s.env, env[s.env].Value, s.port, portOf(t, c, s.port))
		}
		if def := addrPort(t, helpDefault(t, "vpnd", s.flag)); def != p {
			t.Errorf("%s port %d is not vpnd's default --%s port %d", s.env, p, s.flag, def)
		}
		if host, _, _ := net.SplitHostPort(env[s.env].Value); host != "0.0.0.0" {
			t.Errorf("%s=%s: the pod's address is not reached", s.env, env[s.env].Value)
		}
	}
	if env["VPN_AGENT"].Value != "false" {
		t.Errorf("VPN_AGENT=%q: vpnd's pod is not on the host network, its own agent is off by default", env["VPN_AGENT"].Value)
	}
	adv := strings.Split(env["VPN_NATS_ADVERTISE"].Value, ",")
	if !slices.Contains(adv, fullname+"-nats.vpn.svc.cluster.local") || !slices.Contains(adv, fullname+"-nats.vpn.svc") {
		t.Errorf("VPN_NATS_ADVERTISE=%q lacks the NATS Service's names", env["VPN_NATS_ADVERTISE"].Value)
	}
	for _, name := range []string{"VPN_BACKUP_DIR", "VPN_PUBLIC_URL"} {
		if _, ok := env[name]; ok {
			t.Errorf("%s set by default", name)
		}
	}

	// The data dir is the PersistentVolumeClaim.
	m, ok := mountOf(c, "data")
	if !ok || m.MountPath != env["VPN_DATA_DIR"].Value || m.ReadOnly {
		t.Errorf("data volume mounted at %+v, want writable at VPN_DATA_DIR=%s", m, env["VPN_DATA_DIR"].Value)
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 || sts.Spec.VolumeClaimTemplates[0].Name != "data" {
		t.Fatalf("volumeClaimTemplates: want one named data, got %+v", sts.Spec.VolumeClaimTemplates)
	}
	pvc := sts.Spec.VolumeClaimTemplates[0].Spec
	if got := pvc.Resources.Requests[corev1.ResourceStorage]; got.Cmp(resource.MustParse("10Gi")) != 0 {
		t.Errorf("data size %s, want 10Gi", got.String())
	}
	if pvc.StorageClassName != nil {
		t.Errorf("storageClassName %q set; the default class is expected", *pvc.StorageClassName)
	}
	for _, v := range pod.Volumes {
		if v.Name == "data" {
			t.Errorf("a pod volume named data hides the claim: %+v", v)
		}
	}

	// Probes: the ops listener's /healthz and /readyz.
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"startup", c.StartupProbe, "/healthz"}, {"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s probe: want an HTTP GET, got %+v", p.name, p.probe)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port != intstr.FromString("ops") {
			t.Errorf("%s probe: GET %s on %s, want %s on ops", p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path)
		}
	}

	api := get[*corev1.Service](t, r, "Service/"+fullname)
	nats := get[*corev1.Service](t, r, "Service/"+fullname+"-nats")
	metrics := get[*corev1.Service](t, r, "Service/"+fullname+"-metrics")
	for _, s := range []struct {
		svc    *corev1.Service
		port   int32
		target string
	}{{api, 8080, "http"}, {nats, 4222, "nats"}, {metrics, 9100, "ops"}} {
		checkSelects(t, s.svc, sts.Spec.Template)
		if s.svc.Spec.Type != corev1.ServiceTypeClusterIP {
			t.Errorf("Service %s type %s, want ClusterIP", s.svc.Name, s.svc.Spec.Type)
		}
		p := servicePort(t, s.svc)
		if p.Port != s.port || p.TargetPort != intstr.FromString(s.target) {
			t.Errorf("Service %s port %d -> %s, want %d -> %s", s.svc.Name, p.Port, p.TargetPort.String(), s.port, s.target)
		}
	}
	headless := get[*corev1.Service](t, r, "Service/"+fullname+"-headless")
	if headless.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("headless Service has clusterIP %q", headless.Spec.ClusterIP)
	}
	checkSelects(t, headless, sts.Spec.Template)

	for _, want := range []string{"rollout status statefulset/" + fullname, "--target=vpnd", "/proc/1/root" + env["VPN_DATA_DIR"].Value + "/admin.token", "port-forward svc/" + fullname} {
		if !strings.Contains(r.notes, want) {
			t.Errorf("NOTES lack %q:\n%s", want, r.notes)
		}
	}
}

// overrides sets most of what an operator changes.
const overrides = `
fullnameOverride: fleet
clusterDomain: k8s.example
imagePullSecrets: [{name: regcred}]
vpnd:
  image: {repository: registry.example/vpnd, tag: "1.2.3", pullPolicy: Always}
  logLevel: debug
  publicURL: https://vpn.example.com
  trustedProxies: [10.0.0.0/8, 192.168.1.1]
  nats:
    advertise: [nats.example.com, 203.0.113.9]
  extraArgs: ["--rate-limit=100", "--public-rate-limit=2", "--node-down-after=1m"]
  extraEnv:
    - {name: VPN_HEALTH_ONLINE_WINDOW, value: 10m}
    - name: VPN_HEALTH_ALERT_RULES
      value: /etc/vpnd/alerts/rules.toml
  extraVolumes:
    - {name: alerts, configMap: {name: vpnd-alerts}}
  extraVolumeMounts:
    - {name: alerts, mountPath: /etc/vpnd/alerts, readOnly: true}
  persistence:
    size: 50Gi
    storageClass: fast
    annotations: {backup.example/keep: "true"}
  backup:
    enabled: true
    every: 6h
    keep: 28
    passphraseSecret: {name: vpnd-backup, key: pass}
    persistence: {size: 100Gi, storageClass: slow}
  resources:
    requests: {cpu: "1", memory: 1Gi}
    limits: {cpu: "2", memory: 8Gi}
  nodeSelector: {disktype: ssd}
  tolerations: [{key: dedicated, operator: Equal, value: vpn, effect: NoSchedule}]
  priorityClassName: system-cluster-critical
service:
  api:
    type: LoadBalancer
    port: 443
    nodePort: 30443
    externalTrafficPolicy: Local
    loadBalancerSourceRanges: [198.51.100.0/24]
    annotations: {service.beta.kubernetes.io/aws-load-balancer-type: nlb}
  nats:
    type: NodePort
    nodePort: 30422
metrics:
  service: {enabled: false}
ingress:
  enabled: true
  className: nginx
  hosts: [{host: vpn.example.com, paths: [{path: /, pathType: Prefix}]}]
  tls: [{secretName: vpn-tls, hosts: [vpn.example.com]}]
agent:
  enabled: true
  image: {repository: registry.example/vpn-agent, tag: "1.2.3"}
  nodes:
    - name: worker-1
    - name: worker-2.eu.example
      publicAddr: 203.0.113.7
  joinTokenSecret: vpn-join
  extraArgs: ["--usage-interval=5s"]
  extraEnv: [{name: VPN_STATS_INTERVAL, value: 30s}]
  livenessProbe: {periodSeconds: 30, failureThreshold: 10}
  tolerations: [{operator: Exists}]
`

// TestOverriddenValues renders the chart with the values an operator
// changes, agents included.
func TestOverriddenValues(t *testing.T) {
	r := mustRender(t, values(t, overrides))
	if _, ok := r.objects["Service/fleet-metrics"]; ok {
		t.Error("metrics Service rendered though disabled")
	}
	sts := get[*appsv1.StatefulSet](t, r, "StatefulSet/fleet")
	pod := sts.Spec.Template.Spec
	c := vpndContainer(t, sts)
	checkRestricted(t, pod, c)
	checkSettings(t, c, settingsOf(t, "vpnd"))
	if c.Image != "registry.example/vpnd:1.2.3" || c.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("image %s (%s)", c.Image, c.ImagePullPolicy)
	}
	if len(pod.ImagePullSecrets) != 1 || pod.ImagePullSecrets[0].Name != "regcred" {
		t.Errorf("imagePullSecrets %+v", pod.ImagePullSecrets)
	}
	if !slices.Equal(c.Args, []string{"--rate-limit=100", "--public-rate-limit=2", "--node-down-after=1m"}) {
		t.Errorf("args %q", c.Args)
	}
	env := envOf(c)
	for name, want := range map[string]string{
		"VPN_LOG_LEVEL":               "debug",
		"VPN_PUBLIC_URL":              "https://vpn.example.com",
		"VPN_GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8,192.168.1.1",
		"VPN_NATS_ADVERTISE":          "fleet-nats.vpn.svc.k8s.example,fleet-nats.vpn.svc,nats.example.com,203.0.113.9",
		"VPN_BACKUP_DIR":              "/var/backups/vpnd",
		"VPN_BACKUP_EVERY":            "6h",
		"VPN_BACKUP_KEEP":             "28",
		"VPN_BACKUP_PASSPHRASE_FILE":  "/etc/vpnd/backup/passphrase",
		"VPN_HEALTH_ONLINE_WINDOW":    "10m",
		"VPN_HEALTH_ALERT_RULES":      "/etc/vpnd/alerts/rules.toml",
	} {
		if env[name].Value != want {
			t.Errorf("%s=%q, want %q", name, env[name].Value, want)
		}
	}
	if got := c.Resources.Limits[corev1.ResourceMemory]; got.Cmp(resource.MustParse("8Gi")) != 0 {
		t.Errorf("memory limit %s", got.String())
	}
	if got := c.Resources.Requests[corev1.ResourceCPU]; got.Cmp(resource.MustParse("1")) != 0 {
		t.Errorf("cpu request %s", got.String())
	}
	if pod.NodeSelector["disktype"] != "ssd" || len(pod.Tolerations) != 1 || pod.PriorityClassName != "system-cluster-critical" {
		t.Errorf("scheduling: %v %v %q", pod.NodeSelector, pod.Tolerations, pod.PriorityClassName)
	}

	// Data and backups on claims of their own; the passphrase from its Secret.
	claims := map[string]corev1.PersistentVolumeClaimSpec{}
	for _, ct := range sts.Spec.VolumeClaimTemplates {
		claims[ct.Name] = ct.Spec
	}
	for name, want := range map[string]struct{ size, class string }{"data": {"50Gi", "fast"}, "backups": {"100Gi", "slow"}} {
		spec, ok := claims[name]
		if !ok {
			t.Errorf("no volumeClaimTemplate %s", name)
			continue
		}
		if got := spec.Resources.Requests[corev1.ResourceStorage]; got.Cmp(resource.MustParse(want.size)) != 0 || spec.StorageClassName == nil || *spec.StorageClassName != want.class {
			t.Errorf("claim %s: %s of %v, want %s of %s", name, got.String(), spec.StorageClassName, want.size, want.class)
		}
	}
	if m, ok := mountOf(c, "backups"); !ok || m.MountPath != env["VPN_BACKUP_DIR"].Value {
		t.Errorf("backups mounted at %+v, want VPN_BACKUP_DIR", m)
	}
	if m, ok := mountOf(c, "backup-passphrase"); !ok || !m.ReadOnly || m.MountPath+"/passphrase" != env["VPN_BACKUP_PASSPHRASE_FILE"].Value {
		t.Errorf("passphrase mounted at %+v, want read-only at VPN_BACKUP_PASSPHRASE_FILE's dir", m)
	}
	if _, ok := mountOf(c, "alerts"); !ok {
		t.Error("extraVolumeMounts not mounted")
	}
	for _, v := range pod.Volumes {
		if v.Name == "backup-passphrase" && (v.Secret == nil || v.Secret.SecretName != "vpnd-backup" || len(v.Secret.Items) != 1 || v.Secret.Items[0].Key != "pass") {
			t.Errorf("passphrase volume %+v", v)
		}
	}

	api := get[*corev1.Service](t, r, "Service/fleet")
	if p := servicePort(t, api); api.Spec.Type != corev1.ServiceTypeLoadBalancer || p.Port != 443 || p.NodePort != 30443 || p.TargetPort != intstr.FromString("http") ||
		api.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal || !slices.Equal(api.Spec.LoadBalancerSourceRanges, []string{"198.51.100.0/24"}) {
		t.Errorf("API Service: %+v", api.Spec)
	}
	nats := get[*corev1.Service](t, r, "Service/fleet-nats")
	if p := servicePort(t, nats); nats.Spec.Type != corev1.ServiceTypeNodePort || p.Port != 4222 || p.NodePort != 30422 {
		t.Errorf("NATS Service: %+v", nats.Spec)
	}
	ing := get[*networkingv1.Ingress](t, r, "Ingress/fleet")
	if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != "nginx" || len(ing.Spec.Rules) != 1 ||
		ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Name != "fleet" || ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Port.Name != "http" {
		t.Errorf("Ingress: %+v", ing.Spec)
	}

	agentSettings := settingsOf(t, "vpn-agent")
	for _, n := range []struct{ node, publicAddr string }{{"worker-1", ""}, {"worker-2.eu.example", "203.0.113.7"}} {
		ds := get[*appsv1.DaemonSet](t, r, "DaemonSet/fleet-agent-"+n.node)
		checkAgent(t, ds, n.node, true, agentSettings)
		env := envOf(ds.Spec.Template.Spec.Containers[0])
		if env["VPN_PUBLIC_ADDR"].Value != n.publicAddr {
			t.Errorf("%s: VPN_PUBLIC_ADDR=%q, want %q", n.node, env["VPN_PUBLIC_ADDR"].Value, n.publicAddr)
		}
		tok := env["VPN_JOIN_TOKEN"].ValueFrom
		if tok == nil || tok.SecretKeyRef == nil || tok.SecretKeyRef.Name != "vpn-join" || tok.SecretKeyRef.Key != n.node || tok.SecretKeyRef.Optional == nil || !*tok.SecretKeyRef.Optional {
			t.Errorf("%s: join token from %+v, want key %s of Secret vpn-join, optional", n.node, tok, n.node)
		}
		c := ds.Spec.Template.Spec.Containers[0]
		if c.Image != "registry.example/vpn-agent:1.2.3" || !slices.Equal(c.Args, []string{"--usage-interval=5s"}) || env["VPN_STATS_INTERVAL"].Value != "30s" {
			t.Errorf("%s: image %s, args %q, env %v", n.node, c.Image, c.Args, env)
		}
		if c.LivenessProbe == nil || c.LivenessProbe.Exec == nil || c.LivenessProbe.PeriodSeconds != 30 || c.LivenessProbe.FailureThreshold != 10 {
			t.Errorf("%s: liveness probe %+v", n.node, c.LivenessProbe)
		}
	}
	// Each DaemonSet selects only its own pods.
	a := get[*appsv1.DaemonSet](t, r, "DaemonSet/fleet-agent-worker-1")
	b := get[*appsv1.DaemonSet](t, r, "DaemonSet/fleet-agent-worker-2.eu.example")
	if matches(a.Spec.Selector.MatchLabels, b.Spec.Template.Labels) || matches(b.Spec.Selector.MatchLabels, a.Spec.Template.Labels) {
		t.Error("the agents' DaemonSets select each other's pods")
	}
	if !strings.Contains(r.notes, "worker-1, worker-2.eu.example") || !strings.Contains(r.notes, "delete secret vpn-join") {
		t.Errorf("NOTES do not tell how agents join:\n%s", r.notes)
	}
}

func matches(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// checkAgent checks one node's agent DaemonSet: pinned to the node, on
// the host network, the process runtime, a hostPath data dir, and the
// capabilities of its mode: as root with exactly what hands Xray
// NET_BIND_SERVICE (privileged ports), or uid 65532 with none.
func checkAgent(t *testing.T, ds *appsv1.DaemonSet, node string, privilegedPorts bool, s settings) {
	t.Helper()
	pod := ds.Spec.Template.Spec
	if !matches(ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels) {
		t.Errorf("%s: selector %v does not match its pods", ds.Name, ds.Spec.Selector.MatchLabels)
	}
	if !pod.HostNetwork || pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("%s: hostNetwork %v, dnsPolicy %s", ds.Name, pod.HostNetwork, pod.DNSPolicy)
	}
	terms := pod.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 1 || len(terms[0].MatchFields) != 1 || terms[0].MatchFields[0].Key != "metadata.name" || !slices.Equal(terms[0].MatchFields[0].Values, []string{node}) {
		t.Errorf("%s: not pinned to node %s: %+v", ds.Name, node, terms)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%s: %d containers", ds.Name, len(pod.Containers))
	}
	c := pod.Containers[0]
	checkSettings(t, c, s)
	env := envOf(c)
	if env["VPN_RUNTIME"].Value != "process" {
		t.Errorf("%s: VPN_RUNTIME=%q, want process", ds.Name, env["VPN_RUNTIME"].Value)
	}
	if host, _, err := net.SplitHostPort(env["VPN_OPS_ADDR"].Value); err != nil || !net.ParseIP(host).IsLoopback() {
		t.Errorf("%s: VPN_OPS_ADDR=%q is not on the node's loopback", ds.Name, env["VPN_OPS_ADDR"].Value)
	}
	m, ok := mountOf(c, "data")
	if !ok || m.MountPath != env["VPN_DATA_DIR"].Value {
		t.Errorf("%s: data mounted at %+v, want VPN_DATA_DIR", ds.Name, m)
	}
	for _, v := range pod.Volumes {
		if v.Name == "data" && (v.HostPath == nil || v.HostPath.Path != "/var/lib/vpn-agent") {
			t.Errorf("%s: data volume %+v, want hostPath /var/lib/vpn-agent", ds.Name, v)
		}
	}
	if rp := c.ReadinessProbe; rp == nil || rp.Exec == nil || !slices.Equal(rp.Exec.Command, []string{"/usr/local/bin/vpn-agent", "healthcheck"}) {
		t.Errorf("%s: readiness probe %+v, want vpn-agent healthcheck", ds.Name, rp)
	}
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: seccomp profiles %+v %+v", ds.Name, psc.SeccompProfile, sc.SeccompProfile)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || (sc.Privileged != nil && *sc.Privileged) {
		t.Errorf("%s: container security context %+v", ds.Name, sc)
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("%s: capabilities %+v, want drop ALL", ds.Name, sc.Capabilities)
	}
	if privilegedPorts {
		want := []corev1.Capability{"CHOWN", "SETUID", "SETGID", "SETPCAP", "KILL", "NET_BIND_SERVICE"}
		if !slices.Equal(sc.Capabilities.Add, want) || psc.RunAsUser == nil || *psc.RunAsUser != 0 {
			t.Errorf("%s: uid %v with %v, want uid 0 with exactly %v", ds.Name, psc.RunAsUser, sc.Capabilities.Add, want)
		}
		if env["VPN_XRAY_USER"].Value != "65532:65532" {
			t.Errorf("%s: VPN_XRAY_USER=%q: Xray would keep root", ds.Name, env["VPN_XRAY_USER"].Value)
		}
	} else if len(sc.Capabilities.Add) != 0 || psc.RunAsUser == nil || *psc.RunAsUser != 65532 || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("%s: uid %v with %v, want non-root 65532 with no capability", ds.Name, psc.RunAsUser, sc.Capabilities.Add)
	}
}

// TestAgentWithoutPrivilegedPorts: agent.privilegedPorts false runs the
// agent (and so Xray) as uid 65532 with no capability.
func TestAgentWithoutPrivilegedPorts(t *testing.T) {
	r := mustRender(t, values(t, `
agent: {enabled: true, privilegedPorts: false, nodes: [{name: n1}], joinTokenSecret: join}
`))
	checkAgent(t, get[*appsv1.DaemonSet](t, r, "DaemonSet/"+fullname+"-agent-n1"), "n1", false, settingsOf(t, "vpn-agent"))
}

// TestAgentNameOfALongNode: a node name too long for an object name is
// cut and hashed, so two such nodes get two DaemonSets.
func TestAgentNameOfALongNode(t *testing.T) {
	long := strings.Repeat("n", 60)
	r := mustRender(t, values(t, fmt.Sprintf("agent: {enabled: true, nodes: [{name: %sa}, {name: %sb}]}", long, long)))
	var names []string
	for k, o := range r.objects {
		if ds, ok := o.(*appsv1.DaemonSet); ok {
			names = append(names, k)
			if len(ds.Name) > 63 {
				t.Errorf("DaemonSet name %q longer than 63", ds.Name)
			}
		}
	}
	if len(names) != 2 {
		t.Errorf("DaemonSets %v, want two", names)
	}
}

// TestPersistence: off is an emptyDir (and NOTES warn), an existing claim
// is mounted as it is.
func TestPersistence(t *testing.T) {
	r := mustRender(t, values(t, `vpnd: {persistence: {enabled: false}}`))
	sts := get[*appsv1.StatefulSet](t, r, stsKey)
	if len(sts.Spec.VolumeClaimTemplates) != 0 || sts.Spec.PersistentVolumeClaimRetentionPolicy != nil {
		t.Errorf("claims without persistence: %+v", sts.Spec.VolumeClaimTemplates)
	}
	if !hasVolume(sts, func(v corev1.Volume) bool { return v.Name == "data" && v.EmptyDir != nil }) {
		t.Errorf("no emptyDir data volume: %+v", sts.Spec.Template.Spec.Volumes)
	}
	if !strings.Contains(r.notes, "WARNING") {
		t.Errorf("NOTES do not warn of an emptyDir:\n%s", r.notes)
	}

	r = mustRender(t, values(t, `vpnd: {persistence: {existingClaim: vpnd-data}, backup: {enabled: true, persistence: {existingClaim: vpnd-backups}}}`))
	sts = get[*appsv1.StatefulSet](t, r, stsKey)
	if len(sts.Spec.VolumeClaimTemplates) != 0 {
		t.Errorf("claims made beside existing ones: %+v", sts.Spec.VolumeClaimTemplates)
	}
	for vol, claim := range map[string]string{"data": "vpnd-data", "backups": "vpnd-backups"} {
		if !hasVolume(sts, func(v corev1.Volume) bool {
			return v.Name == vol && v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == claim
		}) {
			t.Errorf("volume %s is not claim %s: %+v", vol, claim, sts.Spec.Template.Spec.Volumes)
		}
	}
	env := envOf(vpndContainer(t, sts))
	if _, ok := env["VPN_BACKUP_PASSPHRASE_FILE"]; ok {
		t.Error("a passphrase file without a passphrase Secret")
	}
}

func hasVolume(sts *appsv1.StatefulSet, ok func(corev1.Volume) bool) bool {
	return slices.ContainsFunc(sts.Spec.Template.Spec.Volumes, ok)
}

// TestSchemaRefusesBadValues: values.schema.json refuses each bad value
// before anything renders, with a message naming the field.
func TestSchemaRefusesBadValues(t *testing.T) {
	for _, tc := range []struct {
		name, values, field string
	}{
		{"two vpnd replicas", `vpnd: {replicaCount: 2}`, "/vpnd/replicaCount"},
		{"unknown service type", `service: {api: {type: External}}`, "/service/api/type"},
		{"misspelt key", `vpnd: {persistance: {size: 1Gi}}`, "persistance"},
		{"size not a quantity", `vpnd: {persistence: {size: lots}}`, "/vpnd/persistence/size"},
		{"backup interval not a duration", `vpnd: {backup: {enabled: true, every: daily}}`, "/vpnd/backup/every"},
		{"no backups kept", `vpnd: {backup: {keep: 0}}`, "/vpnd/backup/keep"},
		{"extra arg not a flag", `vpnd: {extraArgs: [rate-limit=5]}`, "/vpnd/extraArgs/0"},
		{"log level", `vpnd: {logLevel: verbose}`, "/vpnd/logLevel"},
		{"node port out of range", `service: {nats: {type: NodePort, nodePort: 4222}}`, "/service/nats/nodePort"},
		{"agent without nodes", `agent: {enabled: true}`, "/agent/nodes"},
		{"agent node not a node name", `agent: {nodes: [{name: Worker_1}]}`, "/agent/nodes/0/name"},
		{"xray user not uid:gid", `agent: {xrayUser: nobody}`, "/agent/xrayUser"},
		{"image without repository", `vpnd: {image: {repository: ""}}`, "/vpnd/image/repository"},
		{"public URL without scheme", `vpnd: {publicURL: vpn.example.com}`, "/vpnd/publicURL"},
		{"env var without name", `vpnd: {extraEnv: [{value: x}]}`, "/vpnd/extraEnv/0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, values(t, tc.values))
			if err == nil {
				t.Fatalf("%s: rendered", tc.values)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("%s: the error does not name %s as a schema violation: %v", tc.values, tc.field, err)
			}
		})
	}
}

// TestTemplateRefusals: what the schema cannot say, the templates refuse.
func TestTemplateRefusals(t *testing.T) {
	_, err := render(t, values(t, `agent: {enabled: true, nodes: [{name: n1}, {name: n1, publicAddr: 1.2.3.4}]}`))
	if err == nil || !strings.Contains(err.Error(), "agent.nodes") || !strings.Contains(err.Error(), "n1") {
		t.Errorf("a node listed twice: %v", err)
	}
}

// TestLint lints the chart with Helm's linter, as `helm lint` does, with
// its defaults and with the overrides: no warning, no error.
func TestLint(t *testing.T) {
	for name, vals := range map[string]map[string]any{"defaults": nil, "overrides": values(t, overrides)} {
		for _, m := range lintChart(t, vals) {
			t.Errorf("%s: %s", name, m.Error())
		}
	}
}

// TestVpndServesWhatTheChartSays runs the real vpnd with the environment
// the chart gives it (addresses moved to random loopback ports, the data
// dir to a temporary one, TLS on NATS as on the pod's address): its ops
// listener answers the probes' paths, `vpnd healthcheck` agrees, and the
// NATS certificate names the advertised Service names.
func TestVpndServesWhatTheChartSays(t *testing.T) {
	r := mustRender(t, nil)
	sts := get[*appsv1.StatefulSet](t, r, stsKey)
	c := vpndContainer(t, sts)
	dataDir := t.TempDir()
	var env []string
	for _, e := range c.Env {
		v := e.Value
		switch e.Name {
		case "VPN_DATA_DIR":
			v = dataDir
		case "VPN_HTTP_ADDR", "VPN_OPS_ADDR", "VPN_NATS_LISTEN":
			v = "127.0.0.1:0"
		}
		env = append(env, e.Name+"="+v)
	}
	// As on the pod's address, where auto turns it on.
	env = append(env, "VPN_NATS_TLS=on", "HOME="+dataDir, "PATH="+os.Getenv("PATH"))
	cmd := exec.Command(binary(t, "vpnd"), c.Args...)
	cmd.Env = env
	cmd.Dir = dataDir
	// The output goes to a file, which the test reads while vpnd writes.
	logFile := filepath.Join(t.TempDir(), "vpnd.log")
	logs, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if out, _ := os.ReadFile(logFile); t.Failed() {
			t.Logf("vpnd output:\n%s", out)
		}
	})
	// The ready line says where the ops listener is.
	var ready struct {
		Msg    string `json:"msg"`
		OpsURL string `json:"ops_url"`
	}
	waitfor.Cond(t, 60*time.Second, func() error {
		out, err := os.ReadFile(logFile)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(out), "\n") {
			if json.Unmarshal([]byte(line), &ready) == nil && ready.Msg == "vpnd ready" && ready.OpsURL != "" {
				return nil
			}
		}
		return errors.New("no ready line yet")
	})
	client := &http.Client{Timeout: 2 * time.Second}
	for _, p := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
		url := ready.OpsURL + p.HTTPGet.Path
		waitfor.Cond(t, 60*time.Second, func() error {
			resp, err := client.Get(url)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s: %s", url, resp.Status)
			}
			return nil
		})
	}
	hc := exec.Command(binary(t, "vpnd"), "healthcheck", "--ops-addr", strings.TrimPrefix(ready.OpsURL, "http://"))
	hc.Env = env
	if out, err := hc.CombinedOutput(); err != nil {
		t.Errorf("vpnd healthcheck with the chart's environment: %v\n%s", err, out)
	}

	pemData, err := os.ReadFile(filepath.Join(dataDir, "nats", "tls", "server.pem"))
	if err != nil {
		t.Fatalf("NATS certificate: %v", err)
	}
	block, _ := pem.Decode(pemData)
	if block == nil {
		t.Fatal("NATS certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range strings.Split(envOf(c)["VPN_NATS_ADVERTISE"].Value, ",") {
		if !slices.Contains(cert.DNSNames, name) {
			t.Errorf("NATS certificate names %v, not %s", cert.DNSNames, name)
		}
	}
}
