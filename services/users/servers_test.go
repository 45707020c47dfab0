package users_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vpnfleet/vpnfleet/services/users/internal/links"
	"github.com/vpnfleet/vpnfleet/services/users/internal/serverkeys"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

func vlessIn(port int) server.InboundRequest {
	return server.InboundRequest{Protocol: user.VLESSReality, Port: port, Dest: "www.example.com:443"}
}

// allProtocols is one inbound of every protocol on ports base, base+1, ...
func allProtocols(base int) []server.InboundRequest {
	return []server.InboundRequest{
		vlessIn(base),
		{Protocol: user.Shadowsocks2022, Port: base + 1},
		{Protocol: user.SOCKS5, Port: base + 2},
		{Protocol: user.HTTP, Port: base + 3},
	}
}

func (h *harness) createServer(node, name string, ins ...server.InboundRequest) server.Server {
	h.t.Helper()
	return mustServers[server.Server](h, subject.ServersCreate, server.CreateRequest{Node: node, Name: name, Inbounds: ins})
}

// serverEvents returns every event published about server id, in order.
func (h *harness) serverEvents(id string) []event.Envelope {
	h.t.Helper()
	return natstest.Events(h.t, h.js, subject.ServerEvent(id))
}

// reportStatus writes a server's status the way its agent does (into the
// server_status bucket, naming the spec applied). It returns the revision
// of the server record the report is about.
func (h *harness) reportStatus(id string, st server.Status) uint64 {
	h.t.Helper()
	kv, err := h.js.KeyValue(ctxT(h.t), subject.BucketServers)
	if err != nil {
		h.t.Fatal(err)
	}
	e, err := kv.Get(ctxT(h.t), id)
	if err != nil {
		h.t.Fatal(err)
	}
	var s server.Server
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		h.t.Fatal(err)
	}
	s.Revision = e.Revision()
	natstest.ReportStatus(h.t, h.js, s, st)
	return s.Revision
}

func applied(host string) server.Status {
	return server.Status{State: server.StateApplied, PublicHost: host}
}

