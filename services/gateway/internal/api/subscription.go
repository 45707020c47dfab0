package api

import (
	"net/http"
	"strings"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/sub"
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
}

func (s *Server) subscriptionOf(r *http.Request, u user.User, tok string) Subscription {
	base := strings.TrimSuffix(s.cfg.PublicURL, "/")
	if base == "" {
		scheme := "http"
		if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	url := base + "/sub/" + tok
	return Subscription{
		UserID: u.ID, Name: u.Name, Token: tok, URL: url,
		Formats: map[string]string{
			user.FormatBase64:  url + "?format=" + user.FormatBase64,
			user.FormatClash:   url + "?format=" + user.FormatClash,
			user.FormatSingBox: url + "?format=" + user.FormatSingBox,
		},
	}
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
	sub.SetHeaders(w.Header(), u, format)
	w.Header().Set("Content-Type", resp.ContentType)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err = w.Write([]byte(resp.Body))
	return err
}
