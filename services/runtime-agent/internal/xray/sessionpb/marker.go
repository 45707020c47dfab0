package sessionpb

// VersionMarker is the line `vpn-xray version` prints after Xray's own:
// the agent looks for it to know an Xray executable carries the session
// extension.
const VersionMarker = "vpnfleet extensions: sessions"
