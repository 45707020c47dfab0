package users_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/users/internal/registry"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/usage"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

func ptr[T any](v T) *T { return &v }

func TestCRUDOverNATS(t *testing.T) {
	h := newHarness(t)
	h.start()

	u := must[user.User](h, subject.UsersCreate, user.CreateRequest{
		Name: "Alice_1", Email: "alice@example.com", TrafficLimitBytes: 1 << 30, LimitReset: user.ResetMonth,
	})
	if u.ID == "" || u.Revision == 0 || u.Status != user.StatusActive || len(u.Protocols) != 4 {
		t.Fatalf("created %+v", u)
	}
	c := u.Credentials
	if c.VLESS == nil || c.VLESS.Flow != user.FlowVision || c.Shadowsocks == nil || c.SOCKS5 == nil || c.HTTP == nil {
		t.Fatalf("credentials %+v", c)
	}

	got := must[user.User](h, subject.UsersGet, user.GetRequest{ID: u.ID})
	if got.Revision != u.Revision || got.Name != "Alice_1" {
		t.Fatalf("get by id %+v", got)
	}
	byName := must[user.User](h, subject.UsersGet, user.GetRequest{Name: "aLiCe_1"})
	if byName.ID != u.ID {
		t.Fatalf("get by name gave %s, want %s", byName.ID, u.ID)
	}
	if _, err := call[user.User](h, subject.UsersCreate, user.CreateRequest{Name: "ALICE_1"}); !errors.Is(err, errs.Conflict) {
		t.Fatalf("same name in another case: %v, want Conflict", err)
	}

	waitfor.Cond(t, 5*time.Second, func() error {
		page, err := call[user.ListResponse](h, subject.UsersList, user.ListRequest{Filter: user.Filter{NamePrefix: "ali"}})
		if err != nil {
			return err
		}
		if len(page.Users) != 1 || page.Users[0].ID != u.ID {
			return fmt.Errorf("list gave %d users", len(page.Users))
		}
		return nil
	})

	up := must[user.User](h, subject.UsersUpdate, user.UpdateRequest{ID: u.ID, ExpectedRevision: u.Revision, Name: ptr("bob"), Note: ptr("renamed")})
	if up.Name != "bob" || up.Note != "renamed" || up.Revision <= u.Revision {
		t.Fatalf("updated %+v", up)
	}
	if _, err := call[user.User](h, subject.UsersUpdate, user.UpdateRequest{ID: u.ID, ExpectedRevision: u.Revision, Note: ptr("x")}); !errors.Is(err, errs.Conflict) {
		t.Fatalf("update at stale revision: %v, want Conflict", err)
	}
	// The rename released the old name and claimed the new one.
	other := h.create("alice_1")
	if _, err := call[user.User](h, subject.UsersCreate, user.CreateRequest{Name: "BOB"}); !errors.Is(err, errs.Conflict) {
		t.Fatalf("create of renamed-to name: %v, want Conflict", err)
	}

	dis := must[user.User](h, subject.UsersDisable, user.RevisionRequest{ID: u.ID})
	if dis.Status != user.StatusDisabled {
		t.Fatalf("disabled: %s", dis.Status)
	}
	en := must[user.User](h, subject.UsersEnable, user.RevisionRequest{ID: u.ID})
	if en.Status != user.StatusActive {
		t.Fatalf("enabled: %s", en.Status)
	}
	rot := must[user.User](h, subject.UsersRotate, user.RotateRequest{ID: u.ID, Protocols: []user.Protocol{user.VLESSReality}})
	if rot.Credentials.VLESS.UUID == en.Credentials.VLESS.UUID || rot.Credentials.HTTP.Password != en.Credentials.HTTP.Password {
		t.Fatal("rotation of vless changed the wrong credentials")
	}

	del := must[user.DeleteResponse](h, subject.UsersDelete, user.RevisionRequest{ID: u.ID, ExpectedRevision: rot.Revision})
	if del.Revision <= rot.Revision {
		t.Fatalf("delete revision %d, want > %d", del.Revision, rot.Revision)
	}
	if _, err := call[user.User](h, subject.UsersGet, user.GetRequest{ID: u.ID}); !errors.Is(err, errs.NotFound) {
		t.Fatalf("get after delete: %v, want NotFound", err)
	}
	if _, err := call[user.DeleteResponse](h, subject.UsersDelete, user.RevisionRequest{ID: u.ID}); !errors.Is(err, errs.NotFound) {
		t.Fatalf("second delete: %v, want NotFound", err)
	}
	h.create("bob") // the name is free again

	var types []event.Type
	for _, e := range h.events(u.ID) {
		types = append(types, e.Type)
		if strings.Contains(string(e.Data), rot.Credentials.HTTP.Password) {
			t.Fatalf("event %s carries a credential", e.ID)
		}
	}
	want := []event.Type{event.UserCreated, event.UserUpdated, event.UserStatusChanged, event.UserStatusChanged, event.UserCredentialsRotated, event.UserDeleted}
	if fmt.Sprint(types) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", types, want)
	}
	if last := h.events(u.ID)[len(want)-1]; last.ID != fmt.Sprintf("%s:%d", u.ID, del.Revision) {
		t.Fatalf("delete event id %s, want %s:%d", last.ID, u.ID, del.Revision)
	}

	n := must[user.CountResponse](h, subject.UsersCount, user.Filter{})
	waitfor.Cond(t, 5*time.Second, func() error {
		n = must[user.CountResponse](h, subject.UsersCount, user.Filter{})
		if n.Count != 2 {
			return fmt.Errorf("count %d, want 2 (%s and the new bob)", n.Count, other.Name)
		}
		return nil
	})
}