func TestServersCRUDOverNATS(t *testing.T) {
	h := newHarness(t)
	h.start()

	s := h.createServer("n1", "fra", allProtocols(443)...)
	if s.ID == "" || s.Revision == 0 || s.Node != "n1" || s.Engine != server.EngineXray || s.Status.State != server.StatePending || len(s.Inbounds) != 4 {
		t.Fatalf("created %+v", s)
	}
	r := s.Inbounds[0].Reality
	priv, err := base64.RawURLEncoding.DecodeString(r.PrivateKey)
	if err != nil || len(priv) != 32 {
		t.Fatalf("private key decodes to %d bytes: %v", len(priv), err)
	}
	if pair, err := serverkeys.X25519FromPrivate(r.PrivateKey); err != nil || pair.Public != r.PublicKey {
		t.Fatalf("public key is not derived from the private key: %v", err)
	}
	if key, err := base64.StdEncoding.DecodeString(s.Inbounds[1].Shadowsocks.ServerKey); err != nil || len(key) != 16 {
		t.Fatalf("server key decodes to %d bytes: %v", len(key), err)
	}

	got := mustServers[server.Server](h, subject.ServersGet, server.GetRequest{ID: s.ID})
	if got.Revision != s.Revision || got.Inbounds[0].Reality.PrivateKey != r.PrivateKey {
		t.Fatalf("get %+v", got)
	}

	b := h.createServer("n0", "zzz", vlessIn(443))
	c := h.createServer("n1", "Ams", vlessIn(8443))
	all := mustServers[server.ListResponse](h, subject.ServersList, server.ListRequest{})
	var order []string
	for _, x := range all.Servers {
		order = append(order, x.Node+"/"+x.Name)
	}
	if want := []string{"n0/zzz", "n1/Ams", "n1/fra"}; !slices.Equal(order, want) {
		t.Fatalf("list order %v, want %v", order, want)
	}
	n1 := mustServers[server.ListResponse](h, subject.ServersList, server.ListRequest{Node: "n1"})
	if len(n1.Servers) != 2 || n1.Servers[0].ID != c.ID || n1.Servers[1].ID != s.ID {
		t.Fatalf("list of n1: %+v", n1.Servers)
	}
	if none := mustServers[server.ListResponse](h, subject.ServersList, server.ListRequest{Node: "n9"}); none.Servers == nil || len(none.Servers) != 0 {
		t.Fatalf("list of an empty node: %+v", none)
	}

	up := mustServers[server.Server](h, subject.ServersUpdate, server.UpdateRequest{ID: s.ID, ExpectedRevision: s.Revision, Name: ptr("fra-2")})
	if up.Name != "fra-2" || up.Revision <= s.Revision || up.Inbounds[0].Reality.PrivateKey != r.PrivateKey {
		t.Fatalf("updated %+v", up)
	}
	if _, err := callServers[server.Server](h, subject.ServersUpdate, server.UpdateRequest{ID: s.ID, ExpectedRevision: s.Revision, Name: ptr("x")}); !errors.Is(err, errs.Conflict) {
		t.Fatalf("update at a stale revision: %v, want Conflict", err)
	}
	if _, err := callServers[server.DeleteResponse](h, subject.ServersDelete, server.DeleteRequest{ID: s.ID, ExpectedRevision: s.Revision}); !errors.Is(err, errs.Conflict) {
		t.Fatalf("delete at a stale revision: %v, want Conflict", err)
	}
	// Nothing to change: no write, no event.
	same := mustServers[server.Server](h, subject.ServersUpdate, server.UpdateRequest{ID: s.ID, Name: ptr("fra-2"), Inbounds: ptr(allProtocols(443))})
	if same.Revision != up.Revision {
		t.Fatalf("a no-op update wrote revision %d", same.Revision)
	}

	del := mustServers[server.DeleteResponse](h, subject.ServersDelete, server.DeleteRequest{ID: s.ID, ExpectedRevision: up.Revision})
	if del.ID != s.ID || del.Revision <= up.Revision {
		t.Fatalf("deleted %+v", del)
	}
	if _, err := callServers[server.Server](h, subject.ServersGet, server.GetRequest{ID: s.ID}); !errors.Is(err, errs.NotFound) {
		t.Fatalf("get after delete: %v, want NotFound", err)
	}
	if _, err := callServers[server.DeleteResponse](h, subject.ServersDelete, server.DeleteRequest{ID: s.ID}); !errors.Is(err, errs.NotFound) {
		t.Fatalf("second delete: %v, want NotFound", err)
	}
	if n := mustServers[server.ListResponse](h, subject.ServersList, server.ListRequest{}); len(n.Servers) != 2 {
		t.Fatalf("%d servers after delete, want 2", len(n.Servers))
	}

	// One event per change, each with id <server>:<revision> (the helper
	// also checks it is the Nats-Msg-Id), none with a secret.
	evs := h.serverEvents(s.ID)
	want := []struct {
		typ event.Type
		rev uint64
	}{{event.ServerCreated, s.Revision}, {event.ServerUpdated, up.Revision}, {event.ServerDeleted, del.Revision}}
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d", len(evs), len(want))
	}
	for i, e := range evs {
		if e.Type != want[i].typ || e.ID != fmt.Sprintf("%s:%d", s.ID, want[i].rev) {
			t.Fatalf("event %d: %s %s, want %s %s:%d", i, e.Type, e.ID, want[i].typ, s.ID, want[i].rev)
		}
		if strings.Contains(string(e.Data), r.PrivateKey) || strings.Contains(string(e.Data), s.Inbounds[1].Shadowsocks.ServerKey) {
			t.Fatalf("event %s carries a secret", e.ID)
		}
		var p server.Event
		if err := e.Decode(&p); err != nil || p.Server.ID != s.ID || p.Server.Inbounds[0].Reality.PublicKey != r.PublicKey {
			t.Fatalf("event %s payload %+v: %v", e.ID, p.Server, err)
		}
	}
	if evs := h.serverEvents(b.ID); len(evs) != 1 || evs[0].ID != fmt.Sprintf("%s:%d", b.ID, b.Revision) {
		t.Fatalf("events of %s: %+v", b.ID, evs)
	}
}

