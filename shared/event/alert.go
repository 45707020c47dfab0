package event

import (
	"strconv"
	"time"
)

// Alert is the payload of alert.firing.v1 and alert.resolved.v1 events
// (subject.AlertEvent(fingerprint)) and the value of an alert's entry in
// the alerts bucket. The event id is "<fingerprint>:<seq>:<status>", so
// every replica that publishes one transition publishes the same message
// and it is stored once.
type Alert struct {
	// Fingerprint is stable for one rule and one set of labels: the same
	// condition on the same node is always the same alert.
	Fingerprint string `json:"fingerprint"`
	Rule        string `json:"rule"`
	// Status is AlertFiringStatus or AlertResolvedStatus.
	Status   string            `json:"status"`
	Severity string            `json:"severity"`
	Summary  string            `json:"summary"`
	Labels   map[string]string `json:"labels,omitempty"`
	// Value is what the condition saw when the alert last changed;
	// Threshold is the rule's.
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold"`
	// Seq counts the times this alert fired; each firing and its
	// resolution share one Seq.
	Seq      uint64    `json:"seq"`
	StartsAt time.Time `json:"starts_at"`
	EndsAt   time.Time `json:"ends_at,omitzero"`
	// Published is set once the event of the current status is stored on
	// EVENTS; a replica that finds it unset publishes it (same id).
	Published bool      `json:"published,omitempty"`
	AckedBy   string    `json:"acked_by,omitempty"`
	AckedAt   time.Time `json:"acked_at,omitzero"`
	Comment   string    `json:"comment,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Alert statuses.
const (
	AlertFiringStatus   = "firing"
	AlertResolvedStatus = "resolved"
)

// Alert severities, most urgent first.
const (
	SeverityCritical = "critical"
	SeverityWarning  = "warning"
	SeverityInfo     = "info"
)

// EventID is the event id (and Nats-Msg-Id) of the alert's current
// transition.
func (a Alert) EventID() string {
	return a.Fingerprint + ":" + strconv.FormatUint(a.Seq, 10) + ":" + a.Status
}

// AlertsRequest asks vpn.health.alerts for alerts. Status is "firing"
// (default), "resolved" or "all"; Severity and Node filter when set.
type AlertsRequest struct {
	Status   string `json:"status,omitempty"`
	Severity string `json:"severity,omitempty"`
	Node     string `json:"node,omitempty"`
}

// AlertsReply answers AlertsRequest, most recent first.
type AlertsReply struct {
	Alerts []Alert `json:"alerts"`
}

// AckRequest acknowledges an alert (vpn.health.ack): an operator has seen
// it. It is recorded on the alert until it fires again. The reply is the
// updated Alert.
type AckRequest struct {
	Fingerprint string `json:"fingerprint"`
	By          string `json:"by"`
	Comment     string `json:"comment,omitempty"`
}
