package server

import "github.com/vpnfleet/vpnfleet/shared/user"

// Request and reply types of the servers endpoints
// (subject.ServersCmd(endpoint)). The registry generates every key: a
// create names protocols, ports and REALITY's borrowed site, and carries a
// secret only to import an existing server's key.

// InboundRequest describes one inbound to create. Tag defaults to the
// protocol name; Listen to every interface.
type InboundRequest struct {
	Tag      string        `json:"tag,omitempty"`
	Protocol user.Protocol `json:"protocol"`
	Port     int           `json:"port"`
	Listen   string        `json:"listen,omitempty"`
	// vless-reality: the site REALITY borrows (dest host:port) and the SNIs
	// clients present (default: dest's host); short ids are generated when
	// empty; fingerprint defaults to chrome.
	Dest        string   `json:"dest,omitempty"`
	ServerNames []string `json:"server_names,omitempty"`
	ShortIDs    []string `json:"short_ids,omitempty"`
	Fingerprint string   `json:"fingerprint,omitempty"`
	// shadowsocks-2022: the method (default 2022-blake3-aes-128-gcm).
	Method string `json:"method,omitempty"`
	// PrivateKey (vless-reality, base64url without padding) and ServerKey
	// (shadowsocks-2022, standard base64 of the method's key length) import
	// an existing server's key, so that its clients' links keep working.
	// Empty: a new inbound gets a fresh key and an updated one keeps its
	// own (same tag and protocol, and for Shadowsocks the same method).
	PrivateKey string `json:"private_key,omitempty"`
	ServerKey  string `json:"server_key,omitempty"`
}

// CreateRequest deploys a server on a node. The reply is the Server, with
// keys generated and Status pending until the node's agent applies it.
type CreateRequest struct {
	Node string `json:"node"`
	Name string `json:"name"`
	// Runtime is where the server runs (docker, containerd, process);
	// empty: the node's default.
	Runtime  string           `json:"runtime,omitempty"`
	Inbounds []InboundRequest `json:"inbounds"`
}

// GetRequest names a server by id. The reply is the Server.
type GetRequest struct {
	ID string `json:"id"`
}

// ListRequest lists servers, all or one node's. The reply is ListResponse.
type ListRequest struct {
	Node string `json:"node,omitempty"`
}

// ListResponse holds servers sorted by node, then name.
type ListResponse struct {
	Servers []Server `json:"servers"`
}

// UpdateRequest changes a server's name or inbounds (nil leaves them);
// inbounds keep the keys of an existing inbound with the same tag and
// protocol. ExpectedRevision as in user.UpdateRequest. The reply is the
// Server.
type UpdateRequest struct {
	ID               string            `json:"id"`
	ExpectedRevision uint64            `json:"expected_revision,omitempty"`
	Name             *string           `json:"name,omitempty"`
	Inbounds         *[]InboundRequest `json:"inbounds,omitempty"`
	// Runtime moves the server to another runtime of its node (stop on
	// one, start on the other); "" makes it inherit again, staying where
	// it runs.
	Runtime *string `json:"runtime,omitempty"`
}

// DeleteRequest removes a server; its agent stops and removes the workload.
// The reply is DeleteResponse.
type DeleteRequest struct {
	ID               string `json:"id"`
	ExpectedRevision uint64 `json:"expected_revision,omitempty"`
}

// DeleteResponse carries the revision of the deletion, which is also the
// revision in its event's id.
type DeleteResponse struct {
	ID       string `json:"id"`
	Revision uint64 `json:"revision"`
}

// WorkloadName is the name of the workload that runs a server on its
// node, so the gateway can ask the node's agent for its logs or a restart.
func WorkloadName(serverID string) string { return "xray-" + serverID }
