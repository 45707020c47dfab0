package gateway_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/api"
)

// TestSubscriptionTokenNotInSpans is issue 18.16: a subscription token is
// a credential, so the spans of GET /sub/{token} must not carry it, in
// their name or in any attribute (url.path is redacted), whether the token
// is valid or not.
func TestSubscriptionTokenNotInSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev); _ = tp.Shutdown(ctxT(t)) })

	h := newHarness(t)
	h.putNode("node-a", time.Now())
	h.putServer("srv-a", "node-a")
	h.createUser("tracy")
	var s api.Subscription
	h.mustJSON("GET", "/api/v1/users/tracy/subscription", "operator", nil, http.StatusOK, &s)
	tokens := []string{s.Token, strings.Repeat("A", 43)}
	if r := h.do("GET", "/sub/"+tokens[0], "", nil); r.status != http.StatusOK {
		t.Fatalf("sub: %d %s", r.status, r.body)
	}
	if r := h.do("GET", "/sub/"+tokens[1]+"?format=clash", "", nil); r.status != http.StatusNotFound {
		t.Fatalf("unknown sub: %d %s", r.status, r.body)
	}

	subSpans := 0
	for _, sp := range rec.Ended() {
		texts := []string{sp.Name()}
		for _, a := range sp.Attributes() {
			texts = append(texts, string(a.Key)+"="+a.Value.String())
		}
		for _, text := range texts {
			for _, tok := range tokens {
				if strings.Contains(text, tok) {
					t.Errorf("span %q carries a subscription token: %s", sp.Name(), text)
				}
			}
		}
		if sp.Name() == "GET /sub/{token}" {
			subSpans++
			for _, a := range sp.Attributes() {
				if a.Key == "url.path" && a.Value.AsString() != "/sub/REDACTED" {
					t.Errorf("url.path %q, want /sub/REDACTED", a.Value.AsString())
				}
			}
		}
	}
	if subSpans != 2 {
		t.Fatalf("%d spans named GET /sub/{token}, want 2", subSpans)
	}
}
