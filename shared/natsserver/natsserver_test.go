package natsserver_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
	"github.com/vpnfleet/vpnfleet/shared/natsserver"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func trust(t *testing.T, dir string) *natsauth.Trust {
	t.Helper()
	tr, err := natsauth.LoadOrCreate(filepath.Join(dir, "trust"))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func start(t *testing.T, cfg natsserver.Config) *natsserver.Server {
	t.Helper()
	srv, err := natsserver.Start(cfg, natstest.Logger(t))
	if err != nil {
		t.Fatalf("starting: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

func TestRefusesAListenerOthersReachWithoutTLS(t *testing.T) {
	dir := t.TempDir()
	tr := trust(t, dir)
	for _, listen := range []string{"0.0.0.0:0", "[::]:0", ":0", "10.0.0.1:4222", "vpn.example.org:4222"} {
		_, err := natsserver.Start(natsserver.Config{DataDir: dir, Listen: listen, Trust: tr}, natstest.Logger(t))
		if !errors.Is(err, errs.Invalid) {
			t.Fatalf("%s without TLS: %v, want Invalid", listen, err)
		}
		fs := errs.FieldsOf(err)
		if len(fs) != 1 || fs[0].Field != "nats_listen" || !strings.Contains(fs[0].Rule, "TLS") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("%s without TLS: %q, want one line naming nats_listen and TLS", listen, err)
		}
	}
}

func TestRefusesToRunWithoutTrust(t *testing.T) {
	if _, err := natsserver.Start(natsserver.Config{DataDir: t.TempDir()}, natstest.Logger(t)); err == nil {
		t.Fatal("started a server without authentication")
	}
}

func TestInProcessOnlyServerConnectsWithTheServiceCredential(t *testing.T) {
	dir := t.TempDir()
	tr := trust(t, dir)
	srv := start(t, natsserver.Config{DataDir: dir, Trust: tr})
	if srv.ClientURL() != "" {
		t.Fatalf("client URL %q without a listener", srv.ClientURL())
	}
	nc, err := srv.Connect()
	if err != nil {
		t.Fatalf("in-process service connection: %v", err)
	}
	nc.Close()
}

// tlsServer starts a server whose loopback listener requires TLS from the
// trust's own CA.
func tlsServer(t *testing.T) (*natsserver.Server, *natsauth.Trust, *natsauth.TLS) {
	t.Helper()
	dir := t.TempDir()
	tr := trust(t, dir)
	tl, err := natsauth.LoadOrCreateTLS(filepath.Join(dir, "tls"), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	srv := start(t, natsserver.Config{
		DataDir: dir, Listen: "127.0.0.1:0", Trust: tr,
		TLS: &natsserver.TLSFiles{Cert: tl.CertFile(), Key: tl.KeyFile(), CA: tl.CAFile()},
	})
	return srv, tr, tl
}

func TestTLSListener(t *testing.T) {
	srv, tr, tl := tlsServer(t)
	url := srv.ClientURL()
	if !strings.HasPrefix(url, "tls://127.0.0.1:") {
		t.Fatalf("client URL %q, want tls://127.0.0.1:<port>", url)
	}
	cred, err := tr.ServiceCredential("test")
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := natsauth.PinnedClientConfig(tl.CAFingerprint())
	if err != nil {
		t.Fatal(err)
	}
	fromPEM, err := natsauth.ClientConfigFromCA(tl.CAPEM())
	if err != nil {
		t.Fatal(err)
	}
	fromFile, err := natsauth.ClientConfigFromCAFile(tl.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*tls.Config{"pinned fingerprint": pinned, "CA PEM": fromPEM, "CA file": fromFile, "trust's own": tl.ClientConfig()} {
		t.Run("accepts "+name, func(t *testing.T) {
			nc, err := nats.Connect(url, cred.Option(), nats.Secure(cfg))
			if err != nil {
				t.Fatalf("connecting: %v", err)
			}
			defer nc.Close()
			if !nc.TLSRequired() {
				t.Fatal("connection is not TLS")
			}
		})
	}

	other, err := natsauth.LoadOrCreateTLS(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	otherPinned, _ := natsauth.PinnedClientConfig(other.CAFingerprint())
	wrongHost := pinned.Clone()
	wrongHost.ServerName = "evil.example.org"
	refused := map[string][]nats.Option{
		"another pinned CA":        {nats.Secure(otherPinned)},
		"another CA":               {nats.Secure(other.ClientConfig())},
		"system roots":             {nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12})},
		"a name not in the cert":   {nats.Secure(wrongHost)},
		"no credential over TLS":   {nats.Secure(pinned)},
		"plain URL, pinned absent": {},
	}
	for name, opts := range refused {
		t.Run("refuses "+name, func(t *testing.T) {
			if name != "no credential over TLS" {
				opts = append(opts, cred.Option())
			}
			nc, err := nats.Connect(strings.Replace(url, "tls://", "nats://", 1), opts...)
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
		})
	}

	t.Run("plain TCP gets only an INFO demanding TLS", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(url, "tls://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || !strings.Contains(line, `"tls_required":true`) {
			t.Fatalf("first line %q, %v; want an INFO with tls_required", line, err)
		}
	})

	t.Run("in-process stays plain", func(t *testing.T) {
		nc, err := srv.Connect()
		if err != nil {
			t.Fatalf("in-process connection to a TLS server: %v", err)
		}
		defer nc.Close()
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestJoinTokenConnectsOverPinnedTLS walks the join as an agent would: it
// has only the token, and reaches the fleet service over TLS pinned to the
// CA in it.
func TestJoinTokenConnectsOverPinnedTLS(t *testing.T) {
	srv, tr, tl := tlsServer(t)
	svc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if _, err := svc.Subscribe(subject.AllFleetJoins, func(m *nats.Msg) { _ = m.Respond([]byte("welcome")) }); err != nil {
		t.Fatal(err)
	}
	if err := svc.Flush(); err != nil {
		t.Fatal(err)
	}
	expires := time.Now().Add(time.Hour)
	cred, err := tr.JoinCredential("tok1", expires)
	if err != nil {
		t.Fatal(err)
	}
	line := natsauth.JoinToken{
		URLs: []string{srv.ClientURL()}, CAFingerprint: tl.CAFingerprint(),
		Node: "n1", TokenID: "tok1", JWT: cred.JWT, Seed: string(cred.Seed), Expires: expires,
	}.Encode()

	j, err := natsauth.DecodeJoinToken(line)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := j.Options()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(j.ServerURLs(), opts...)
	if err != nil {
		t.Fatalf("joining with the token: %v", err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, subject.FleetJoin(j.TokenID), []byte("{}"))
	if err != nil || string(msg.Data) != "welcome" {
		t.Fatalf("join request: %v %v", msg, err)
	}
}

// TestAdoptsTheStoreWrittenBeforeAuthentication upgrades a data dir that a
// server without authentication wrote (global account): the streams and
// buckets are there under the application account.
func TestAdoptsTheStoreWrittenBeforeAuthentication(t *testing.T) {
	dir := t.TempDir()
	old, err := server.NewServer(&server.Options{
		JetStream: true, StoreDir: filepath.Join(dir, "jetstream"), DontListen: true, NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	old.Start()
	if !old.ReadyForConnections(10 * time.Second) {
		t.Fatal("old server not ready")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	put := func(nc *nats.Conn) {
		js, _ := jetstream.New(nc)
		kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: subject.BucketUsers, Storage: jetstream.FileStorage})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, "u1", []byte("alice")); err != nil {
			t.Fatal(err)
		}
	}
	nc, err := nats.Connect("", nats.InProcessServer(old))
	if err != nil {
		t.Fatal(err)
	}
	put(nc)
	nc.Close()
	old.Shutdown()
	old.WaitForShutdown()

	srv := start(t, natsserver.Config{DataDir: dir, Trust: trust(t, dir)})
	nc, err = srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(ctx, subject.BucketUsers)
	if err != nil {
		t.Fatalf("the bucket written before authentication: %v", err)
	}
	if e, err := kv.Get(ctx, "u1"); err != nil || string(e.Value()) != "alice" {
		t.Fatalf("u1 after the upgrade: %v", err)
	}
}