func TestBadInputNamesEveryField(t *testing.T) {
	h := newHarness(t)
	h.start()
	_, err := call[user.User](h, subject.UsersCreate, user.CreateRequest{
		Name: "x", Email: "not an email", Protocols: []user.Protocol{"wireguard"}, TrafficLimitBytes: -1, LimitReset: "hourly",
	})
	if !errors.Is(err, errs.Invalid) {
		t.Fatalf("err %v, want Invalid", err)
	}
	got := map[string]string{}
	for _, f := range errs.FieldsOf(err) {
		got[f.Field] = f.Rule
	}
	if got["name"] != "must be 3-32 characters of A-Z a-z 0-9 _ -" {
		t.Fatalf("name rule %q", got["name"])
	}
	for _, f := range []string{"email", "protocols", "traffic_limit_bytes", "limit_reset"} {
		if got[f] == "" {
			t.Fatalf("field %s not reported; got %v", f, got)
		}
	}
	if _, err := call[user.User](h, subject.UsersCreate, user.CreateRequest{Name: "Admin"}); !errors.Is(err, errs.Invalid) {
		t.Fatalf("reserved name: %v", err)
	}
	if _, err := bus.Request[user.User](ctxT(t), h.nc, subject.UsersCmd(subject.UsersCreate), "not an object"); !errors.Is(err, errs.Invalid) {
		t.Fatalf("undecodable body: %v", err)
	}
	if n := must[user.CountResponse](h, subject.UsersCount, user.Filter{}); n.Count != 0 {
		t.Fatalf("%d users after rejected creates", n.Count)
	}
}

// TestConcurrentCreatesOfOneNameOneWins races 100 creates of one name (in
// three casings) across two replicas of the service.
func TestConcurrentCreatesOfOneNameOneWins(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.start()
	const n = 100
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, conflicts int
	var other []error
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := call[user.User](h, subject.UsersCreate, user.CreateRequest{Name: []string{"carol", "Carol", "CAROL"}[i%3]})
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
}

func TestConcurrentUpdatesAtOneRevisionOneWins(t *testing.T) {
	h := newHarness(t)
	h.start()
	u := h.create("dave")
	const n = 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, conflicts int
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := call[user.User](h, subject.UsersUpdate, user.UpdateRequest{ID: u.ID, ExpectedRevision: u.Revision, Note: ptr(fmt.Sprint(i))})
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				ok++
			} else if errors.Is(err, errs.Conflict) {
				conflicts++
			} else {
				t.Errorf("update: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok != 1 || conflicts != n-1 {
		t.Fatalf("%d successes and %d conflicts, want 1 and %d", ok, conflicts, n-1)
	}
	// Without an expected revision, concurrent updates all apply in turn.
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := call[user.User](h, subject.UsersResetTraffic, user.RevisionRequest{ID: u.ID}); err != nil {
				t.Errorf("reset %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
}

func TestRetriedCreateWithIdempotencyKeyMakesOneUser(t *testing.T) {
	h := newHarness(t)
	h.start()
	req := user.CreateRequest{Name: "erin", IdempotencyKey: "req-42"}
	const n = 10
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u, err := call[user.User](h, subject.UsersCreate, req)
			if err != nil {
				t.Errorf("attempt %d: %v", i, err)
				return
			}
			ids[i] = u.ID
		}()
	}
	wg.Wait()
	for i := range ids {
		if ids[i] != ids[0] {
			t.Fatalf("attempts returned different users: %v", ids)
		}
	}
	again := must[user.User](h, subject.UsersCreate, req)
	if again.ID != ids[0] {
		t.Fatalf("later retry returned %s, want %s", again.ID, ids[0])
	}
	if evs := h.events(ids[0]); len(evs) != 1 {
		t.Fatalf("%d events for one create", len(evs))
	}
	// Another key with the same name is an ordinary conflict.
	if _, err := call[user.User](h, subject.UsersCreate, user.CreateRequest{Name: "erin", IdempotencyKey: "req-43"}); !errors.Is(err, errs.Conflict) {
		t.Fatalf("other key, same name: %v", err)
	}
	waitfor.Cond(t, 5*time.Second, func() error {
		if c := must[user.CountResponse](h, subject.UsersCount, user.Filter{}); c.Count != 1 {
			return fmt.Errorf("%d users", c.Count)
		}
		return nil
	})
}