// TestServerNamesAndPortsAreTakenPerNode checks uniqueness against every
// server of the node, and only of the node.
func TestServerNamesAndPortsAreTakenPerNode(t *testing.T) {
	h := newHarness(t)
	h.start()
	a := h.createServer("n1", "fra", vlessIn(443), server.InboundRequest{Protocol: user.SOCKS5, Port: 1080})
	b := h.createServer("n1", "ams", vlessIn(8443))

	tests := []struct {
		name     string
		endpoint string
		req      any
		field    string
		rule     string
	}{
		{"a taken port", subject.ServersCreate, server.CreateRequest{Node: "n1", Name: "new", Inbounds: []server.InboundRequest{{Protocol: user.HTTP, Port: 1080}}},
			"inbounds[0].port", fmt.Sprintf("port 1080 is taken by inbound socks5 of server fra (%s)", a.ID)},
		{"a taken name in another case", subject.ServersCreate, server.CreateRequest{Node: "n1", Name: "FRA", Inbounds: []server.InboundRequest{vlessIn(9443)}},
			"name", a.ID},
		{"an update to a taken port", subject.ServersUpdate, server.UpdateRequest{ID: b.ID, Inbounds: &[]server.InboundRequest{vlessIn(443)}},
			"inbounds[0].port", fmt.Sprintf("port 443 is taken by inbound vless-reality of server fra (%s)", a.ID)},
		{"a rename to a taken name", subject.ServersUpdate, server.UpdateRequest{ID: b.ID, Name: ptr("Fra")}, "name", a.ID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := callServers[server.Server](h, tt.endpoint, tt.req)
			if !errors.Is(err, errs.Conflict) {
				t.Fatalf("err %v, want Conflict", err)
			}
			fe := errs.FieldsOf(err)
			if len(fe) != 1 || fe[0].Field != tt.field || !strings.Contains(fe[0].Rule, tt.rule) {
				t.Fatalf("fields %v, want %s naming %q", fe, tt.field, tt.rule)
			}
		})
	}

	// The same name and ports on another node are free; so are a deleted
	// server's.
	h.createServer("n2", "fra", vlessIn(443), server.InboundRequest{Protocol: user.SOCKS5, Port: 1080})
	mustServers[server.DeleteResponse](h, subject.ServersDelete, server.DeleteRequest{ID: a.ID})
	h.createServer("n1", "fra", vlessIn(443))
	// A server may move its own inbound to another port and back.
	moved := mustServers[server.Server](h, subject.ServersUpdate, server.UpdateRequest{ID: b.ID, Inbounds: &[]server.InboundRequest{vlessIn(8444)}})
	mustServers[server.Server](h, subject.ServersUpdate, server.UpdateRequest{ID: b.ID, ExpectedRevision: moved.Revision, Inbounds: &[]server.InboundRequest{vlessIn(8443)}})
}

// TestConcurrentCreatesOfOnePortOneWins races creates that want one port
// of one node across two replicas: exactly one gets it.
func TestConcurrentCreatesOfOnePortOneWins(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.start()
	const n = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, conflicts int
	var other []error
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := callServers[server.Server](h, subject.ServersCreate, server.CreateRequest{Node: "n1", Name: fmt.Sprintf("s%d", i), Inbounds: []server.InboundRequest{vlessIn(443)}})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, errs.Conflict):
				conflicts++
			default:
				other = append(other, err)
			}
		}()
	}
	wg.Wait()
	if ok != 1 || conflicts != n-1 || len(other) > 0 {
		t.Fatalf("%d successes, %d conflicts, other errors %v; want 1 and %d", ok, conflicts, other, n-1)
	}
	if list := mustServers[server.ListResponse](h, subject.ServersList, server.ListRequest{Node: "n1"}); len(list.Servers) != 1 {
		t.Fatalf("%d servers on n1, want 1", len(list.Servers))
	}
}

