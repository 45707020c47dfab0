package telemetry_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/telemetry"
)

// TestLoggerWritesEachKeyOnce: a logger narrowed twice to a component (vpnd
// hands the agent a logger with component=agent; its reconciler narrows it
// to component=reconcile) writes one component key, the innermost; JSON
// with a key twice is read differently by every log tool.
func TestLoggerWritesEachKeyOnce(t *testing.T) {
	for _, tt := range []struct {
		name string
		log  func(l *slog.Logger)
		want map[string]string
	}{
		{"component narrowed", func(l *slog.Logger) {
			l.With(logkey.Component, "agent").With(logkey.Component, "reconcile").Info("applied", logkey.User, "u1")
		}, map[string]string{logkey.Component: "reconcile", logkey.User: "u1", logkey.Service: "vpnd"}},
		{"component in one With", func(l *slog.Logger) {
			l.With(logkey.Component, "agent", logkey.Node, "n1").With(logkey.Node, "n2", logkey.Component, "reconcile").Info("applied")
		}, map[string]string{logkey.Component: "reconcile", logkey.Node: "n2"}},
		{"record attribute wins", func(l *slog.Logger) {
			l.With(logkey.Component, "lifecycle").Warn("shutting down", logkey.Component, "nats")
		}, map[string]string{logkey.Component: "nats"}},
		{"groups keep their attributes", func(l *slog.Logger) {
			l.With(logkey.Component, "agent").WithGroup("req").With(logkey.Path, "/x").Info("x", logkey.Method, "GET")
		}, map[string]string{logkey.Component: "agent", "req": "map[method:GET path:/x]"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			l, err := telemetry.NewLogger(&b, "info", "vpnd")
			if err != nil {
				t.Fatal(err)
			}
			tt.log(l)
			line := b.String()
			var got map[string]any
			if err := json.Unmarshal([]byte(line), &got); err != nil {
				t.Fatalf("%v: %s", err, line)
			}
			for k, v := range tt.want {
				if n := strings.Count(line, `"`+k+`":`); n != 1 {
					t.Errorf("key %s appears %d times: %s", k, n, line)
				}
				if fmt.Sprint(got[k]) != v {
					t.Errorf("%s = %v, want %s: %s", k, got[k], v, line)
				}
			}
		})
	}
}
