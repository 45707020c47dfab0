package agent

import "net"

// detectPublicAddr picks the address clients most likely reach this host
// on: the first global unicast IPv4 address that is not private, else the
// first private one, else the first global IPv6 one, else loopback. An
// operator behind NAT sets --public-addr instead.
func detectPublicAddr() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "127.0.0.1"
	}
	var private, v6 string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || !ipn.IP.IsGlobalUnicast() {
			continue
		}
		ip := ipn.IP
		switch {
		case ip.To4() != nil && !ip.IsPrivate():
			return ip.String()
		case ip.To4() != nil && private == "":
			private = ip.String()
		case ip.To4() == nil && v6 == "" && !ip.IsPrivate():
			v6 = ip.String()
		}
	}
	switch {
	case private != "":
		return private
	case v6 != "":
		return v6
	}
	return "127.0.0.1"
}
