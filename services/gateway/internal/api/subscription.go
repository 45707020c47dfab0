package api

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/sub"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// Subscription is a user's subscription URL, in every format.
type Subscription struct {
	UserID string `json:"user_id"`
	Name   string `json:"name"`
	Token  string `json:"token"`
	URL    string `json:"url"`
	// Formats maps each format to a URL that asks for it explicitly.
	Formats map[string]string `json:"formats"`
	// OutlineKey is the user's dynamic Outline access key, set when the
	// user has the outline protocol: ssconf:// and the outline format's
	// URL, which Outline's apps fetch over https (serve the gateway over
	// https, e.g. behind --public-url https://…).
	OutlineKey string `json:"outline_key,omitempty"`
}

func (s *Server) subscriptionOf(r *http.Request, u user.User, tok string) Subscription {
	url := s.publicBase(r) + "/sub/" + tok
	out := Subscription{
		UserID: u.ID, Name: u.Name, Token: tok, URL: url,
		Formats: map[string]string{
			user.FormatBase64:  url + "?format=" + user.FormatBase64,
			user.FormatClash:   url + "?format=" + user.FormatClash,
			user.FormatSingBox: url + "?format=" + user.FormatSingBox,
		},
	}
	if u.Has(protocol.Outline) {
		outline := url + "?format=" + user.FormatOutline
		out.Formats[user.FormatOutline] = outline
		_, rest, _ := strings.Cut(outline, "://")
		out.OutlineKey = "ssconf://" + rest + "#" + u.Name
	}
	return out
}

// publicBase is the base of the subscription URLs handed out for r:
// --public-url when set; else, from a trusted proxy, the host and scheme it
// forwards (X-Forwarded-Host, X-Forwarded-Proto); else r's own Host.
// Anyone else's forwarded headers are ignored, so a caller cannot make the
// gateway hand out a URL pointing at a host of its choosing.
func (s *Server) publicBase(r *http.Request) string {
	if base := strings.TrimSuffix(s.cfg.PublicURL, "/"); base != "" {
		return base
	}
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if s.fromTrustedProxy(r) {
		if h := firstForwarded(r.Header.Get("X-Forwarded-Host")); h != "" {
			host = h
		}
		switch p := strings.ToLower(firstForwarded(r.Header.Get("X-Forwarded-Proto"))); p {
		case "http", "https":
			scheme = p
		}
	}
	return scheme + "://" + host
}

// fromTrustedProxy reports whether r's peer is one of the trusted proxies.
func (s *Server) fromTrustedProxy(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// firstForwarded is the first (client-side) value of a forwarded header a
// chain of proxies appended to.
func firstForwarded(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return strings.TrimSpace(first)
}

func (s *Server) userSubscription(w http.ResponseWriter, r *http.Request) error {
	u, err := s.resolveUser(r)
	if err != nil {
		return err
	}
	tok, err := s.subs.Of(r.Context(), u.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.subscriptionOf(r, u, tok))
}

func (s *Server) rotateSubscription(w http.ResponseWriter, r *http.Request) error {
	u, err := s.resolveUser(r)
	if err != nil {
		return err
	}
	tok, err := s.subs.Rotate(r.Context(), u.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.subscriptionOf(r, u, tok))
}

// subscription serves the public /sub/{token}: the user's links on healthy
// nodes that serve them, in the format the client wants, with the headers
// subscription clients read. A user no node serves (disabled, limited,
// expired) gets no links.
func (s *Server) subscription(w http.ResponseWriter, r *http.Request) error {
	id, err := s.subs.User(r.Context(), r.PathValue("token"))
	if err != nil {
		return err
	}
	format, err := sub.Format(r)
	if err != nil {
		return err
	}
	u, err := call[user.User](s, r, subject.UsersCmd(subject.UsersGet), user.GetRequest{ID: id})
	if err != nil {
		return err
	}
	healthy, err := s.healthyNodes(r.Context())
	if err != nil {
		return err
	}
	resp, err := call[user.SubscriptionResponse](s, r, subject.UsersCmd(subject.UsersSubscription),
		user.SubscriptionRequest{ID: u.ID, Format: format, HealthyNodes: sub.NodesOf(u, healthy)})
	if err != nil {
		return err
	}
	if resp.Links == 0 && u.Status.Served() {
		// No node that serves the user is known healthy right now (a
		// restart, a health gap): a client refreshing must not lose every
		// server, so the links of every node are served, marked.
		every, err := call[user.SubscriptionResponse](s, r, subject.UsersCmd(subject.UsersSubscription),
			user.SubscriptionRequest{ID: u.ID, Format: format})
		if err != nil {
			return err
		}
		if every.Links > 0 {
			resp = every
			w.Header().Set(sub.HealthHeader, sub.HealthUnknown)
		}
	}
	if format == user.FormatOutline && resp.Links == 0 {
		return errs.New(errs.NotFound, "no outline access key: no serving node offers outline to this user")
	}
	sub.SetHeaders(w.Header(), u, format)
	w.Header().Set("Content-Type", resp.ContentType)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err = w.Write([]byte(resp.Body))
	return err
}
