package servers

import (
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/vpnfleet/vpnfleet/services/users/internal/serverkeys"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

func init() {
	inboundKinds[user.VLESSReality] = inboundKind{
		norm: normReality,
		keys: func(ib *server.Inbound, in server.InboundRequest, old *server.Inbound) error {
			r, err := realityKeys(in, old)
			ib.Reality = r
			return err
		},
	}
}

func normReality(fe *fields, p string, in server.InboundRequest) server.InboundRequest {
	destHost, destIsIP := "", false
	if in.Dest == "" {
		fe.add(p+".dest", "is required for vless-reality: "+DestRule)
	} else if host, ip, ok := splitDest(in.Dest); !ok {
		fe.add(p+".dest", DestRule)
	} else {
		destHost, destIsIP = host, ip
		_, port, _ := net.SplitHostPort(in.Dest)
		in.Dest = net.JoinHostPort(host, port)
	}
	if len(in.ServerNames) > maxServerNames {
		fe.add(p+".server_names", fmt.Sprintf("must list at most %d names", maxServerNames))
	} else {
		names := make([]string, len(in.ServerNames))
		for i, sn := range in.ServerNames {
			names[i] = strings.ToLower(sn)
			if !validDNSName(names[i]) {
				fe.add(fmt.Sprintf("%s.server_names[%d]", p, i), ServerNameRule)
			}
		}
		in.ServerNames = names
	}
	if len(in.ServerNames) == 0 {
		switch {
		case destHost != "" && !destIsIP:
			in.ServerNames = []string{destHost}
		case destIsIP:
			fe.add(p+".server_names", "must be set when dest is an IP address: a TLS server name cannot be an IP")
		}
	}
	if len(in.ShortIDs) > maxShortIDs {
		fe.add(p+".short_ids", fmt.Sprintf("must list at most %d short ids", maxShortIDs))
	} else {
		sids := make([]string, len(in.ShortIDs))
		for i, sid := range in.ShortIDs {
			sids[i] = strings.ToLower(sid)
			if len(sid) > 16 || len(sid)%2 != 0 || strings.Trim(sids[i], "0123456789abcdef") != "" {
				fe.add(fmt.Sprintf("%s.short_ids[%d]", p, i), ShortIDRule)
			}
		}
		in.ShortIDs = sids
	}
	if in.Fingerprint == "" {
		in.Fingerprint = DefaultFingerprint
	} else if !slices.Contains(Fingerprints, in.Fingerprint) {
		fe.add(p+".fingerprint", "must be one of "+strings.Join(Fingerprints, ", "))
	}
	if in.PrivateKey != "" {
		if _, err := serverkeys.X25519FromPrivate(in.PrivateKey); err != nil {
			fe.add(p+".private_key", "x25519 private key "+err.Error())
		}
	}
	return in
}

func realityKeys(in server.InboundRequest, old *server.Inbound) (*server.Reality, error) {
	r := &server.Reality{ServerNames: in.ServerNames, Dest: in.Dest, ShortIDs: in.ShortIDs, Fingerprint: in.Fingerprint}
	var pair serverkeys.X25519Pair
	var err error
	switch {
	case in.PrivateKey != "":
		pair, err = serverkeys.X25519FromPrivate(in.PrivateKey)
	case old != nil && old.Reality != nil:
		// Keep the pair, re-deriving the public key; a stored key that no
		// longer decodes is replaced rather than kept broken.
		if pair, err = serverkeys.X25519FromPrivate(old.Reality.PrivateKey); err != nil {
			pair, err = serverkeys.NewX25519()
		}
	default:
		pair, err = serverkeys.NewX25519()
	}
	if err != nil {
		return nil, err
	}
	r.PrivateKey, r.PublicKey = pair.Private, pair.Public
	if len(r.ShortIDs) == 0 {
		if old != nil && old.Reality != nil && len(old.Reality.ShortIDs) > 0 {
			r.ShortIDs = old.Reality.ShortIDs
		} else {
			sid, err := serverkeys.NewShortID()
			if err != nil {
				return nil, err
			}
			r.ShortIDs = []string{sid}
		}
	}
	return r, nil
}
