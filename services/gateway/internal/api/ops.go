package api

import (
	"context"
	"net/http"
	"time"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/auth"
	"github.com/vpnfleet/vpnfleet/services/gateway/internal/sub"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	s.env.Probe.Healthz(w, r)
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	s.env.Probe.Readyz(w, r)
	return nil
}

func (s *Server) openapi(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(s.doc)
	return err
}

// Status is what GET /api/v1/status reports: the gateway, each service
// behind it ("ok" or why not) and the caller's token.
type Status struct {
	Version      string            `json:"version"`
	Ready        bool              `json:"ready"`
	NotReady     map[string]string `json:"not_ready,omitempty"`
	Token        auth.Token        `json:"token"`
	Services     map[string]string `json:"services"`
	Users        int               `json:"users"`
	Servers      int               `json:"servers"`
	Nodes        int               `json:"nodes"`
	HealthyNodes int               `json:"healthy_nodes"`
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) error {
	failed := s.env.Probe.Ready(r.Context())
	st := Status{Version: s.cfg.Version, Ready: len(failed) == 0, Token: infoOf(r).tok.Public(), Services: map[string]string{}}
	if len(failed) > 0 {
		st.NotReady = failed
	}
	ctx, cancel := context.WithTimeout(r.Context(), min(s.cfg.UpstreamTimeout, 3*time.Second))
	defer cancel()
	state := func(err error) string {
		if err != nil {
			return errs.Message(err)
		}
		return "ok"
	}
	c, err := bus.Request[user.CountResponse](ctx, s.env.NC, subject.UsersCmd(subject.UsersCount), user.Filter{})
	st.Users, st.Services["users"] = c.Count, state(err)
	l, err := bus.Request[server.ListResponse](ctx, s.env.NC, subject.ServersCmd(subject.ServersList), server.ListRequest{})
	st.Servers, st.Services["servers"] = len(l.Servers), state(err)
	ns, err := s.nodes(ctx)
	st.Services["nodes"] = state(err)
	now := time.Now()
	for _, n := range ns {
		st.Nodes++
		if sub.Healthy(n, now) {
			st.HealthyNodes++
		}
	}
	return writeJSON(w, http.StatusOK, st)
}