// publishUsage stores a record on USAGE with the given message id.
func (h *harness) publishUsage(msgID string, rec usage.Record) {
	h.t.Helper()
	rec = stamped(rec)
	if _, err := bus.Publish(ctxT(h.t), h.js, subject.Usage(rec.Node), msgID, rec); err != nil {
		h.t.Fatal(err)
	}
}

// stamped gives rec the bounds of a window that just ended, as an agent's
// meter does, unless it has some.
func stamped(rec usage.Record) usage.Record {
	if rec.End.IsZero() {
		rec.End = time.Now()
		rec.Start = rec.End.Add(-10 * time.Second)
	}
	return rec
}

func (h *harness) waitUsed(id string, want int64) user.User {
	h.t.Helper()
	var u user.User
	waitfor.Cond(h.t, 10*time.Second, func() error {
		u = must[user.User](h, subject.UsersGet, user.GetRequest{ID: id})
		if u.Usage.Used() != want {
			return fmt.Errorf("used %d, want %d", u.Usage.Used(), want)
		}
		return nil
	})
	return u
}

func TestUsageDeliveredTwiceCountsOnce(t *testing.T) {
	h := newHarness(t)
	h.start()
	a, b := h.create("frank"), h.create("grace")
	rec := usage.Record{Node: "n1", Window: 1, Users: []usage.UserDelta{
		{User: a.ID, Uplink: 100, Downlink: 1000, LastSeen: time.Now()},
		{User: b.ID, Uplink: 5, Downlink: 5},
		{User: "vpnfleet-placeholder", Uplink: 1},
	}}
	h.publishUsage(rec.MsgID(), rec)
	h.publishUsage(rec.MsgID(), rec) // a retried publish: deduplicated by the stream
	// The same record again under another id (e.g. replayed after the
	// duplicate window): stored twice, counted once.
	h.publishUsage(rec.MsgID()+"-replay", rec)
	next := usage.Record{Node: "n1", Window: 2, Users: []usage.UserDelta{{User: a.ID, Uplink: 1}}}
	h.publishUsage(next.MsgID(), next)
	other := usage.Record{Node: "n2", Window: 1, Users: []usage.UserDelta{{User: a.ID, Downlink: 10}}}
	h.publishUsage(other.MsgID(), other)

	// A crash after applying part of a batch: one user already counted
	// window 3, the other not; the redelivered batch completes it.
	reg, err := registry.Open(ctxT(t), h.js, natstest.Logger(t), registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	partial := usage.Record{Node: "n3", Window: 3, Users: []usage.UserDelta{{User: a.ID, Uplink: 1000}}}
	if err := reg.ApplyUsage(ctxT(t), stamped(partial)); err != nil {
		t.Fatal(err)
	}
	whole := usage.Record{Node: "n3", Window: 3, Users: []usage.UserDelta{{User: a.ID, Uplink: 1000}, {User: b.ID, Uplink: 1000}}}
	h.publishUsage(whole.MsgID(), whole)

	u := h.waitUsed(a.ID, 2111)
	if u.Usage.LifetimeUp != 1101 || u.Usage.LifetimeDown != 1010 || u.Usage.Windows["n1"] != 2 || u.Usage.Windows["n2"] != 1 || u.Usage.Windows["n3"] != 3 {
		t.Fatalf("usage %+v", u.Usage)
	}
	if u.Usage.FirstUsedAt.IsZero() || u.Usage.LastSeenAt.IsZero() {
		t.Fatalf("first/last seen not set: %+v", u.Usage)
	}
	h.waitUsed(b.ID, 1010)
	// Every message was acknowledged: nothing waits for redelivery.
	waitfor.Cond(t, 10*time.Second, func() error {
		c, err := h.js.Consumer(ctxT(t), subject.StreamUsage, subject.ConsumerUsersUsage)
		if err != nil {
			return err
		}
		info, err := c.Info(ctxT(t))
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("pending %d, ack pending %d", info.NumPending, info.NumAckPending)
		}
		return nil
	})
	h.waitUsed(a.ID, 2111)
}

