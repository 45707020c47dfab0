// Package xray is the agent's layer over Xray-core: it turns the desired
// state of one node's server (a Spec) into a correct Xray JSON config, makes
// and checks the keys that config needs (REALITY X25519, Shadowsocks-2022
// PSKs), and drives a running Xray through its gRPC API (HandlerService and
// StatsService) so that user changes apply live, without a restart.
//
// Restarting Xray stalls REALITY handshakes for seconds, so a user change
// never restarts it: VLESS and Shadowsocks-2022 users are added and removed
// with AlterInbound; SOCKS5 and HTTP inbounds, which Xray cannot alter, have
// only the one inbound replaced (RemoveInbound + AddInbound), see Client.
//
// Xray knows users by "email". The agent uses the user's id as email (and as
// the SOCKS5/HTTP user name, which those inbounds report as email), so usage
// counters map straight back to users.
package xray
