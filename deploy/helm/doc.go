// Package helm holds the tests of the vpnfleet Helm chart (vpnfleet/):
// they render it with the Helm v4 library, decode every object strictly
// into its Kubernetes API type and check it against the real vpnd and
// vpn-agent binaries.
package helm