func TestLimitExpiryAndOnHoldTransitionsPublishEvents(t *testing.T) {
	h := newHarness(t)
	h.start()
	limited := must[user.User](h, subject.UsersCreate, user.CreateRequest{Name: "heidi", TrafficLimitBytes: 1000})
	expiring := must[user.User](h, subject.UsersCreate, user.CreateRequest{Name: "ivan", ExpiresAt: time.Now().Add(time.Second)})
	onHold := must[user.User](h, subject.UsersCreate, user.CreateRequest{Name: "judy", Status: user.StatusOnHold, OnHoldDays: 30})

	rec := usage.Record{Node: "n1", Window: 7, Users: []usage.UserDelta{
		{User: limited.ID, Uplink: 600, Downlink: 600},
		{User: onHold.ID, Uplink: 1, LastSeen: time.Now()},
	}}
	h.publishUsage(rec.MsgID(), rec)

	e := h.waitEvent(limited.ID, event.UserStatusChanged, nil)
	if e.User.Status != user.StatusLimited || e.PreviousStatus != user.StatusActive || e.Reason != user.ReasonLimitReached {
		t.Fatalf("limit event %+v", e)
	}
	e = h.waitEvent(expiring.ID, event.UserStatusChanged, nil)
	if e.User.Status != user.StatusExpired || e.Reason != user.ReasonExpired {
		t.Fatalf("expiry event %+v", e)
	}
	e = h.waitEvent(onHold.ID, event.UserStatusChanged, nil)
	if e.User.Status != user.StatusActive || e.PreviousStatus != user.StatusOnHold || e.Reason != user.ReasonFirstUse {
		t.Fatalf("first-use event %+v", e)
	}
	if d := e.User.ExpiresAt.Sub(e.User.Usage.FirstUsedAt); d != 30*24*time.Hour {
		t.Fatalf("on-hold expiry %s after first use, want 30 days", d)
	}

	// An operator's reset makes the limited user active again.
	reset := must[user.User](h, subject.UsersResetTraffic, user.RevisionRequest{ID: limited.ID})
	if reset.Status != user.StatusActive || reset.Usage.Used() != 0 || reset.Usage.LifetimeUp != 600 {
		t.Fatalf("after reset %+v", reset)
	}
	h.waitEvent(limited.ID, event.UserTrafficReset, func(e user.Event) bool { return e.PreviousStatus == user.StatusLimited })
	// Extending an expired user's expiry makes it active again.
	ext := must[user.User](h, subject.UsersUpdate, user.UpdateRequest{ID: expiring.ID, ExpiresAt: ptr(time.Now().Add(time.Hour))})
	if ext.Status != user.StatusActive {
		t.Fatalf("after extending expiry: %s", ext.Status)
	}
}

func TestRegistrySurvivesRestart(t *testing.T) {
	h := newHarness(t)
	stop := h.start()
	var created []user.User
	for i := range 20 {
		created = append(created, h.create(fmt.Sprintf("user-%02d", i)))
	}
	rec := usage.Record{Node: "n1", Window: 1, Users: []usage.UserDelta{{User: created[0].ID, Uplink: 42}}}
	h.publishUsage(rec.MsgID(), rec)
	h.waitUsed(created[0].ID, 42)
	stop()

	h.srv.Restart()
	h.start()
	for _, u := range created {
		got, err := call[user.User](h, subject.UsersGet, user.GetRequest{ID: u.ID})
		if err != nil {
			t.Fatalf("user %s after restart: %v", u.Name, err)
		}
		if got.Name != u.Name || got.Credentials.VLESS.UUID != u.Credentials.VLESS.UUID {
			t.Fatalf("user %s changed across restart", u.Name)
		}
	}
	h.waitUsed(created[0].ID, 42)
	page := must[user.ListResponse](h, subject.UsersList, user.ListRequest{Limit: 1000})
	if len(page.Users) != len(created) {
		t.Fatalf("list after restart: %d users, want %d", len(page.Users), len(created))
	}
	if _, err := call[user.User](h, subject.UsersCreate, user.CreateRequest{Name: "USER-00"}); !errors.Is(err, errs.Conflict) {
		t.Fatalf("name after restart: %v, want Conflict", err)
	}
	// The same record again after the restart counts nothing.
	h.publishUsage(rec.MsgID()+"-again", rec)
	later := usage.Record{Node: "n1", Window: 2, Users: []usage.UserDelta{{User: created[0].ID, Uplink: 1}}}
	h.publishUsage(later.MsgID(), later)
	h.waitUsed(created[0].ID, 43)
}

