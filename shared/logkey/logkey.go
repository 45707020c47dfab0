// Package logkey defines, once, the attribute keys used in structured logs,
// so that every service's JSON logs can be queried the same way.
package logkey

// Attribute keys.
const (
	Err       = "err"
	Service   = "service"
	Component = "component"
	Node      = "node"
	User      = "user"
	Server    = "server"
	Workload  = "workload"
	Job       = "job"
	Subject   = "subject"
	Stream    = "stream"
	Bucket    = "bucket"
	Consumer  = "consumer"
	MsgID     = "msg_id"
	Seq       = "seq"
	Attempt   = "attempt"
	Delay     = "delay"
	Addr      = "addr"
	URL       = "url"
	Path      = "path"
	Method    = "method"
	Status    = "status"
	Duration  = "duration"
	Endpoint  = "endpoint"
	Config    = "config"
	Version   = "version"
	Count     = "count"
	Detail    = "detail"
)
