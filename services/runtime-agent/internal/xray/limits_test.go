package xray

import (
	"math"
	"strings"
	"testing"

	handlercmd "github.com/xtls/xray-core/app/proxyman/command"
	statscmd "github.com/xtls/xray-core/app/stats/command"
	"github.com/xtls/xray-core/common/protocol"
	"github.com/xtls/xray-core/common/serial"
	"github.com/xtls/xray-core/core"
	"github.com/xtls/xray-core/proxy/shadowsocks_2022"
	"github.com/xtls/xray-core/proxy/socks"
	"github.com/xtls/xray-core/proxy/vless"
	"google.golang.org/protobuf/proto"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/sessionpb"
)

// longestID is the longest user id the agent gives Xray (userIDRe).
var longestID = strings.Repeat("a", 128)

// perItem is what one more element of a repeated field adds to msg's
// encoding: protobuf encodes a repeated field as the sum of its framed
// elements, so n elements take n times that.
func perItem(t *testing.T, one, two proto.Message) int {
	t.Helper()
	d := proto.Size(two) - proto.Size(one)
	if d <= 0 {
		t.Fatalf("two elements (%d bytes) not larger than one (%d)", proto.Size(two), proto.Size(one))
	}
	return d
}

// TestLimitsHoldMaxUsers checks, for every Xray API call whose reply or
// request grows with the users, that MaxUsers users of the largest shape
// (128-character ids, the longest credentials, the largest counter values)
// fit the Client's limits: replies under DefaultMaxRecv, and requests
// under XrayRecvLimit, or split (CutUsers) or refused before sending
// (inbound replacements).
func TestLimitsHoldMaxUsers(t *testing.T) {
	vlessUser := &protocol.User{Email: longestID, Level: math.MaxUint32, Account: serial.ToTypedMessage(&vless.Account{
		Id: "0f8c2a6e-3b1d-4c57-9e0a-1b2c3d4e5f60", Flow: FlowVision, Encryption: "none",
	})}
	ssUser := &protocol.User{Email: longestID, Level: math.MaxUint32, Account: serial.ToTypedMessage(&shadowsocks_2022.Account{
		Key: strings.Repeat("k", 44), // base64 of a 32-byte key
	})}
	stat := func(dir string) *statscmd.Stat {
		return &statscmd.Stat{Name: "user>>>" + longestID + ">>>traffic>>>" + dir, Value: math.MaxInt64}
	}
	socksWith := func(n int) *handlercmd.ListInboundsResponse {
		acc := map[string]string{}
		for i := range n {
			acc[longestID[:127]+string(rune('a'+i))] = strings.Repeat("p", 64)
		}
		return &handlercmd.ListInboundsResponse{Inbounds: []*core.InboundHandlerConfig{{
			Tag: "socks", ProxySettings: serial.ToTypedMessage(&socks.ServerConfig{Accounts: acc}),
		}}}
	}

	replies := []struct {
		name     string
		one, two proto.Message
		max      int // bytes one user may add
	}{
		{"GetInboundUsers vless",
			&handlercmd.GetInboundUserResponse{Users: []*protocol.User{vlessUser}},
			&handlercmd.GetInboundUserResponse{Users: []*protocol.User{vlessUser, vlessUser}}, userBytes},
		{"GetInboundUsers shadowsocks-2022",
			&handlercmd.GetInboundUserResponse{Users: []*protocol.User{ssUser}},
			&handlercmd.GetInboundUserResponse{Users: []*protocol.User{ssUser, ssUser}}, userBytes},
		{"QueryStats user>>>",
			&statscmd.QueryStatsResponse{Stat: []*statscmd.Stat{stat("uplink"), stat("downlink")}},
			&statscmd.QueryStatsResponse{Stat: []*statscmd.Stat{stat("uplink"), stat("downlink"), stat("uplink"), stat("downlink")}}, maxUserReplyBytes},
		{"ListInbounds socks accounts", socksWith(1), socksWith(2), maxUserReplyBytes},
		{"ListSessions",
			&sessionpb.ListSessionsResponse{Users: []*sessionpb.UserSessions{{Email: longestID, Sessions: math.MaxInt32}}},
			&sessionpb.ListSessionsResponse{Users: []*sessionpb.UserSessions{{Email: longestID, Sessions: math.MaxInt32}, {Email: longestID, Sessions: math.MaxInt32}}}, maxUserReplyBytes},
	}
	lim := DefaultLimits()
	for _, tc := range replies {
		t.Run(tc.name, func(t *testing.T) {
			per := perItem(t, tc.one, tc.two)
			if per > tc.max {
				t.Fatalf("one user adds %d bytes, over the %d the limits assume", per, tc.max)
			}
			total := proto.Size(tc.one) + (MaxUsers-1)*per
			if total > lim.MaxRecv {
				t.Fatalf("%d users take %d bytes, over MaxRecv %d", MaxUsers, total, lim.MaxRecv)
			}
			t.Logf("%d bytes per user, %d users: %.1f MB (MaxRecv %.1f MB)", per, MaxUsers, float64(total)/1e6, float64(lim.MaxRecv)/1e6)
		})
	}

	t.Run("GetInboundUsers limit from the count", func(t *testing.T) {
		// The limit inboundUsers asks with for n users holds n users.
		for _, n := range []int64{0, 1, 75_639, MaxUsers} {
			hint := int(min(n+n/4+1024, MaxUsers*8)) * userBytes
			if need := int(n) * userBytes; min(hint, lim.MaxRecv) < need {
				t.Errorf("%d users: limit %d, need %d", n, min(hint, lim.MaxRecv), need)
			}
		}
	})

	t.Run("CutUsers requests", func(t *testing.T) {
		ids := make([]string, MaxUsers)
		for i := range ids {
			ids[i] = longestID
		}
		total := 0
		for _, part := range chunks(ids) {
			if n := proto.Size(&sessionpb.CutUsersRequest{Emails: part}); n > XrayRecvLimit {
				t.Fatalf("a chunk of %d ids takes %d bytes, over %d", len(part), n, XrayRecvLimit)
			}
			total += len(part)
		}
		if total != MaxUsers {
			t.Fatalf("chunks hold %d ids, want %d", total, MaxUsers)
		}
	})
}
