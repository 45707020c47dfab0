package subject

// KVStream is the name of the stream behind a key-value bucket.
func KVStream(bucket string) string { return "KV_" + bucket }

// AtomicBatchStreams lists the streams written with JetStream atomic batch
// publish: bulk jobs commit many users (name claims, records, events) with
// one fsync per batch. Provisioning enables atomic publish on them.
func AtomicBatchStreams() []string {
	return []string{StreamEvents, KVStream(BucketUsers), KVStream(BucketUserNames)}
}
