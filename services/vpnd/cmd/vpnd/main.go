// Command vpnd runs the whole control plane in one process: an embedded
// NATS JetStream server and every service's core. It is the default on one
// machine; see internal/daemon.
package main

import (
	"github.com/vpnfleet/vpnfleet/services/vpnd/internal/daemon"
	"github.com/vpnfleet/vpnfleet/shared/lifecycle"
)

func main() { lifecycle.Main("vpnd", daemon.Main) }
