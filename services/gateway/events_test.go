package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/gateway"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// stream is one open event stream of a test.
type stream struct {
	status int
	prob   problemDoc
	events <-chan sseEvent
	close  func()
}

// openStream opens GET path as role (or a token) and, when it is
// answered 200, parses its events until close. A refusal is read as a
// problem.
func (h *harness) openStream(role, path string, hdr ...string) stream {
	h.t.Helper()
	tok, ok := h.tokens[role]
	if !ok {
		tok = role
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", h.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		h.t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		var p problemDoc
		_ = json.NewDecoder(resp.Body).Decode(&p)
		return stream{status: resp.StatusCode, prob: p, close: func() {}}
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		cancel()
		resp.Body.Close()
		h.t.Fatalf("GET %s: content type %q", path, ct)
	}
	ch := make(chan sseEvent, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		var e sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if e.data != "" {
					select {
					case ch <- e:
					case <-ctx.Done():
						return
					}
				}
				e = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				e.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				e.typ = line[7:]
			case strings.HasPrefix(line, "data: "):
				e.data += line[6:]
			}
		}
	}()
	return stream{status: http.StatusOK, events: ch, close: func() { cancel(); resp.Body.Close(); <-done }}
}

// eventsConsumers is how many consumers the EVENTS stream has.
func (h *harness) eventsConsumers() int {
	h.t.Helper()
	st, err := h.js.Stream(ctxT(h.t), subject.StreamEvents)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := st.Info(ctxT(h.t))
	if err != nil {
		h.t.Fatal(err)
	}
	return info.State.Consumers
}

// TestEventStreamsAreBoundedPerToken is the abuse of issue 18.1: a viewer
// opening and dropping event streams must leave no consumers behind (each
// stream's consumer is deleted when it ends), may hold only a few streams
// at once (429 too_many_streams beyond), and an admin still streams.
func TestEventStreamsAreBoundedPerToken(t *testing.T) {
	const maxStreams = 3
	h := newHarnessWith(t, options{cfg: func(c *gateway.Config) { c.MaxStreams = maxStreams }})
	baseline := h.eventsConsumers()

	// open waits until role may open another stream (the server notices a
	// dropped stream, and gives its slot back, a moment after the client).
	open := func(role, path string) stream {
		t.Helper()
		var s stream
		waitfor.Cond(t, 20*time.Second, func() error {
			s = h.openStream(role, path)
			if s.status != http.StatusOK {
				return fmt.Errorf("%s: %d %s", path, s.status, s.prob.Code)
			}
			return nil
		})
		return s
	}

	for i := range 40 {
		path := "/api/v1/events"
		if i%2 == 1 {
			path += "?kind=user,audit&since=0"
		}
		open("viewer", path).close()
	}
	waitfor.Cond(t, 20*time.Second, func() error {
		if n := h.eventsConsumers(); n > baseline {
			return fmt.Errorf("EVENTS has %d consumers after every stream closed, %d before any opened", n, baseline)
		}
		return nil
	})

	var held []stream
	for range maxStreams {
		held = append(held, open("viewer", "/api/v1/events"))
	}
	over := h.openStream("viewer", "/api/v1/events")
	if over.status != http.StatusTooManyRequests || over.prob.Code != "too_many_streams" || !strings.Contains(over.prob.Hint, "close one of this token's event streams") {
		t.Fatalf("stream %d of a viewer: %d %+v, want 429 too_many_streams", maxStreams+1, over.status, over.prob)
	}
	if n := h.eventsConsumers(); n > baseline+maxStreams {
		t.Fatalf("EVENTS has %d consumers with %d streams open, %d before", n, maxStreams, baseline)
	}

	admin := open("admin", "/api/v1/events?kind=user")
	defer admin.close()
	h.createUser("after-the-flood")
	if e := next(t, admin.events); e.typ != "user.created.v1" || !strings.Contains(e.data, "after-the-flood") {
		t.Fatalf("admin's stream: %+v", e)
	}

	for _, s := range held {
		s.close()
	}
	open("viewer", "/api/v1/events").close()
}
