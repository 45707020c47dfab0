package natsauth_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// The attack tests drive the server with plain nats.go clients, holding
// the credentials an attacker on a node (or with a leaked join token)
// would hold, and check that the server refuses what the credential was
// not granted and allows what an agent needs.

// violations records the permission violations the server reports to one
// connection (asynchronously, through the error handler).
type violations struct {
	mu   sync.Mutex
	seen []violation
}

type violation struct{ action, subject string }

// violationText is how nats.go reports the server's -ERR.
var violationText = regexp.MustCompile(`Violation for (Publish|Subscription) to "([^"]*)"`)

func (v *violations) handler() nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if m := violationText.FindStringSubmatch(err.Error()); errors.Is(err, nats.ErrPermissionViolation) && m != nil {
			v.mu.Lock()
			v.seen = append(v.seen, violation{m[1], m[2]})
			v.mu.Unlock()
		}
	})
}

// has reports whether the server refused action ("Publish" or
// "Subscription") on a subject matching pattern, where a "*" token stands
// for any one token (a consumer's random name) and every other token,
// ">" included, is literal.
func (v *violations) has(action, pattern string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, s := range v.seen {
		if s.action == action && tokensMatch(pattern, s.subject) {
			return true
		}
	}
	return false
}

func tokensMatch(pattern, subj string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subj, ".")
	if len(p) != len(s) {
		return false
	}
	for i := range p {
		if p[i] != "*" && p[i] != s[i] {
			return false
		}
	}
	return true
}

// denied runs op and requires the server to refuse action on a subject
// matching pattern: the violation must arrive, and op must fail (it is
// cancelled once the violation is seen, as a request the server dropped
// never gets an answer).
func denied(t *testing.T, v *violations, action, pattern string, op func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- op(ctx) }()
	waitfor.Cond(t, 15*time.Second, func() error {
		if v.has(action, pattern) {
			return nil
		}
		select {
		case err := <-done:
			done <- err
			if err == nil {
				return fmt.Errorf("%s %s was allowed", action, pattern)
			}
		default:
		}
		return fmt.Errorf("no permission violation for %s to %q yet", action, pattern)
	})
	cancel()
	if err := <-done; err == nil {
		t.Fatalf("%s to %s: the operation succeeded despite the violation", action, pattern)
	}
}

// fixture is a provisioned server with data in every bucket an attacker
// would want, and service responders on every request subject.
type fixture struct {
	s   *natstest.Server
	svc *nats.Conn
	js  jetstream.JetStream
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	s := natstest.Start(t)
	svc := s.Conn()
	js, err := jetstream.New(svc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for bucket, keys := range map[string][]string{
		subject.BucketUsers:        {"u1"},
		subject.BucketTokens:       {"t1"},
		subject.BucketServers:      {"s1"},
		subject.BucketNodeViews:    {subject.ViewUserKey("n1", "u1"), subject.ViewUserKey("n2", "u2")},
		subject.BucketServerStatus: {subject.ServerStatusKey("n2", "s2")},
	} {
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatalf("opening %s: %v", bucket, err)
		}
		for _, k := range keys {
			if _, err := kv.Put(ctx, k, []byte("secret of "+k)); err != nil {
				t.Fatalf("putting %s/%s: %v", bucket, k, err)
			}
		}
	}
	// Responders: a request that got through would be answered.
	for _, subj := range []string{subject.UsersService + ".>", subject.ServersService + ".>", subject.JobsService + ".>", subject.AgentCmds("n2"), subject.AllFleetJoins} {
		if _, err := svc.Subscribe(subj, func(m *nats.Msg) { _ = m.Respond([]byte("ok")) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := svc.Flush(); err != nil {
		t.Fatal(err)
	}
	return fixture{s: s, svc: svc, js: js}
}

func TestAnonymousConnectionIsRefused(t *testing.T) {
	s := natstest.StartWith(t, natstest.Options{NoProvision: true})
	nc, err := nats.Connect(s.URL(), nats.MaxReconnects(0))
	if err == nil {
		nc.Close()
		t.Fatal("an anonymous connection was accepted")
	}
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("anonymous connection: %v, want an authorization violation", err)
	}
	// The service creds file is what a standalone service is given.
	svc, err := nats.Connect(s.URL(), nats.UserCredentials(s.ServiceCredsFile()))
	if err != nil {
		t.Fatalf("connecting with the service creds file: %v", err)
	}
	svc.Close()
}

// attacker is a node connection with helpers that each try one thing.
type attacker struct {
	nc *nats.Conn
	js jetstream.JetStream
	v  *violations
}

func newAttacker(t *testing.T, s *natstest.Server, node string) attacker {
	t.Helper()
	v := &violations{}
	nc := s.NodeConn(t, node, v.handler())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return attacker{nc: nc, js: js, v: v}
}

func (a attacker) request(subj string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		_, err := a.nc.RequestWithContext(ctx, subj, []byte("{}"))
		return err
	}
}

// publish sends a plain message, which has no answer: it "fails" when
// cancelled, which denied does once the violation arrived.
func (a attacker) publish(subj string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		if err := a.nc.Publish(subj, []byte("{}")); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	}
}

