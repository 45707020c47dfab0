// Package probe serves the liveness and readiness endpoints every binary
// exposes: /healthz answers 200 while the process runs; /readyz answers 200
// only when every registered check passes (NATS connected, every stream and
// bucket present, ...), and 503 naming the failing checks otherwise.
package probe

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// Check returns nil when the dependency it names is ready.
type Check func(ctx context.Context) error

// Probe holds the named readiness checks.
type Probe struct {
	mu     sync.RWMutex
	names  []string
	checks map[string]Check
}

// New returns a probe with no checks (ready until some are added).
func New() *Probe { return &Probe{checks: map[string]Check{}} }

// Add registers a readiness check under name, replacing one of the same name.
func (p *Probe) Add(name string, c Check) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.checks[name]; !ok {
		p.names = append(p.names, name)
	}
	p.checks[name] = c
}

// Ready runs every check (each bounded to 2s) and returns the failures by name.
func (p *Probe) Ready(ctx context.Context) map[string]string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	failed := map[string]string{}
	for _, n := range p.names {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := p.checks[n](cctx); err != nil {
			failed[n] = err.Error()
		}
		cancel()
	}
	return failed
}

// Healthz is the liveness handler.
func (p *Probe) Healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
}

// Readyz is the readiness handler.
func (p *Probe) Readyz(w http.ResponseWriter, r *http.Request) {
	if failed := p.Ready(r.Context()); len(failed) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "failed": failed})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready"})
}

// Register mounts /healthz and /readyz on mux.
func (p *Probe) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", p.Healthz)
	mux.HandleFunc("GET /readyz", p.Readyz)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
