package event

// Event types, grouped by kind. Each service adds the types it publishes
// here, with its payload struct beside the code that owns it in shared.
const (
	UserCreated            Type = "user.created.v1"
	UserUpdated            Type = "user.updated.v1"
	UserDeleted            Type = "user.deleted.v1"
	UserStatusChanged      Type = "user.status_changed.v1"
	UserTrafficReset       Type = "user.traffic_reset.v1"
	UserCredentialsRotated Type = "user.credentials_rotated.v1"

	ServerCreated Type = "server.created.v1"
	ServerUpdated Type = "server.updated.v1"
	ServerDeleted Type = "server.deleted.v1"
	ServerApplied Type = "server.applied.v1"
	ServerFailed  Type = "server.failed.v1"

	NodeRegistered Type = "node.registered.v1"
	// NodeUsageRejected: the registry refused a usage record of the node
	// (payload UsageRejected); its bytes were counted nowhere.
	NodeUsageRejected Type = "node.usage_rejected.v1"

	RuntimeStarted   Type = "runtime.started.v1"
	RuntimeDied      Type = "runtime.died.v1"
	RuntimeOOM       Type = "runtime.oom.v1"
	RuntimeHealth    Type = "runtime.health_status.v1"
	RuntimeRestarted Type = "runtime.restarted.v1"

	JobProgress Type = "job.progress.v1"
	JobFinished Type = "job.finished.v1"

	AlertFiring   Type = "alert.firing.v1"
	AlertResolved Type = "alert.resolved.v1"

	AuditRecorded Type = "audit.recorded.v1"

	HealthChanged Type = "health.changed.v1"
)