func TestLinksSubscriptionAndQROverNATS(t *testing.T) {
	h := newHarness(t)
	h.start()
	u := must[user.User](h, subject.UsersCreate, user.CreateRequest{Name: "kate", Protocols: []user.Protocol{user.VLESSReality, user.Shadowsocks2022}})

	// Before any server exists there is no link, and a reason.
	resp := must[user.LinksResponse](h, subject.UsersLinks, user.LinksRequest{ID: u.ID})
	if len(resp.Links) != 0 || len(resp.Missing) != 2 {
		t.Fatalf("links without servers: %+v", resp)
	}
	kv, err := h.js.KeyValue(ctxT(t), subject.BucketServers)
	if err != nil {
		t.Fatal(err)
	}
	srv := server.Server{ID: "s1", Node: "n1", Name: "fra", Engine: server.EngineXray, Inbounds: []server.Inbound{
		{Tag: "vless", Protocol: user.VLESSReality, Port: 443, Reality: &server.Reality{ServerNames: []string{"www.example.com"}, PublicKey: "cHVi", ShortIDs: []string{"ab12"}}},
		{Tag: "ss", Protocol: user.Shadowsocks2022, Port: 8388, Shadowsocks: &server.Shadowsocks{Method: user.SS2022AES128GCM, ServerKey: "c2VydmVyLWtleS0xNmJ5dA=="}},
	}}
	data, _ := json.Marshal(srv)
	if _, err := kv.Put(ctxT(t), srv.ID, data); err != nil {
		t.Fatal(err)
	}
	// Its node's report, where the agent writes it.
	status, err := h.js.KeyValue(ctxT(t), subject.BucketServerStatus)
	if err != nil {
		t.Fatal(err)
	}
	data, _ = json.Marshal(server.Status{State: server.StateApplied, PublicHost: "fra.example.net", Spec: srv.SpecKey()})
	if _, err := status.Put(ctxT(t), subject.ServerStatusKey(srv.Node, srv.ID), data); err != nil {
		t.Fatal(err)
	}
	resp = must[user.LinksResponse](h, subject.UsersLinks, user.LinksRequest{ID: u.ID})
	if len(resp.Links) != 2 || len(resp.Missing) != 0 {
		t.Fatalf("links: %+v", resp)
	}
	wantVLESS := "vless://" + u.Credentials.VLESS.UUID + "@fra.example.net:443?type=tcp&security=reality&encryption=none&flow=xtls-rprx-vision&sni=www.example.com&pbk=cHVi&sid=ab12&fp=chrome#kate%40fra"
	if resp.Links[0].URL != wantVLESS {
		t.Fatalf("vless link\n%s\nwant\n%s", resp.Links[0].URL, wantVLESS)
	}
	if !strings.HasPrefix(resp.Links[1].URL, "ss://2022-blake3-aes-128-gcm:c2VydmVyLWtleS0xNmJ5dA%3D%3D%3A") {
		t.Fatalf("ss link %s", resp.Links[1].URL)
	}
	// An unhealthy node gives no link.
	none := must[user.LinksResponse](h, subject.UsersLinks, user.LinksRequest{ID: u.ID, HealthyNodes: []string{}})
	if len(none.Links) != 0 || none.Missing[0].Reason != "node is not healthy" {
		t.Fatalf("links with no healthy node: %+v", none)
	}

	sub := must[user.SubscriptionResponse](h, subject.UsersSubscription, user.SubscriptionRequest{ID: u.ID, HealthyNodes: []string{"n1"}})
	body, err := base64.StdEncoding.DecodeString(sub.Body)
	if err != nil || string(body) != resp.Links[0].URL+"\n"+resp.Links[1].URL {
		t.Fatalf("subscription %q: %v", body, err)
	}
	for _, f := range []string{user.FormatClash, user.FormatSingBox} {
		s := must[user.SubscriptionResponse](h, subject.UsersSubscription, user.SubscriptionRequest{ID: u.ID, Format: f})
		if s.Links != 2 || !strings.Contains(s.Body, "fra.example.net") {
			t.Fatalf("%s subscription %+v", f, s)
		}
	}
	qr := must[user.QRResponse](h, subject.UsersQR, user.QRRequest{ID: u.ID, Server: "s1", Protocol: user.VLESSReality})
	if qr.Content != wantVLESS || len(qr.PNG) == 0 || qr.Text == "" {
		t.Fatalf("qr of %s", qr.Content)
	}
	if _, err := call[user.QRResponse](h, subject.UsersQR, user.QRRequest{ID: u.ID, Server: "s1", Protocol: user.HTTP}); !errors.Is(err, errs.NotFound) {
		t.Fatalf("qr of a missing link: %v", err)
	}
}

