package sessions

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/sessionpb"
)

// service is SessionService on Xray's API.
type service struct {
	sessionpb.UnimplementedSessionServiceServer
	tracker *Tracker
}

// Register implements commander.Service.
func (s *service) Register(server *grpc.Server) {
	sessionpb.RegisterSessionServiceServer(server, s)
}

func (s *service) CutUsers(_ context.Context, req *sessionpb.CutUsersRequest) (*sessionpb.CutUsersResponse, error) {
	if s.tracker == nil {
		return nil, status.Error(codes.FailedPrecondition, "session tracking is not installed")
	}
	return &sessionpb.CutUsersResponse{Closed: uint32(s.tracker.Cut(req.GetEmails()))}, nil
}

func (s *service) ListSessions(context.Context, *sessionpb.ListSessionsRequest) (*sessionpb.ListSessionsResponse, error) {
	if s.tracker == nil {
		return nil, status.Error(codes.FailedPrecondition, "session tracking is not installed")
	}
	resp := &sessionpb.ListSessionsResponse{}
	for u, n := range s.tracker.Sessions() {
		resp.Users = append(resp.Users, &sessionpb.UserSessions{Email: u, Sessions: uint32(n)})
	}
	return resp, nil
}
