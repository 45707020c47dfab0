package gateway_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/api"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// TestNodeEnrollment drives a node's life through the API the way an
// operator and a new host do: an admin adds it (the token decodes and is
// in that response only), it is listed as pending, its host joins with
// the token and connects with its own credential, an operator regroups
// it (the node list shows the enrollment's groups, not the agent's), and
// an admin revokes it: the host's connection is closed and its credential
// refused at once, and the lists say revoked. Every change is audited.
func TestNodeEnrollment(t *testing.T) {
	h := newHarness(t)

	for _, role := range []string{"viewer", "operator"} {
		r := h.do("POST", "/api/v1/nodes", role, map[string]any{"name": "eu1"})
		if r.status != http.StatusForbidden {
			t.Fatalf("add as %s: %d %s, want 403", role, r.status, r.body)
		}
	}

	var added node.AddResponse
	before := time.Now()
	r := h.mustJSON("POST", "/api/v1/nodes", "admin", map[string]any{"name": "eu1", "groups": []string{"eu", "de"}, "ttl": "2h"}, http.StatusCreated, &added)
	tok, err := natsauth.DecodeJoinToken(added.Token)
	if err != nil {
		t.Fatalf("the join token does not decode: %v", err)
	}
	en := added.Enrollment
	switch {
	case tok.Node != "eu1" || tok.TokenID == "" || tok.TokenID != en.JoinTokenID || !slices.Equal(tok.URLs, []string{h.ns.URL()}):
		t.Fatalf("token %+v for enrollment %+v", tok, en)
	case added.Command != "vpn-agent --join "+added.Token:
		t.Fatalf("command %q", added.Command)
	case added.Expires.Before(before.Add(2*time.Hour-time.Minute)) || added.Expires.After(time.Now().Add(2*time.Hour)) || !tok.Expires.Equal(added.Expires):
		t.Fatalf("expires %s (token %s), want in 2h", added.Expires, tok.Expires)
	case en.ID != "eu1" || en.State != node.EnrollPending || !slices.Equal(en.Groups, []string{"de", "eu"}):
		t.Fatalf("enrollment %+v", en)
	case r.header.Get("Location") != "/api/v1/nodes/eu1" || !strings.Contains(r.header.Get("Cache-Control"), "no-store"):
		t.Fatalf("headers %v", r.header)
	}

	// Listed, never with the token; pending in the node list before its
	// agent ever registers.
	var ens node.EnrollmentsResponse
	r = h.mustJSON("GET", "/api/v1/enrollments", "viewer", nil, http.StatusOK, &ens)
	if len(ens.Enrollments) != 1 || ens.Enrollments[0].State != node.EnrollPending || strings.Contains(r.String(), tok.Seed) || strings.Contains(r.String(), tok.JWT) {
		t.Fatalf("enrollments: %s", r.body)
	}
	var list api.NodeList
	h.mustJSON("GET", "/api/v1/nodes", "viewer", nil, http.StatusOK, &list)
	if len(list.Nodes) != 1 || list.Nodes[0].ID != "eu1" || list.Nodes[0].State != node.EnrollPending || list.Nodes[0].Enrollment != node.EnrollPending ||
		list.Nodes[0].Healthy || !slices.Equal(list.Nodes[0].Groups, []string{"de", "eu"}) {
		t.Fatalf("node list before the node registered: %+v", list)
	}
	var detail api.NodeDetail
	h.mustJSON("GET", "/api/v1/nodes/eu1", "viewer", nil, http.StatusOK, &detail)
	if detail.State != node.EnrollPending || detail.Healthy {
		t.Fatalf("pending node: %+v", detail)
	}

	// The host joins as vpn-agent --join does, with a key only it holds
	// (the seed of a fresh node credential; its JWT is thrown away: the
	// one used is the fleet's).
	key := h.ns.NodeCredential(t, "eu1")
	pub, err := key.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	opts, err := tok.Options()
	if err != nil {
		t.Fatal(err)
	}
	joinConn, err := nats.Connect(tok.ServerURLs(), opts...)
	if err != nil {
		t.Fatalf("connecting with the join token: %v", err)
	}
	joined, err := bus.Request[node.JoinResponse](ctxT(t), joinConn, subject.FleetJoin(tok.TokenID), node.JoinRequest{Node: "eu1", PublicKey: pub})
	joinConn.Close()
	if err != nil {
		t.Fatalf("joining: %v", err)
	}
	cred := natsauth.Credential{JWT: joined.JWT, Seed: key.Seed}
	hostConn := h.ns.ConnAs(t, cred, nats.CustomInboxPrefix(subject.NodeInboxPrefix("eu1")), nats.NoReconnect())

	// The agent registers claiming groups of its own; the list shows the
	// enrollment's.
	h.putNode("eu1", time.Now())
	kv, err := h.js.KeyValue(ctxT(t), subject.BucketNodes)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctxT(t), "eu1")
	if err != nil {
		t.Fatal(err)
	}
	var reg node.Node
	_ = json.Unmarshal(e.Value(), &reg)
	reg.Groups = []string{"claimed-by-agent"}
	data, _ := json.Marshal(reg)
	if _, err := kv.Put(ctxT(t), "eu1", data); err != nil {
		t.Fatal(err)
	}
	if r := h.do("POST", "/api/v1/nodes", "admin", map[string]any{"name": "eu1"}); r.status != http.StatusConflict {
		t.Fatalf("adding a joined node: %d %s, want 409", r.status, r.body)
	}

	if r := h.do("PUT", "/api/v1/nodes/eu1/groups", "viewer", map[string]any{"groups": []string{"asia"}}); r.status != http.StatusForbidden {
		t.Fatalf("regroup as viewer: %d", r.status)
	}
	h.mustJSON("PUT", "/api/v1/nodes/eu1/groups", "operator", map[string]any{"groups": []string{"asia", "eu"}}, http.StatusOK, &en)
	if en.State != node.EnrollJoined || !slices.Equal(en.Groups, []string{"asia", "eu"}) {
		t.Fatalf("regrouped: %+v", en)
	}
	h.mustJSON("GET", "/api/v1/nodes", "viewer", nil, http.StatusOK, &list)
	if len(list.Nodes) != 1 || list.Nodes[0].Enrollment != node.EnrollJoined || list.Nodes[0].State != node.StateRunning ||
		!slices.Equal(list.Nodes[0].Groups, []string{"asia", "eu"}) || list.EnrollmentError != "" {
		t.Fatalf("node list after joining and regrouping: %+v", list)
	}

	if r := h.do("POST", "/api/v1/nodes/eu1/revoke", "operator", nil); r.status != http.StatusForbidden {
		t.Fatalf("revoke as operator: %d", r.status)
	}
	h.mustJSON("POST", "/api/v1/nodes/eu1/revoke", "admin", nil, http.StatusOK, &en)
	if en.State != node.EnrollRevoked || en.RevokedAt.IsZero() {
		t.Fatalf("revoked: %+v", en)
	}
	// The server refuses the credential from the moment revoke answers,
	// and has closed the host's connection.
	if nc, err := nats.Connect(h.ns.URL(), cred.Option()); err == nil {
		nc.Close()
		t.Fatal("a revoked node's credential still connects")
	}
	waitfor.Cond(t, 10*time.Second, func() error {
		if !hostConn.IsClosed() {
			return errors.New("the revoked node's connection is still open")
		}
		return nil
	})
	h.mustJSON("GET", "/api/v1/nodes/eu1", "viewer", nil, http.StatusOK, &detail)
	if detail.Enrollment != node.EnrollRevoked || detail.ID != "eu1" {
		t.Fatalf("revoked node: %+v", detail)
	}
	h.mustJSON("GET", "/api/v1/enrollments", "viewer", nil, http.StatusOK, &ens)
	if len(ens.Enrollments) != 1 || ens.Enrollments[0].State != node.EnrollRevoked {
		t.Fatalf("enrollments after revoke: %+v", ens)
	}

	waitfor.Cond(t, 10*time.Second, func() error {
		want := map[string]string{"nodes.add": "node/eu1", "nodes.groups": "node/eu1", "nodes.revoke": "node/eu1"}
		for _, role := range []string{"admin", "operator"} {
			for _, a := range h.auditOf(t, role) {
				if want[a.Action] == a.Target && a.Result == "ok" {
					delete(want, a.Action)
				}
			}
		}
		if len(want) > 0 {
			return fmt.Errorf("no audit record of %v", want)
		}
		return nil
	})
}