// TestBadUsageRecordsAreRefusedAndCountedNowhere: a record with a window
// far in the future (which used to stop all later counting of its users),
// one claiming 5 TB in ten seconds, and one published on another node's
// subject are refused, reported as node.usage_rejected.v1, and counted
// nowhere; the node's next real record is counted.
func TestBadUsageRecordsAreRefusedAndCountedNowhere(t *testing.T) {
	h := newHarness(t)
	h.start()
	a := h.create("mallory-target")
	now := time.Now()
	future := usage.Record{Node: "n1", Window: 1 << 62, Start: now.Add(-time.Second), End: now, Users: []usage.UserDelta{{User: a.ID, Uplink: 1}}}
	h.publishUsage(future.MsgID(), future)
	huge := usage.Record{Node: "n1", Window: uint64(now.UnixMilli()), Start: now.Add(-10 * time.Second), End: now, Users: []usage.UserDelta{{User: a.ID, Downlink: 5 << 40}}}
	h.publishUsage(huge.MsgID(), huge)
	// The record says n2 but arrives on n1's subject (only n1's credential
	// may publish there).
	spoof := usage.Record{Node: "n2", Window: uint64(now.UnixMilli()), Start: now.Add(-time.Second), End: now, Users: []usage.UserDelta{{User: a.ID, Uplink: 7}}}
	if _, err := bus.Publish(ctxT(t), h.js, subject.Usage("n1"), "spoof", spoof); err != nil {
		t.Fatal(err)
	}
	waitfor.Cond(t, 10*time.Second, func() error {
		n := 0
		for _, e := range natstest.Events(t, h.js, subject.NodeEvent("n1")) {
			if e.Type == event.NodeUsageRejected {
				n++
			}
		}
		for _, e := range natstest.Events(t, h.js, subject.NodeEvent("n2")) {
			if e.Type == event.NodeUsageRejected {
				n++
			}
		}
		if n != 3 {
			return fmt.Errorf("%d usage_rejected events, want 3", n)
		}
		return nil
	})
	real := usage.Record{Node: "n1", Window: uint64(time.Now().UnixMilli()), Users: []usage.UserDelta{{User: a.ID, Uplink: 300, Downlink: 700}}}
	h.publishUsage(real.MsgID(), real)
	u := h.waitUsed(a.ID, 1000)
	if u.Status != user.StatusActive || u.Usage.LifetimeUp != 300 {
		t.Fatalf("after the refused records: %+v, %s", u.Usage, u.Status)
	}
}

// TestExpiryIsEnforcedWhenDue: with a full scan only every hour, a user
// still expires when its time comes (the enforcer wakes at the next
// expiry it knows of, including users created after its last scan), and
// the delay is bounded by the enforcer's gap, not the scan interval.
func TestExpiryIsEnforcedWhenDue(t *testing.T) {
	h := newHarness(t)
	h.cfg.EnforceInterval = time.Hour
	h.start()
	for _, in := range []time.Duration{1500 * time.Millisecond, 800 * time.Millisecond} {
		at := time.Now().Add(in)
		u := must[user.User](h, subject.UsersCreate, user.CreateRequest{Name: fmt.Sprintf("exp-%d", in.Milliseconds()), ExpiresAt: at})
		e := h.waitEvent(u.ID, event.UserStatusChanged, nil)
		late := e.User.UpdatedAt.Sub(at)
		if e.User.Status != user.StatusExpired || late < 0 {
			t.Fatalf("expiry event %+v at %s, due %s", e, e.User.UpdatedAt, at)
		}
		t.Logf("expired %s after it was due", late)
	}
}
