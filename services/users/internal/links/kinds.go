package links

import (
	"errors"
	"net/url"

	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// kind is the links' part of a protocol (shared/protocol): what its link
// carries, how it is written and read back, and its entries in Clash and
// sing-box subscriptions. One file per protocol registers it; a test
// checks that every protocol has one.
type kind struct {
	// scheme is the URL scheme of its links.
	scheme string
	// params fills p's protocol fields from the user's credentials c and
	// the inbound in, or returns why the user gets no link there.
	params func(c user.Credentials, in server.Inbound, p *Params) string
	// build writes the link of p, given its host:port and its fragment
	// ("#name" escaped, or "").
	build func(p Params, hostport, frag string) string
	// parse reads the protocol fields of a link of its scheme into p; it
	// returns errNotMine for a link of the same scheme in another
	// protocol's form.
	parse func(u *url.URL, p *Params) error
	// clash and singBox fill the protocol's part of its subscription
	// entries.
	clash   func(p Params, c *ClashProxy)
	singBox func(p Params, o *SingBoxOutbound)
}

// kinds holds every protocol's kind.
var kinds = map[user.Protocol]kind{}

// errNotMine tells Parse to try the next protocol of the same scheme.
var errNotMine = errors.New("link of another protocol")
