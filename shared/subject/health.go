package subject

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Health: buckets, history streams, consumers and request subjects of
// services/health. Streams() and Buckets() list the declarations below, so
// every start provisions them with the rest.

// Buckets of the health service.
const (
	// BucketNodeHealth maps a node id to its judged health (healthy,
	// degraded, down), the reasons and since when. The gateway's
	// subscription and placement logic read it.
	BucketNodeHealth = "node_health"
	// BucketAlerts maps an alert fingerprint to its state (firing or
	// resolved, acknowledged). Every write is a compare-and-set, so N
	// health replicas never fire one alert twice.
	BucketAlerts = "alerts"
	// BucketHealthLease holds one key, HealthLeaseKey: the replica that
	// currently evaluates health and alerts. Entries expire after
	// HealthLeaseTTL unless renewed, so a dead holder is replaced.
	BucketHealthLease = "health_lease"
)

// HealthLeaseKey is the key of the evaluator lease in BucketHealthLease.
const HealthLeaseKey = "evaluator"

// HealthLeaseTTL is how long the evaluator lease lives without renewal.
const HealthLeaseTTL = 15 * time.Second

// History streams: downsampled points, one stream per resolution so each
// keeps its own retention (MaxAge).
const (
	StreamHistoryFine   = "HISTORY_FINE"
	StreamHistoryCoarse = "HISTORY_COARSE"
)

// Retention of the history streams: fine points (1 minute by default) for
// a day, coarse points (1 hour) for 90 days.
const (
	HistoryFineRetention   = 24 * time.Hour
	HistoryCoarseRetention = 90 * 24 * time.Hour
)

// History resolutions: the token after "vpn.hist.".
const (
	ResolutionFine   = "fine"
	ResolutionCoarse = "coarse"
)

const historyPrefix = "vpn.hist."

// NodeHistory is the subject of one node's history points at a resolution
// ("vpn.hist.<resolution>.node.<node>").
func NodeHistory(resolution, node string) string {
	return historyPrefix + resolution + ".node." + node
}

// UserHistory is the subject of one user's traffic points at a resolution
// ("vpn.hist.<resolution>.user.<user>").
func UserHistory(resolution, user string) string {
	return historyPrefix + resolution + ".user." + user
}

// HealthEvent is the subject of health transitions of one node
// ("vpn.evt.health.<node>").
func HealthEvent(node string) string { return Event(KindHealth, node) }

// AlertEvent is the subject of firing and resolved events of one alert
// ("vpn.evt.alert.<fingerprint>").
func AlertEvent(fingerprint string) string { return Event(KindAlert, fingerprint) }

// AllAlertEvents is the wildcard of every alert event; notifiers filter on it.
var AllAlertEvents = EventsOfKind(KindAlert)

// Durable consumers of the health service, besides ConsumerHealthUsage and
// ConsumerHealthStats. Notifier consumers are named by NotifierConsumer.
const (
	ConsumerHealthEvents = "health-events"
	notifierPrefix       = "health-notify-"
)

// HealthStatsConsumer declares health's durable consumer of STATS, shared
// by the replicas (only the lease holder pulls from it).
func HealthStatsConsumer() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       ConsumerHealthStats,
		Description:   "health: node and workload stats into node health and history",
		FilterSubject: AllStats,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 1000,
	}
}

// HealthUsageConsumer declares health's durable consumer of USAGE (traffic
// history and metrics; the registry counts on its own consumer).
func HealthUsageConsumer() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       ConsumerHealthUsage,
		Description:   "health: per-node and per-user traffic history and metrics",
		FilterSubject: AllUsage,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 100,
	}
}

// HealthEventsConsumer declares health's durable consumer of the events its
// health view and event alert rules need: runtime, user and job events.
func HealthEventsConsumer() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        ConsumerHealthEvents,
		Description:    "health: runtime, user and job events into node health and alerts",
		FilterSubjects: []string{EventsOfKind(KindRuntime), EventsOfKind(KindUser), EventsOfKind(KindJob)},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        30 * time.Second,
		MaxAckPending:  1,
	}
}

// NotifierConsumer declares the durable consumer of alert events for one
// notifier (name is a subject token). Each notifier has its own, so a slow
// or failing receiver never holds back another, and alerts wait in EVENTS
// while a receiver is down. A new notifier starts with alerts raised from
// its creation on.
func NotifierConsumer(name string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       notifierPrefix + name,
		Description:   "health: alert notifications to " + name,
		FilterSubject: AllAlertEvents,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Minute,
		MaxDeliver:    -1,
		MaxAckPending: 1,
	}
}

// historyFineStream declares StreamHistoryFine.
func historyFineStream(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamHistoryFine,
		Description: "fine (1m) downsampled node and user history",
		Subjects:    []string{historyPrefix + ResolutionFine + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      HistoryFineRetention,
		Discard:     jetstream.DiscardOld,
		Duplicates:  10 * time.Minute,
		Replicas:    replicas,
	}
}

// historyCoarseStream declares StreamHistoryCoarse.
func historyCoarseStream(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamHistoryCoarse,
		Description: "coarse (1h) downsampled node and user history",
		Subjects:    []string{historyPrefix + ResolutionCoarse + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      HistoryCoarseRetention,
		Discard:     jetstream.DiscardOld,
		Duplicates:  2 * time.Hour,
		Replicas:    replicas,
	}
}

// nodeHealthBucket declares BucketNodeHealth.
func nodeHealthBucket(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: BucketNodeHealth, Description: "node id -> judged health, reasons, since", History: 1, Storage: jetstream.FileStorage, Replicas: replicas}
}

// alertsBucket declares BucketAlerts.
func alertsBucket(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: BucketAlerts, Description: "alert fingerprint -> firing/resolved state, ack", History: 1, Storage: jetstream.FileStorage, Replicas: replicas}
}

// healthLeaseBucket declares BucketHealthLease.
func healthLeaseBucket(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: BucketHealthLease, Description: "the health replica evaluating alerts", History: 1, TTL: HealthLeaseTTL, Storage: jetstream.FileStorage, Replicas: replicas}
}

// The health service: fleet health, history and alerts over request/reply.
// Request and reply types are in package event (health_api.go).
const HealthService = "vpn.health"

// HealthCmd is the request subject of one health endpoint.
func HealthCmd(endpoint string) string { return HealthService + "." + endpoint }

// Endpoints of the health service.
const (
	HealthNodes  = "nodes"
	HealthStats  = "stats"
	HealthUsage  = "usage"
	HealthAlerts = "alerts"
	HealthAck    = "ack"
)

// HealthQueueGroup is the queue group of the health endpoints, so N
// replicas share the requests.
const HealthQueueGroup = "health"
