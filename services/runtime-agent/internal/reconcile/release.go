package reconcile

import (
	"runtime/debug"
	"sync"
	"time"
)

// Handing freed memory back after a burst. The first sync of a node with
// thousands of users, or a bulk change, builds large transient values
// (inbound configs, API requests, decoded views); Go frees them to its own
// heap, which the runtime returns to the operating system only over
// minutes, so the agent's resident memory would stay near the burst's
// peak. After a step that changed at least burstUsers users, the worker
// asks for them to be returned at once, at most every releaseEvery.
const (
	burstUsers   = 1000
	releaseEvery = 10 * time.Second
)

var release struct {
	sync.Mutex
	last time.Time
}

// releaseAfterBurst returns freed memory to the operating system now,
// unless that was done less than releaseEvery ago.
func releaseAfterBurst() {
	release.Lock()
	if time.Since(release.last) < releaseEvery {
		release.Unlock()
		return
	}
	release.last = time.Now()
	release.Unlock()
	debug.FreeOSMemory()
}