func TestServerBadInputNamesTheField(t *testing.T) {
	h := newHarness(t)
	h.start()
	zero := base64.RawURLEncoding.EncodeToString(make([]byte, 32))
	create := func(ins ...server.InboundRequest) server.CreateRequest {
		return server.CreateRequest{Node: "n1", Name: "s", Inbounds: ins}
	}
	tests := []struct {
		name     string
		endpoint string
		req      any
		class    errs.Class
		field    string
	}{
		{"bad node", subject.ServersCreate, server.CreateRequest{Node: "a.b", Name: "s", Inbounds: []server.InboundRequest{vlessIn(443)}}, errs.Invalid, "node"},
		{"no inbounds", subject.ServersCreate, create(), errs.Invalid, "inbounds"},
		{"bad port", subject.ServersCreate, create(vlessIn(0)), errs.Invalid, "inbounds[0].port"},
		{"bad dest", subject.ServersCreate, create(server.InboundRequest{Protocol: user.VLESSReality, Port: 443, Dest: "example.com"}), errs.Invalid, "inbounds[0].dest"},
		{"ip dest, no sni", subject.ServersCreate, create(server.InboundRequest{Protocol: user.VLESSReality, Port: 443, Dest: "1.1.1.1:443"}), errs.Invalid, "inbounds[0].server_names"},
		{"bad sni", subject.ServersCreate, create(server.InboundRequest{Protocol: user.VLESSReality, Port: 443, Dest: "a.com:443", ServerNames: []string{"a.com", "-x"}}), errs.Invalid, "inbounds[0].server_names[1]"},
		{"zero key", subject.ServersCreate, create(server.InboundRequest{Protocol: user.VLESSReality, Port: 443, Dest: "a.com:443", PrivateKey: zero}), errs.Invalid, "inbounds[0].private_key"},
		{"undecodable key", subject.ServersCreate, create(server.InboundRequest{Protocol: user.Shadowsocks2022, Port: 8388, ServerKey: "not base64!"}), errs.Invalid, "inbounds[0].server_key"},
		{"chacha20", subject.ServersCreate, create(server.InboundRequest{Protocol: user.Shadowsocks2022, Port: 8388, Method: user.SS2022ChaCha20Poly1305}), errs.Invalid, "inbounds[0].method"},
		{"bad listen", subject.ServersCreate, create(server.InboundRequest{Protocol: user.SOCKS5, Port: 1080, Listen: "eth0"}), errs.Invalid, "inbounds[0].listen"},
		{"tag api", subject.ServersCreate, create(server.InboundRequest{Protocol: user.HTTP, Tag: "api", Port: 80}), errs.Invalid, "inbounds[0].tag"},
		{"get bad id", subject.ServersGet, server.GetRequest{ID: "x"}, errs.Invalid, "id"},
		{"get unknown id", subject.ServersGet, server.GetRequest{ID: "0b9a3bd4-8a4e-4d0b-9f5f-1d0f1c1e2a3b"}, errs.NotFound, ""},
		{"list bad node", subject.ServersList, server.ListRequest{Node: "a b"}, errs.Invalid, "node"},
		{"update bad name", subject.ServersUpdate, server.UpdateRequest{ID: "0b9a3bd4-8a4e-4d0b-9f5f-1d0f1c1e2a3b", Name: ptr("")}, errs.Invalid, "name"},
		{"update unknown id", subject.ServersUpdate, server.UpdateRequest{ID: "0b9a3bd4-8a4e-4d0b-9f5f-1d0f1c1e2a3b", Name: ptr("x")}, errs.NotFound, ""},
		{"delete bad id", subject.ServersDelete, server.DeleteRequest{}, errs.Invalid, "id"},
		{"undecodable body", subject.ServersCreate, "not an object", errs.Invalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := bus.Request[json.RawMessage](ctxT(t), h.nc, subject.ServersCmd(tt.endpoint), tt.req)
			if !errors.Is(err, tt.class) {
				t.Fatalf("err %v, want %v", err, tt.class)
			}
			if tt.field == "" {
				return
			}
			fe := errs.FieldsOf(err)
			if len(fe) != 1 || fe[0].Field != tt.field {
				t.Fatalf("fields %v, want only %s", fe, tt.field)
			}
		})
	}
	if n := mustServers[server.ListResponse](h, subject.ServersList, server.ListRequest{}); len(n.Servers) != 0 {
		t.Fatalf("%d servers after rejected creates", len(n.Servers))
	}
}