func (a attacker) subscribe(subj string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		sub, err := a.nc.SubscribeSync(subj)
		if err != nil {
			return err
		}
		defer sub.Unsubscribe()
		_, err = sub.NextMsgWithContext(ctx)
		return err
	}
}

func TestNodeCannotReadOtherOwnersBuckets(t *testing.T) {
	f := newFixture(t)
	a := newAttacker(t, f.s, "n1")
	for _, bucket := range []string{subject.BucketUsers, subject.BucketTokens, subject.BucketServers} {
		stream := "KV_" + bucket
		t.Run(bucket, func(t *testing.T) {
			denied(t, a.v, "Publish", "$JS.API.STREAM.INFO."+stream, func(ctx context.Context) error {
				_, err := a.js.KeyValue(ctx, bucket)
				return err
			})
			get := "$JS.API.DIRECT.GET." + stream + ".$KV." + bucket + ".u1"
			denied(t, a.v, "Publish", get, a.request(get))
			denied(t, a.v, "Publish", "$JS.API.DIRECT.GET."+stream, a.request("$JS.API.DIRECT.GET."+stream))
			denied(t, a.v, "Publish", "$JS.API.STREAM.MSG.GET."+stream, a.request("$JS.API.STREAM.MSG.GET."+stream))
			watch := "$JS.API.CONSUMER.CREATE." + stream + ".w.$KV." + bucket + ".>"
			denied(t, a.v, "Publish", watch, a.request(watch))
			denied(t, a.v, "Publish", "$JS.API.CONSUMER.CREATE."+stream, a.request("$JS.API.CONSUMER.CREATE."+stream))
			denied(t, a.v, "Subscription", "$KV."+bucket+".>", a.subscribe("$KV."+bucket+".>"))
		})
	}
}

