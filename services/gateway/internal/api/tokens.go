package api

import (
	"net/http"
	"time"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/auth"
	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// CreateTokenRequest is the body of POST /api/v1/tokens.
type CreateTokenRequest struct {
	Name string    `json:"name"`
	Role auth.Role `json:"role"`
	// TTL is a Go duration ("720h"); empty never expires.
	TTL string `json:"ttl,omitempty"`
}

// CreatedToken is a new token's record and the token itself, shown once.
type CreatedToken struct {
	auth.Token
	Secret string `json:"token"`
}

// TokenList is the reply of GET /api/v1/tokens.
type TokenList struct {
	Tokens []auth.Token `json:"tokens"`
}

// ParseTokenRequest checks a token request and returns its TTL.
func ParseTokenRequest(req CreateTokenRequest) (time.Duration, error) {
	var ttl time.Duration
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil {
			return 0, errs.Field("ttl", "must be a duration like 720h or 30m")
		}
		ttl = d
	}
	return ttl, auth.ValidateNew(req.Name, req.Role, ttl)
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.tokens.List(r.Context())
	if err != nil {
		return err
	}
	for i := range ts {
		ts[i] = ts[i].Public()
	}
	return writeJSON(w, http.StatusOK, TokenList{Tokens: ts})
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) error {
	req, err := body[CreateTokenRequest](s, r, false)
	if err != nil {
		return err
	}
	ttl, err := ParseTokenRequest(req)
	if err != nil {
		return err
	}
	t, secret, err := s.tokens.Create(r.Context(), req.Name, req.Role, ttl, infoOf(r).tok.ID)
	if err != nil {
		return err
	}
	setTarget(r, "token", t.ID)
	w.Header().Set("Location", "/api/v1/tokens/"+t.ID)
	return writeJSON(w, http.StatusCreated, CreatedToken{Token: t.Public(), Secret: secret})
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) error {
	t, err := s.tokens.Revoke(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, t.Public())
}
