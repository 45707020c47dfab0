package subject

import (
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Bulk jobs: endpoints of the jobs service (run by the user registry), the
// registry's consumer of JOBS, and the key layout of the jobs bucket.

// Endpoints of the jobs service, each served on JobsCmd(endpoint).
const (
	JobsCreate   = "create"
	JobsGet      = "get"
	JobsList     = "list"
	JobsCancel   = "cancel"
	JobsPause    = "pause"
	JobsResume   = "resume"
	JobsRollback = "rollback"
)

// JobsQueueGroup is the queue group of the jobs endpoints, so N registry
// replicas share the requests.
const JobsQueueGroup = "jobs"

// JobRecordKey is the key of a job's record (job.Job) in BucketJobs.
func JobRecordKey(jobID string) string { return "j." + jobID }

// JobRecords is the key filter of every job record.
const JobRecords = "j.>"

// JobAppliedKey is the key of what one batch of a job applied (the undo
// log a rollback is built from) in BucketJobs.
func JobAppliedKey(jobID string, batch int) string {
	return "a." + jobID + "." + strconv.Itoa(batch)
}

// JobAppliedKeys is the key filter of every undo log of one job.
func JobAppliedKeys(jobID string) string { return "a." + jobID + ".>" }

// JobIdempotencyKey is the key that maps a hashed create idempotency key
// to the job it created, in BucketJobs.
func JobIdempotencyKey(hash string) string { return "k." + hash }

// AllJobEvents is the wildcard of every job event.
var AllJobEvents = EventsOfKind(KindJob)

// AtomicStreams names the streams bulk jobs write with JetStream atomic
// batches (Nats-Batch-Id): the user and name buckets' streams and EVENTS.
// The registry enables AllowAtomicPublish on them at start and again
// whenever a batch is refused for want of it (a provisioning run that
// predates the flag resets it); a refused batch is applied item by item.
var AtomicStreams = []string{"KV_" + BucketUsers, "KV_" + BucketUserNames, StreamEvents}

// UsersJobsConsumer declares the registry's durable consumer of JOBS,
// shared by every replica: each batch of items goes to one replica at a
// time, and to another if that one dies before acknowledging it. A batch
// takes milliseconds (a few atomic writes), so the ack wait is short: a
// replica killed mid-batch holds its batches back for seconds, not
// minutes. A batch still running when it expires is applied twice at
// once, which its idempotent writes allow.
func UsersJobsConsumer() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       ConsumerUsersJobs,
		Description:   "user registry: bulk job items",
		FilterSubject: AllJobs,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       5 * time.Second,
		MaxDeliver:    -1,
		MaxAckPending: 64,
	}
}

// BucketJobInputs is the object store that holds the input files of bulk
// jobs (imports), so that a file of many megabytes never travels as one
// NATS message: the gateway puts the uploaded file here, the create
// request names it (job.Input: name and digest), the registry reads it
// from here, and the job's end deletes it. Its TTL drops an input nobody
// deleted (a dry run or refused create whose caller died, a gateway that
// died between upload and create).
const BucketJobInputs = "job_inputs"

// JobInputsTTL is how long an input stays in BucketJobInputs at most.
const JobInputsTTL = 24 * time.Hour

// JobInputsMaxBytes caps BucketJobInputs as a whole; one input may be at
// most the gateway's --max-import-bytes, which may not exceed this.
const JobInputsMaxBytes = 1 << 30

// ObjectStores returns the declaration of every object store.
func ObjectStores(replicas int) []jetstream.ObjectStoreConfig {
	return []jetstream.ObjectStoreConfig{{
		Bucket:      BucketJobInputs,
		Description: "input files of bulk jobs, deleted when the job ends",
		TTL:         JobInputsTTL,
		MaxBytes:    JobInputsMaxBytes,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}}
}