func TestNodeCannotReadAnotherNodesView(t *testing.T) {
	f := newFixture(t)
	a := newAttacker(t, f.s, "n1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	views, err := a.js.KeyValue(ctx, subject.BucketNodeViews)
	if err != nil {
		t.Fatalf("opening the view bucket: %v", err)
	}
	key := subject.ViewUserKey("n2", "u2")
	denied(t, a.v, "Publish", "$JS.API.DIRECT.GET.KV_node_views.$KV.node_views."+key, func(ctx context.Context) error {
		_, err := views.Get(ctx, key)
		return err
	})
	denied(t, a.v, "Publish", "$JS.API.STREAM.MSG.GET.KV_node_views", a.request("$JS.API.STREAM.MSG.GET.KV_node_views"))
	for _, filter := range []string{"n2.>", "n2.u.u2", "*.u.u2", ">"} {
		denied(t, a.v, "Publish", "$JS.API.CONSUMER.CREATE.KV_node_views.*.$KV.node_views."+filter, func(ctx context.Context) error {
			w, err := views.Watch(ctx, filter)
			if err == nil {
				w.Stop()
			}
			return err
		})
	}
	denied(t, a.v, "Subscription", "$KV.node_views.n2.>", a.subscribe("$KV.node_views.n2.>"))
}

func TestNodeCannotCallServicesOrActForAnotherNode(t *testing.T) {
	f := newFixture(t)
	a := newAttacker(t, f.s, "n1")
	for _, subj := range []string{
		subject.UsersCmd(subject.UsersGet), subject.UsersCmd(subject.UsersCreate),
		subject.ServersCmd(subject.ServersList), subject.JobsCmd("list"),
		subject.AgentCmd("n2", "status"), subject.FleetCmd(subject.FleetAdd),
	} {
		t.Run("request "+subj, func(t *testing.T) { denied(t, a.v, "Publish", subj, a.request(subj)) })
	}
	t.Run("usage of n2", func(t *testing.T) {
		denied(t, a.v, "Publish", subject.Usage("n2"), func(ctx context.Context) error {
			_, err := a.js.Publish(ctx, subject.Usage("n2"), []byte("{}"))
			return err
		})
	})
	t.Run("server status of n2", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		status, err := a.js.KeyValue(ctx, subject.BucketServerStatus)
		if err != nil {
			t.Fatalf("opening server_status: %v", err)
		}
		key := subject.ServerStatusKey("n2", "x")
		denied(t, a.v, "Publish", "$KV.server_status."+key, func(ctx context.Context) error {
			_, err := status.Put(ctx, key, []byte("{}"))
			return err
		})
	})
	for _, subj := range []string{subject.RuntimeEvent("n2", "x"), subject.NodeEvent("n2"), subject.ServerStatusEvent("n2", "x"), subject.HostStats("n2"), subject.UserEvent("u1")} {
		t.Run("publish "+subj, func(t *testing.T) { denied(t, a.v, "Publish", subj, a.publish(subj)) })
	}
	for _, subj := range []string{"_INBOX.>", subject.AgentCmds("n2"), subject.AllEvents, subject.AllUsage, subject.NodeInboxPrefix("n2") + ".>"} {
		t.Run("subscribe "+subj, func(t *testing.T) { denied(t, a.v, "Subscription", subj, a.subscribe(subj)) })
	}
}

