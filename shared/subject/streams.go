package subject

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Streams.
const (
	StreamEvents = "EVENTS"
	StreamJobs   = "JOBS"
	StreamUsage  = "USAGE"
	StreamStats  = "STATS"
)

// Key-value buckets.
const (
	BucketUsers     = "users"
	BucketUserNames = "user_names"
	BucketNodes     = "nodes"
	BucketServers   = "servers"
	BucketJobs      = "jobs"
)

// Durable consumer names. A consumer name says who reads and what.
const (
	ConsumerUsersUsage  = "users-usage"
	ConsumerUsersJobs   = "users-jobs"
	ConsumerHealthUsage = "health-usage"
	ConsumerHealthStats = "health-stats"
)

// Streams returns the declaration of every stream, with the given replica
// count (1 on one machine, 3 on a cluster).
//
// Duplicate windows: EVENTS and JOBS dedupe retried publishes for a few
// minutes; USAGE keeps a longer window because agents replay buffered
// records after an outage (consumers are idempotent regardless).
func Streams(replicas int) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{
		{
			Name:        StreamEvents,
			Description: "domain events: users, servers, runtime, jobs, alerts, audit",
			Subjects:    []string{AllEvents},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      30 * 24 * time.Hour,
			MaxBytes:    1 << 30,
			Discard:     jetstream.DiscardOld,
			Duplicates:  5 * time.Minute,
			Replicas:    replicas,
		},
		{
			Name:        StreamJobs,
			Description: "bulk job items, one message per item, consumed once",
			Subjects:    []string{AllJobs},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Duplicates:  10 * time.Minute,
			Replicas:    replicas,
		},
		{
			Name:        StreamUsage,
			Description: "per-user traffic deltas reported by agents",
			Subjects:    []string{AllUsage},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      7 * 24 * time.Hour,
			Duplicates:  time.Hour,
			Replicas:    replicas,
		},
		{
			Name:        StreamStats,
			Description: "host and workload resource stats, short-lived",
			Subjects:    []string{AllStats},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      time.Hour,
			MaxBytes:    256 << 20,
			Discard:     jetstream.DiscardOld,
			Duplicates:  time.Minute,
			Replicas:    replicas,
		},
		historyFineStream(replicas), historyCoarseStream(replicas),
	}
}

// Buckets returns the declaration of every key-value bucket.
func Buckets(replicas int) []jetstream.KeyValueConfig {
	return append([]jetstream.KeyValueConfig{
		{Bucket: BucketUsers, Description: "user id -> user (desired state)", History: 5, Storage: jetstream.FileStorage, Replicas: replicas},
		{Bucket: BucketUserNames, Description: "lowercased user name -> user id", History: 1, Storage: jetstream.FileStorage, Replicas: replicas},
		{Bucket: BucketNodes, Description: "node id -> agent registration and heartbeat", History: 1, Storage: jetstream.FileStorage, Replicas: replicas},
		{Bucket: BucketServers, Description: "server id -> desired server", History: 5, Storage: jetstream.FileStorage, Replicas: replicas},
		{Bucket: BucketJobs, Description: "job id -> status, counters, checkpoints", History: 1, Storage: jetstream.FileStorage, Replicas: replicas},
		{Bucket: BucketUserIdempotency, Description: "hashed create idempotency key -> user id, kept a day", History: 1, TTL: UserIdempotencyTTL, Storage: jetstream.FileStorage, Replicas: replicas},
		tokensBucket(replicas),
		subTokensBucket(replicas),
		nodeHealthBucket(replicas), alertsBucket(replicas), healthLeaseBucket(replicas),
	}, fleetBuckets(replicas)...)
}

// BucketUserIdempotency maps a hashed create idempotency key to the id of
// the user the first attempt created, so a retried create returns that user.
const BucketUserIdempotency = "user_idempotency"

// UserIdempotencyTTL is how long a create idempotency key is remembered.
const UserIdempotencyTTL = 24 * time.Hour

// UsersUsageConsumer declares the registry's durable consumer of USAGE,
// shared by every replica. One message in flight at a time keeps each
// node's windows in order, which the per-user high-water marks rely on.
func UsersUsageConsumer() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       ConsumerUsersUsage,
		Description:   "user registry: per-user traffic counters and limits",
		FilterSubject: AllUsage,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Minute,
		MaxAckPending: 1,
	}
}