// TestServerUpdateKeepsKeysAndStatus plays the agent: its report lives in
// the server_status bucket, apart from the desired record, so the
// registry's writes never touch it; a report stays current while the spec
// it names is the server's.
func TestServerUpdateKeepsKeysAndStatus(t *testing.T) {
	h := newHarness(t)
	h.start()
	s := h.createServer("n1", "fra", allProtocols(443)...)
	rev := h.reportStatus(s.ID, applied("fra.example.net"))
	if got := mustServers[server.Server](h, subject.ServersGet, server.GetRequest{ID: s.ID}); got.Revision != s.Revision || got.Status.State != server.StateApplied {
		t.Fatalf("after the agent's report: revision %d (want %d, the record is untouched), status %+v", got.Revision, s.Revision, got.Status)
	}
	// A rename is a new revision of the record and leaves the report.
	renamed := mustServers[server.Server](h, subject.ServersUpdate, server.UpdateRequest{ID: s.ID, Name: ptr("fra-2")})
	if renamed.Status.State != server.StateApplied || renamed.Status.PublicHost != "fra.example.net" || renamed.Status.AppliedRevision != s.Revision || renamed.Revision <= rev {
		t.Fatalf("status after a rename: %+v (revision %d)", renamed.Status, renamed.Revision)
	}
	// Moving the vless inbound is a spec change: back to pending, keys kept.
	ins := allProtocols(443)
	ins[0].Port = 8443
	moved := mustServers[server.Server](h, subject.ServersUpdate, server.UpdateRequest{ID: s.ID, ExpectedRevision: renamed.Revision, Inbounds: &ins})
	if moved.Status.State != server.StatePending || moved.Inbounds[0].Port != 8443 {
		t.Fatalf("after moving a port: %+v", moved)
	}
	for i, in := range moved.Inbounds {
		old := s.Inbounds[i]
		if in.Tag != old.Tag {
			t.Fatalf("inbound %d tag %s, want %s", i, in.Tag, old.Tag)
		}
		if in.Reality != nil && (in.Reality.PrivateKey != old.Reality.PrivateKey || in.Reality.PublicKey != old.Reality.PublicKey || !slices.Equal(in.Reality.ShortIDs, old.Reality.ShortIDs)) {
			t.Fatalf("inbound %s lost its reality keys", in.Tag)
		}
		if in.Shadowsocks != nil && in.Shadowsocks.ServerKey != old.Shadowsocks.ServerKey {
			t.Fatalf("inbound %s lost its server key", in.Tag)
		}
	}
	evs := h.serverEvents(s.ID)
	var p server.Event
	if len(evs) != 3 || evs[2].Decode(&p) != nil || !p.SpecChanged {
		t.Fatalf("events %d, last %+v; want created, updated, updated with spec_changed", len(evs), p)
	}
}