// TestNodeCanDoWhatAnAgentDoes is the other half: everything an agent does
// with its own node works under its credential, with no violation.
func TestNodeCanDoWhatAnAgentDoes(t *testing.T) {
	f := newFixture(t)
	a := newAttacker(t, f.s, "n1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("watch its view", func(t *testing.T) {
		views, err := a.js.KeyValue(ctx, subject.BucketNodeViews)
		if err != nil {
			t.Fatalf("opening node_views: %v", err)
		}
		w, err := views.Watch(ctx, subject.NodeView("n1"))
		if err != nil {
			t.Fatalf("watching its view: %v", err)
		}
		defer w.Stop()
		next := func() jetstream.KeyValueEntry {
			t.Helper()
			select {
			case e := <-w.Updates():
				return e
			case <-ctx.Done():
				t.Fatal("no watch update")
			}
			return nil
		}
		if e := next(); e == nil || e.Key() != subject.ViewUserKey("n1", "u1") {
			t.Fatalf("first entry %v, want its own user", e)
		}
		if e := next(); e != nil {
			t.Fatalf("entry %s after its own, want the end of the snapshot", e.Key())
		}
		// The registry writes; the watch sees n1's key and never n2's.
		svcViews, _ := f.js.KeyValue(ctx, subject.BucketNodeViews)
		if _, err := svcViews.Put(ctx, subject.ViewUserKey("n2", "u3"), []byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := svcViews.Put(ctx, subject.ViewUserKey("n1", "u3"), []byte("y")); err != nil {
			t.Fatal(err)
		}
		if e := next(); e == nil || e.Key() != subject.ViewUserKey("n1", "u3") {
			t.Fatalf("update %v, want n1.u.u3", e)
		}
		if e, err := views.Get(ctx, subject.ViewUserKey("n1", "u1")); err != nil || string(e.Value()) != "secret of n1.u.u1" {
			t.Fatalf("reading one entry of its own view: %v", err)
		}
	})
	t.Run("put its server status and read it back", func(t *testing.T) {
		status, err := a.js.KeyValue(ctx, subject.BucketServerStatus)
		if err != nil {
			t.Fatalf("opening server_status: %v", err)
		}
		key := subject.ServerStatusKey("n1", "x")
		if _, err := status.Put(ctx, key, []byte("applied")); err != nil {
			t.Fatalf("putting %s: %v", key, err)
		}
		if e, err := status.Get(ctx, key); err != nil || string(e.Value()) != "applied" {
			t.Fatalf("reading %s back: %v", key, err)
		}
	})
	t.Run("put its registration", func(t *testing.T) {
		nodes, err := a.js.KeyValue(ctx, subject.BucketNodes)
		if err != nil {
			t.Fatalf("opening nodes: %v", err)
		}
		if _, err := nodes.Put(ctx, "n1", []byte("{}")); err != nil {
			t.Fatalf("putting its registration: %v", err)
		}
		if _, err := nodes.Get(ctx, "n1"); err != nil {
			t.Fatalf("reading its registration back: %v", err)
		}
	})
	t.Run("publish usage with an ack", func(t *testing.T) {
		ack, err := a.js.Publish(ctx, subject.Usage("n1"), []byte("{}"), jetstream.WithMsgID("n1:1"))
		if err != nil {
			t.Fatalf("publishing usage: %v", err)
		}
		if ack.Stream != subject.StreamUsage {
			t.Fatalf("ack from %s, want %s", ack.Stream, subject.StreamUsage)
		}
	})
	t.Run("publish its events and stats", func(t *testing.T) {
		for _, subj := range []string{subject.RuntimeEvent("n1", "x"), subject.NodeEvent("n1"), subject.ServerStatusEvent("n1", "x"), subject.HostStats("n1")} {
			if _, err := a.js.Publish(ctx, subj, []byte("{}")); err != nil {
				t.Fatalf("publishing %s: %v", subj, err)
			}
		}
	})
	t.Run("serve its commands with micro", func(t *testing.T) {
		srv, err := micro.AddService(a.nc, micro.Config{
			Name: subject.AgentServiceName, Version: "1.0.0", QueueGroup: subject.AgentQueueGroup("n1"),
		})
		if err != nil {
			t.Fatalf("adding the agent service: %v", err)
		}
		defer srv.Stop()
		err = srv.AddEndpoint("status", micro.HandlerFunc(func(r micro.Request) { _ = r.Respond([]byte("n1 ok")) }),
			micro.WithEndpointSubject(subject.AgentCmd("n1", "status")))
		if err != nil {
			t.Fatalf("adding the status endpoint: %v", err)
		}
		if err := a.nc.Flush(); err != nil { // the subscriptions reach the server
			t.Fatal(err)
		}
		msg, err := f.svc.RequestWithContext(ctx, subject.AgentCmd("n1", "status"), nil)
		if err != nil || string(msg.Data) != "n1 ok" {
			t.Fatalf("status of n1: %v %v", msg, err)
		}
		// Discovery: the service answers a PING for its name.
		ping, err := f.svc.RequestWithContext(ctx, "$SRV.PING."+subject.AgentServiceName, nil)
		if err != nil || !strings.Contains(string(ping.Data), subject.AgentServiceName) {
			t.Fatalf("micro discovery: %v %v", ping, err)
		}
	})
	a.v.mu.Lock()
	defer a.v.mu.Unlock()
	for _, v := range a.v.seen { // each one is a grant the agent lacks
		t.Errorf("an agent's own work met a permission violation: %s to %s", v.action, v.subject)
	}
}

