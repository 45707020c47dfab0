package servers

import (
	"strings"

	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// inboundKind is the registry's part of a protocol (shared/protocol): how
// an inbound request of it is checked and completed, and how its inbound
// gets its keys. One file per protocol registers it; a test checks that
// every protocol has one.
type inboundKind struct {
	// norm checks the protocol's own fields of in (field paths under p)
	// and fills in their defaults; nil when it has none.
	norm func(fe *fields, p string, in server.InboundRequest) server.InboundRequest
	// keys sets the protocol's settings on ib from the checked request,
	// keeping what old (the server's inbound with the same tag and
	// protocol, if any) had where the request gives nothing new; nil when
	// it has none.
	keys func(ib *server.Inbound, in server.InboundRequest, old *server.Inbound) error
}

// inboundKinds holds every protocol's inboundKind.
var inboundKinds = map[user.Protocol]inboundKind{
	// SOCKS5 and HTTP inbounds have no settings of their own.
	user.SOCKS5: {},
	user.HTTP:   {},
}

// requestFields lists the protocol-specific fields in sets (JSON names).
func requestFields(in server.InboundRequest) []string {
	var out []string
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"dest", in.Dest != ""}, {"server_names", len(in.ServerNames) > 0}, {"short_ids", len(in.ShortIDs) > 0},
		{"fingerprint", in.Fingerprint != ""}, {"private_key", in.PrivateKey != ""},
		{"method", in.Method != ""}, {"server_key", in.ServerKey != ""},
	} {
		if f.set {
			out = append(out, f.name)
		}
	}
	return out
}

// owners names the protocols whose inbounds take the request field f.
func owners(f string) string {
	var names []string
	for _, d := range protocol.All {
		for _, rf := range d.RequestFields {
			if rf == f {
				names = append(names, string(d.Name))
			}
		}
	}
	return strings.Join(names, " or ")
}
