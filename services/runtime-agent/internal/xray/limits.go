package xray

import (
	"context"

	handlercmd "github.com/xtls/xray-core/app/proxyman/command"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// MaxUsers is the number of users on one inbound that every limit of the
// Client is sized for (TestLimitsHoldMaxUsers checks each reply and
// request at this size).
const MaxUsers = 1_000_000

// XrayRecvLimit is the largest message Xray's API server accepts: Xray
// starts its gRPC server with gRPC's defaults, so 4 MiB, and a stock Xray
// cannot be told otherwise. Every request the Client sends stays below it:
// lists of ids are sent in chunks, and an inbound replacement that would
// not fit is refused (SOCKS5/HTTP) or done user by user (Shadowsocks-2022).
const XrayRecvLimit = 4 << 20

// maxUserReplyBytes bounds what one user adds to the largest per-user
// reply (QueryStats: two counters named after a 128-character id; see
// TestLimitsHoldMaxUsers), so MaxUsers users fit in DefaultMaxRecv.
const maxUserReplyBytes = 400

// DefaultMaxRecv is the largest reply a Client reads by default: MaxUsers
// users' worth of the largest per-user reply, with 4 MiB to spare.
const DefaultMaxRecv = MaxUsers*maxUserReplyBytes + 4<<20

// Limits bound the replies a Client reads from Xray's API. Xray has no
// paged listing (GetInboundUsers, ListInbounds and QueryStats answer with
// everything in one message), so a reply grows with the users: the Client
// asks with Recv and, when the reply is larger, again with twice the limit,
// up to MaxRecv. GetInboundUsers asks for the count first and sizes its
// limit from it, so listing a large inbound costs one extra small call, not
// a retry per doubling.
type Limits struct {
	// Recv is the reply size every call accepts at first (default 4 MiB,
	// gRPC's own default).
	Recv int
	// MaxRecv is the largest reply accepted (default DefaultMaxRecv). A
	// larger one fails with errs.CodeMessageTooLarge: the process never
	// reads an unbounded message.
	MaxRecv int
}

// DefaultLimits are the limits of a Client made without any.
func DefaultLimits() Limits { return Limits{}.withDefaults() }

func (l Limits) withDefaults() Limits {
	if l.Recv <= 0 {
		l.Recv = 4 << 20
	}
	if l.MaxRecv <= 0 {
		l.MaxRecv = DefaultMaxRecv
	}
	l.MaxRecv = max(l.MaxRecv, l.Recv)
	return l
}

// large runs call, whose reply may be larger than the limit it starts with
// (the larger of hint and Limits.Recv): a reply over the limit is asked for
// again with twice the limit, up to Limits.MaxRecv. The requests of these
// calls are tiny, so ResourceExhausted can only be the reply's size. It
// returns call's own error (for the caller to classify) or, past MaxRecv,
// one with errs.CodeMessageTooLarge.
func (c *Client) large(ctx context.Context, doing string, hint int, call func(grpc.CallOption) error) error {
	limit := min(max(hint, c.limits.Recv), c.limits.MaxRecv)
	for {
		err := call(grpc.MaxCallRecvMsgSize(limit))
		if status.Code(err) != codes.ResourceExhausted {
			return err
		}
		if limit >= c.limits.MaxRecv || ctx.Err() != nil {
			return errs.WithCode(errs.Wrap(errs.Invalid, err, "%s: the reply is over the limit of %d bytes", doing, c.limits.MaxRecv), errs.CodeMessageTooLarge)
		}
		limit = min(limit*2, c.limits.MaxRecv)
	}
}

// userBytes is what one user adds to a GetInboundUsers reply at most: a
// protocol.User with a 128-character email and the largest account
// (VLESS: id and flow; Shadowsocks-2022: a 44-character key), framed.
const userBytes = 300

// inboundUsers returns Xray's GetInboundUsers reply for tag, with a
// receive limit sized from the inbound's user count (asked first): the
// reply holds every user, about 100 bytes each (9.5 MB at 75,000 users,
// over gRPC's default 4 MiB).
func (c *Client) inboundUsers(ctx context.Context, tag string) (*handlercmd.GetInboundUserResponse, error) {
	doing := "listing users of " + tag
	n, err := c.InboundUserCount(ctx, tag)
	if err != nil {
		return nil, err
	}
	// Room for users added between the count and the list.
	hint := int(min(n+n/4+1024, MaxUsers*8)) * userBytes
	var resp *handlercmd.GetInboundUserResponse
	err = c.large(ctx, doing, hint, func(opt grpc.CallOption) (err error) {
		resp, err = c.handler.GetInboundUsers(ctx, &handlercmd.GetInboundUserRequest{Tag: tag}, opt)
		return err
	})
	if err != nil {
		return nil, classify(err, doing)
	}
	return resp, nil
}

// InboundUserCount is the number of users Xray has on the VLESS or
// Shadowsocks-2022 inbound tag (with the placeholder of an inbound that
// has none), one small reply at any size.
func (c *Client) InboundUserCount(ctx context.Context, tag string) (int64, error) {
	resp, err := c.handler.GetInboundUsersCount(ctx, &handlercmd.GetInboundUserRequest{Tag: tag})
	if err != nil {
		return 0, classify(err, "counting users of "+tag)
	}
	return resp.GetCount(), nil
}

// tooLarge is the error of a request Xray would refuse for its size.
func tooLarge(doing string, size int) error {
	return errs.WithCode(errs.New(errs.Invalid, "%s: the request would be %d bytes, over the %d bytes Xray's API accepts", doing, size, XrayRecvLimit), errs.CodeMessageTooLarge)
}

// chunks splits ids into runs whose encoded size stays well below
// XrayRecvLimit, for requests that carry a list of ids.
func chunks(ids []string) [][]string {
	const budget = XrayRecvLimit / 2
	var out [][]string
	start, size := 0, 0
	for i, id := range ids {
		n := len(id) + 8 // the string and its framing
		if size+n > budget && i > start {
			out = append(out, ids[start:i])
			start, size = i, 0
		}
		size += n
	}
	if start < len(ids) {
		out = append(out, ids[start:])
	}
	return out
}