func TestRevokedNodeIsDisconnectedAndCannotReconnect(t *testing.T) {
	s := natstest.Start(t)
	cred := s.NodeCredential(t, "n1")
	pub, err := cred.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var lastErr error
	disconnected := make(chan struct{}, 16)
	nc := s.ConnAs(t, cred,
		nats.CustomInboxPrefix(subject.NodeInboxPrefix("n1")),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { disconnected <- struct{}{} }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			lastErr = err
			mu.Unlock()
		}),
	)
	other := s.NodeConn(t, "n2")

	s.Revoke(pub)
	select {
	case <-disconnected:
	case <-time.After(time.Second):
		t.Fatal("the revoked node was still connected 1 s after the revocation")
	}
	// nats.go retries, meets the refusal twice and gives up: closed.
	waitfor.Cond(t, 10*time.Second, func() error {
		if !nc.IsClosed() {
			return fmt.Errorf("revoked connection is %s, want closed", nc.Status())
		}
		return nil
	})
	mu.Lock()
	if !errors.Is(lastErr, nats.ErrAuthRevoked) && !errors.Is(lastErr, nats.ErrAuthorization) {
		t.Errorf("last error %v, want revoked or authorization violation", lastErr)
	}
	mu.Unlock()
	if _, err := nats.Connect(s.URL(), cred.Option()); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("new connection with the revoked credential: %v, want an authorization violation", err)
	}
	if !other.IsConnected() {
		t.Fatal("revoking n1 disconnected n2")
	}
	if !s.Trust().Revoked(pub) || !load(t, s.Trust().Dir()).Revoked(pub) {
		t.Fatal("the trust does not keep the revoked key")
	}

	// The revocation is kept: after a restart the credential is refused.
	s.Restart()
	if _, err := nats.Connect(s.URL(), cred.Option()); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("revoked credential after a restart: %v, want an authorization violation", err)
	}
	waitfor.Cond(t, 10*time.Second, func() error {
		if !other.IsConnected() {
			return errors.New("n2 has not reconnected after the restart")
		}
		return nil
	})
}

func TestJoinCredential(t *testing.T) {
	f := newFixture(t)
	const id = "tok1"
	t.Run("sends its join request and nothing else", func(t *testing.T) {
		cred, err := f.s.Trust().JoinCredential(id, time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		v := &violations{}
		a := attacker{v: v, nc: f.s.ConnAs(t, cred, nats.CustomInboxPrefix(subject.JoinInboxPrefix(id)), v.handler())}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if msg, err := a.nc.RequestWithContext(ctx, subject.FleetJoin(id), []byte("{}")); err != nil || string(msg.Data) != "ok" {
			t.Fatalf("join request: %v %v", msg, err)
		}
		denied(t, v, "Publish", subject.FleetJoin("tok2"), a.request(subject.FleetJoin("tok2")))
		denied(t, v, "Publish", subject.Usage("n1"), a.publish(subject.Usage("n1")))
		denied(t, v, "Publish", subject.UsersCmd(subject.UsersList), a.request(subject.UsersCmd(subject.UsersList)))
		denied(t, v, "Publish", "$JS.API.STREAM.INFO.KV_node_views", a.request("$JS.API.STREAM.INFO.KV_node_views"))
		denied(t, v, "Subscription", subject.AgentCmds("n1"), a.subscribe(subject.AgentCmds("n1")))
		denied(t, v, "Subscription", "_INBOX.>", a.subscribe("_INBOX.>"))
	})
	t.Run("is refused once expired", func(t *testing.T) {
		cred, err := f.s.Trust().JoinCredential(id, time.Now().Add(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		closed := make(chan struct{})
		nc, err := nats.Connect(f.s.URL(), cred.Option(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
			nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
			nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		if err != nil {
			t.Fatalf("connecting before expiry: %v", err)
		}
		defer nc.Close()
		// The server closes the live connection at expiry and refuses
		// the credential from then on.
		waitfor.Cond(t, 10*time.Second, func() error {
			select {
			case <-closed:
				return nil
			default:
				return fmt.Errorf("connection %s, want closed after expiry", nc.Status())
			}
		})
		// JWT expiry has a resolution of a second: within the second it
		// expires in, a connection is accepted and closed at once; after
		// it, refused.
		waitfor.Cond(t, 10*time.Second, func() error {
			nc, err := nats.Connect(f.s.URL(), cred.Option(), nats.MaxReconnects(0))
			if err == nil {
				nc.Close()
				return errors.New("the expired credential still connects")
			}
			if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authentication expired") {
				t.Fatalf("expired credential: %v, want it refused", err)
			}
			return nil
		})
	})
}
