package reconcile

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/atomicfile"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray"
	"github.com/vpnfleet/vpnfleet/shared/server"
)

// unknownFP stands for a user Xray has whose credentials the agent does
// not know (found by a drift check, or left by an agent that died before
// recording): it is removed and added again once.
const unknownFP = "?"

// applied is what the agent put into one running Xray: per inbound tag,
// user id → credential fingerprint. Xray lists users by id only, so this is
// the one record of which credentials it holds.
type applied map[string]map[string]string

func (a applied) inbound(tag string) map[string]string {
	m := a[tag]
	if m == nil {
		m = map[string]string{}
		a[tag] = m
	}
	return m
}

// stateFile is the persisted form of applied, tied to the Xray instance it
// describes: an agent restarted while that instance runs picks it up; any
// other instance (a restart, a new workload) started with no users, so the
// record is void.
type stateFile struct {
	Instance string  `json:"instance"`
	Users    applied `json:"users"`
}

// loadState reads the record in path; a missing or unreadable one is
// empty, which only costs a remove and add of each user found in Xray.
func loadState(path string) stateFile {
	data, err := os.ReadFile(path)
	if err != nil {
		return stateFile{}
	}
	var st stateFile
	if json.Unmarshal(data, &st) != nil {
		return stateFile{}
	}
	return st
}

// saveState replaces the record in path atomically. It is not synced: the
// record only matters while the same Xray instance runs, and a host crash
// ends that instance too.
func saveState(path string, st stateFile) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encoding applied users: %w", err)
	}
	return atomicfile.Write(path, data, 0o600, false)
}

// deployed is what a server's workload was deployed with: the Xray spec
// (with keys, so the file is private) and the server record it came from.
// An adopting agent reads it to know what runs (its inbounds and ports).
type deployed struct {
	Spec   xray.Spec     `json:"spec"`
	Server server.Server `json:"server"`
}

func loadDeployed(path string) (deployed, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return deployed{}, false
	}
	var d deployed
	if json.Unmarshal(data, &d) != nil {
		return deployed{}, false
	}
	return d, true
}

func saveDeployed(path string, d deployed) error {
	data, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encoding deployed spec: %w", err)
	}
	return atomicfile.Write(path, data, 0o600, false)
}