// TestNodeEnrollmentRefusals checks the refusals of the enrollment routes:
// each names what is wrong (the body's own field names) or what is
// missing.
func TestNodeEnrollmentRefusals(t *testing.T) {
	h := newHarness(t)
	h.mustJSON("POST", "/api/v1/nodes", "admin", map[string]any{"name": "eu1"}, http.StatusCreated, nil)
	for _, c := range []struct {
		name, method, path string
		body               any
		status             int
		code, field        string
	}{
		{"bad name", "POST", "/api/v1/nodes", map[string]any{"name": "eu 1"}, 400, "invalid", "name"},
		{"no name", "POST", "/api/v1/nodes", map[string]any{"groups": []string{"eu"}}, 400, "invalid", "name"},
		{"bad group", "POST", "/api/v1/nodes", map[string]any{"name": "eu2", "groups": []string{"eu", "a.b"}}, 400, "invalid", "groups[1]"},
		{"ttl not a duration", "POST", "/api/v1/nodes", map[string]any{"name": "eu2", "ttl": "soon"}, 400, "invalid", "ttl"},
		{"ttl too long", "POST", "/api/v1/nodes", map[string]any{"name": "eu2", "ttl": "200h"}, 400, "invalid", "ttl"},
		{"unknown field", "POST", "/api/v1/nodes", map[string]any{"name": "eu2", "node": "eu2"}, 400, "unknown_field", "node"},
		{"ttl as a number", "POST", "/api/v1/nodes", `{"name":"eu2","ttl":3600}`, 400, "wrong_type", "ttl"},
		{"groups missing", "PUT", "/api/v1/nodes/eu1/groups", map[string]any{}, 400, "invalid", "groups"},
		{"bad node in path", "PUT", "/api/v1/nodes/eu.1/groups", map[string]any{"groups": []string{}}, 400, "invalid_path", "node"},
		{"bad node to revoke", "POST", "/api/v1/nodes/eu.1/revoke", nil, 400, "invalid_path", "node"},
		{"regroup nobody", "PUT", "/api/v1/nodes/nobody/groups", map[string]any{"groups": []string{}}, 404, "not_found", ""},
		{"revoke nobody", "POST", "/api/v1/nodes/nobody/revoke", nil, 404, "not_found", ""},
		{"show nobody", "GET", "/api/v1/nodes/nobody", nil, 404, "not_found", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := h.do(c.method, c.path, "admin", c.body)
			p := h.problem(r)
			named := c.field == ""
			for _, f := range p.Errors {
				named = named || f.Field == c.field
			}
			if r.status != c.status || p.Code != c.code || !named {
				t.Fatalf("%d %s %+v, want %d %s naming %q: %s", r.status, p.Code, p.Errors, c.status, c.code, c.field, r.body)
			}
		})
	}
}

// TestNodeEnrollmentWithoutFleet runs the gateway with no users service:
// the enrollment routes say which service is missing, and the node list
// still lists registrations, saying why groups are missing.
func TestNodeEnrollmentWithoutFleet(t *testing.T) {
	h := newHarnessWith(t, options{noUsers: true})
	h.putNode("eu1", time.Now())
	r := h.do("POST", "/api/v1/nodes", "admin", map[string]any{"name": "eu2"})
	if p := h.problem(r); r.status != http.StatusServiceUnavailable || p.Service != "fleet service" {
		t.Fatalf("add without the fleet service: %d %s", r.status, r.body)
	}
	var list api.NodeList
	h.mustJSON("GET", "/api/v1/nodes", "viewer", nil, http.StatusOK, &list)
	if len(list.Nodes) != 1 || list.Nodes[0].ID != "eu1" || list.Nodes[0].Enrollment != "" || list.EnrollmentError == "" {
		t.Fatalf("node list without the fleet service: %+v", list)
	}
}