// TestLinksFromARegisteredServer follows a server from create to applied
// and checks the user's links through the links endpoint.
func TestLinksFromARegisteredServer(t *testing.T) {
	h := newHarness(t)
	h.start()
	u := h.create("lena")
	s := h.createServer("n1", "fra", allProtocols(443)...)

	resp := must[user.LinksResponse](h, subject.UsersLinks, user.LinksRequest{ID: u.ID})
	if len(resp.Links) != 0 || len(resp.Missing) != 4 {
		t.Fatalf("links of a pending server: %+v", resp)
	}
	for _, m := range resp.Missing {
		if m.Server != s.ID || m.Reason != "server is not applied yet" {
			t.Fatalf("missing %+v, want the pending server's reason", m)
		}
	}

	h.reportStatus(s.ID, applied("fra.example.net"))
	resp = must[user.LinksResponse](h, subject.UsersLinks, user.LinksRequest{ID: u.ID})
	if len(resp.Links) != 4 || len(resp.Missing) != 0 {
		t.Fatalf("links of an applied server: %+v", resp)
	}
	c, r := u.Credentials, s.Inbounds[0].Reality
	want := map[user.Protocol]links.Params{
		user.VLESSReality:    {UUID: c.VLESS.UUID, Flow: user.FlowVision, SNI: "www.example.com", PublicKey: r.PublicKey, ShortID: r.ShortIDs[0], Fingerprint: "chrome"},
		user.Shadowsocks2022: {Method: user.SS2022AES128GCM, Password: s.Inbounds[1].Shadowsocks.ServerKey + ":" + c.Shadowsocks.Key},
		user.SOCKS5:          {Username: c.SOCKS5.Username, Password: c.SOCKS5.Password},
		user.HTTP:            {Username: c.HTTP.Username, Password: c.HTTP.Password},
	}
	schemes := map[user.Protocol]string{user.VLESSReality: "vless://", user.Shadowsocks2022: "ss://", user.SOCKS5: "socks5://", user.HTTP: "http://"}
	for i, l := range resp.Links {
		in := s.Inbounds[i]
		if l.Server != s.ID || l.Inbound != in.Tag || l.Protocol != in.Protocol || !strings.HasPrefix(l.URL, schemes[in.Protocol]) {
			t.Fatalf("link %d: %+v", i, l)
		}
		got, err := links.Parse(l.URL)
		if err != nil {
			t.Fatalf("%s: %v", l.URL, err)
		}
		w := want[in.Protocol]
		w.Protocol, w.Host, w.Port, w.Name = in.Protocol, "fra.example.net", in.Port, "lena@fra"
		if got != w {
			t.Fatalf("link %s\nparses to %+v\nwant      %+v", l.URL, got, w)
		}
	}

	// A spec change sends it back to pending until the agent applies it.
	ins := allProtocols(443)
	ins[2].Port = 1081
	mustServers[server.Server](h, subject.ServersUpdate, server.UpdateRequest{ID: s.ID, Inbounds: &ins})
	resp = must[user.LinksResponse](h, subject.UsersLinks, user.LinksRequest{ID: u.ID})
	if len(resp.Links) != 0 || len(resp.Missing) != 4 || resp.Missing[0].Reason != "server is not applied yet" {
		t.Fatalf("links after a spec change: %+v", resp)
	}

	// Applied again, then its node is revoked: it gets no desired state
	// any more, and users get no link to it.
	h.reportStatus(s.ID, applied("fra.example.net"))
	if resp = must[user.LinksResponse](h, subject.UsersLinks, user.LinksRequest{ID: u.ID}); len(resp.Links) != 4 {
		t.Fatalf("links after the new spec was applied: %+v", resp)
	}
	enrolls, err := h.js.KeyValue(ctxT(t), subject.BucketEnrollments)
	if err != nil {
		t.Fatal(err)
	}
	en, _ := json.Marshal(node.Enrollment{ID: "n1", State: node.EnrollRevoked})
	if _, err := enrolls.Put(ctxT(t), "n1", en); err != nil {
		t.Fatal(err)
	}
	if resp = must[user.LinksResponse](h, subject.UsersLinks, user.LinksRequest{ID: u.ID}); len(resp.Links) != 0 {
		t.Fatalf("links to a revoked node's server: %+v", resp)
	}
}
