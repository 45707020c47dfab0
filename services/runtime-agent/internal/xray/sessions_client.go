package xray

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/sessionpb"
	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// CutUsers ends every open session of the users ids on this Xray and
// returns how many it closed; a user with no sessions is not an error. It
// needs vpn-xray (cmd/vpn-xray): on a stock Xray it fails with
// errs.CodeUnsupported, and the users' sessions keep running until their
// clients close them.
func (c *Client) CutUsers(ctx context.Context, ids []string) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	// Xray's API takes at most XrayRecvLimit per request: a long list of
	// ids (a bulk disable) goes in chunks.
	closed := 0
	for _, part := range chunks(ids) {
		resp, err := c.sessions.CutUsers(ctx, &sessionpb.CutUsersRequest{Emails: part})
		if err != nil {
			return closed, sessionError(err, fmt.Sprintf("cutting the sessions of %d users", len(ids)))
		}
		closed += int(resp.GetClosed())
	}
	return closed, nil
}

// Sessions counts the open sessions per user id, for users with at least
// one. Like CutUsers it needs vpn-xray.
func (c *Client) Sessions(ctx context.Context) (map[string]int, error) {
	var resp *sessionpb.ListSessionsResponse
	err := c.large(ctx, "listing sessions", 0, func(opt grpc.CallOption) (err error) {
		resp, err = c.sessions.ListSessions(ctx, &sessionpb.ListSessionsRequest{}, opt)
		return err
	})
	if err != nil {
		return nil, sessionError(err, "listing sessions")
	}
	out := make(map[string]int, len(resp.GetUsers()))
	for _, u := range resp.GetUsers() {
		out[u.GetEmail()] = int(u.GetSessions())
	}
	return out, nil
}

// HasSessionControl tells whether this Xray carries the session extension
// (it answers SessionService). It fails only when Xray does not answer.
func (c *Client) HasSessionControl(ctx context.Context) (bool, error) {
	_, err := c.Sessions(ctx)
	switch {
	case err == nil:
		return true, nil
	case errs.CodeOf(err) == errs.CodeUnsupported:
		return false, nil
	}
	return false, err
}

func sessionError(err error, doing string) error {
	if status.Code(err) == codes.Unimplemented && errs.CodeOf(err) == "" {
		return errs.WithCode(errs.Wrap(errs.Conflict, err, "%s: this Xray cannot end sessions (not built with vpn-xray)", doing), errs.CodeUnsupported)
	}
	return classify(err, doing)
}
