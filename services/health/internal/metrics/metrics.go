// Package metrics is the Prometheus view of the fleet that vpn-health
// serves on /metrics: nodes, containers and users by state, host and
// container resources, traffic per node (and per user behind a flag, for
// cardinality), servers' users applied of desired, JetStream consumer
// lag, firing alerts, and the health
// service's own ingest and notification counters. Fleet gauges are read
// from a snapshot at scrape time and exported by the replica that holds
// the evaluator lease (vpnfleet_health_active 1).
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vpnfleet/vpnfleet/services/health/internal/nodehealth"
	"github.com/vpnfleet/vpnfleet/shared/event"
)

// Consumer is one durable JetStream consumer's backlog.
type Consumer struct {
	Stream, Name        string
	Pending, AckPending uint64
}

// Snapshot is the fleet at scrape time.
type Snapshot struct {
	Active    bool
	Nodes     []nodehealth.NodeView
	Users     map[string]int // by status
	Online    int            // users with traffic within the online window
	Consumers []Consumer
	Firing    []event.Alert
	Servers   []ServerUsers
}

// ServerUsers is how far one server's Xray is from its desired users, as
// its node last reported.
type ServerUsers struct {
	Node, Server     string
	Desired, Applied int
	// Behind counts users missing or in excess (0: exactly the desired).
	Behind int
}

// Metric names; deploy/ references them and a test checks each is served.
const (
	Active           = "vpnfleet_health_active"
	Nodes            = "vpnfleet_nodes"
	NodeState        = "vpnfleet_node_state"
	NodeHeartbeatAge = "vpnfleet_node_heartbeat_age_seconds"
	NodeCPU          = "vpnfleet_node_cpu_percent"
	NodeMemory       = "vpnfleet_node_memory_percent"
	NodeDisk         = "vpnfleet_node_disk_percent"
	Containers       = "vpnfleet_containers"
	ContainerUp      = "vpnfleet_container_up"
	ContainerCPU     = "vpnfleet_container_cpu_percent"
	ContainerMemory  = "vpnfleet_container_memory_bytes"
	ContainerExits   = "vpnfleet_container_exits"
	Users            = "vpnfleet_users"
	UsersOnline      = "vpnfleet_users_online"
	ConsumerPending  = "vpnfleet_consumer_pending_messages"
	ConsumerAck      = "vpnfleet_consumer_ack_pending_messages"
	AlertsFiring     = "vpnfleet_alerts_firing"
	NodeTraffic      = "vpnfleet_node_traffic_bytes_total"
	UserTraffic      = "vpnfleet_user_traffic_bytes_total"
	Ingested         = "vpnfleet_health_messages_total"
	Notifications    = "vpnfleet_health_notifications_total"
	ServerUsersTotal = "vpnfleet_server_users"
	ServerBehind     = "vpnfleet_server_users_behind"
)

var (
	dActive      = prometheus.NewDesc(Active, "1 on the health replica holding the evaluator lease (the one exporting the fleet view).", nil, nil)
	dNodes       = prometheus.NewDesc(Nodes, "Nodes by health state.", []string{"state"}, nil)
	dNodeState   = prometheus.NewDesc(NodeState, "1 for a node's current health state.", []string{"node", "state"}, nil)
	dHBAge       = prometheus.NewDesc(NodeHeartbeatAge, "Seconds since the node's last heartbeat.", []string{"node"}, nil)
	dCPU         = prometheus.NewDesc(NodeCPU, "Host CPU use, all cores, 0-100.", []string{"node"}, nil)
	dMem         = prometheus.NewDesc(NodeMemory, "Host memory use, percent.", []string{"node"}, nil)
	dDisk        = prometheus.NewDesc(NodeDisk, "Host disk use of the agent's data path, percent.", []string{"node"}, nil)
	dContainers  = prometheus.NewDesc(Containers, "Server containers (workloads) by state.", []string{"state"}, nil)
	dCUp         = prometheus.NewDesc(ContainerUp, "1 when the workload runs.", []string{"node", "workload"}, nil)
	dCCPU        = prometheus.NewDesc(ContainerCPU, "Workload CPU use, percent.", []string{"node", "workload"}, nil)
	dCMem        = prometheus.NewDesc(ContainerMemory, "Workload memory use.", []string{"node", "workload"}, nil)
	dCExits      = prometheus.NewDesc(ContainerExits, "Workload exits within the restart window.", []string{"node", "workload"}, nil)
	dUsers       = prometheus.NewDesc(Users, "Users by status.", []string{"status"}, nil)
	dOnline      = prometheus.NewDesc(UsersOnline, "Users with traffic within the online window.", nil, nil)
	dConsPending = prometheus.NewDesc(ConsumerPending, "Messages a durable consumer has not been delivered yet (lag).", []string{"stream", "consumer"}, nil)
	dConsAck     = prometheus.NewDesc(ConsumerAck, "Messages a durable consumer holds unacknowledged.", []string{"stream", "consumer"}, nil)
	dFiring      = prometheus.NewDesc(AlertsFiring, "Firing alerts by rule and severity.", []string{"rule", "severity"}, nil)
	dSrvUsers    = prometheus.NewDesc(ServerUsersTotal, "Users a server must serve (desired) and those its Xray holds with current credentials (applied), as its node reports.", []string{"node", "server", "kind"}, nil)
	dSrvBehind   = prometheus.NewDesc(ServerBehind, "Users a server's Xray lacks or holds in excess of its desired ones (0 when applied).", []string{"node", "server"}, nil)
)

// Collector exports the fleet view.
type Collector struct {
	snap func() Snapshot
	// Traffic counts VPN bytes per node and direction (uplink, downlink).
	Traffic *prometheus.CounterVec
	// UserTraffic counts bytes per user; nil unless per-user series are on.
	UserTraffic *prometheus.CounterVec
	// Ingested counts consumed messages by stream and result (ok, invalid,
	// retry).
	Ingested *prometheus.CounterVec
	// Notifications counts deliveries by notifier and result.
	Notifications *prometheus.CounterVec
}

// Register builds the collector on reg; snap is called at every scrape.
func Register(reg prometheus.Registerer, perUser bool, snap func() Snapshot) *Collector {
	c := &Collector{
		snap:          snap,
		Traffic:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: NodeTraffic, Help: "VPN user traffic through the node, from usage records."}, []string{"node", "direction"}),
		Ingested:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: Ingested, Help: "Messages health consumed, by stream and result."}, []string{"stream", "result"}),
		Notifications: prometheus.NewCounterVec(prometheus.CounterOpts{Name: Notifications, Help: "Alert notifications, by notifier and result."}, []string{"notifier", "result"}),
	}
	reg.MustRegister(c, c.Traffic, c.Ingested, c.Notifications)
	if perUser {
		c.UserTraffic = prometheus.NewCounterVec(prometheus.CounterOpts{Name: UserTraffic, Help: "VPN traffic per user (only with --per-user-metrics)."}, []string{"user", "direction"})
		reg.MustRegister(c.UserTraffic)
	}
	return c
}

// Describe sends every fleet descriptor.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dActive, dNodes, dNodeState, dHBAge, dCPU, dMem, dDisk, dContainers, dCUp, dCCPU, dCMem, dCExits, dUsers, dOnline, dConsPending, dConsAck, dFiring, dSrvUsers, dSrvBehind} {
		ch <- d
	}
}

// Collect reads a snapshot and sends the fleet view. A standby replica
// sends only vpnfleet_health_active 0.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.snap()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if !s.Active {
		gauge(dActive, 0)
		return
	}
	gauge(dActive, 1)
	states := map[string]int{event.HealthHealthy: 0, event.HealthDegraded: 0, event.HealthDown: 0}
	containers := map[string]int{event.WorkloadRunning: 0, event.WorkloadDown: 0, event.WorkloadUnhealthy: 0}
	for _, n := range s.Nodes {
		states[n.State]++
		for st := range states {
			gauge(dNodeState, b2f(st == n.State), n.ID, st)
		}
		gauge(dHBAge, n.HeartbeatAge.Seconds(), n.ID)
		if n.HostFresh && n.State != event.HealthDown {
			gauge(dCPU, n.CPUPercent, n.ID)
			if n.MemTot > 0 {
				gauge(dMem, 100*float64(n.MemUsed)/float64(n.MemTot), n.ID)
			}
			if n.DiskTo > 0 {
				gauge(dDisk, 100*float64(n.DiskUsed)/float64(n.DiskTo), n.ID)
			}
		}
		for _, w := range n.Workloads {
			containers[w.State]++
			gauge(dCUp, b2f(w.State == event.WorkloadRunning), n.ID, w.Name)
			gauge(dCExits, float64(w.Exits), n.ID, w.Name)
			if w.StatsFresh {
				gauge(dCCPU, w.CPUPercent, n.ID, w.Name)
				gauge(dCMem, float64(w.MemoryBytes), n.ID, w.Name)
			}
		}
	}
	for st, v := range states {
		gauge(dNodes, float64(v), st)
	}
	for st, v := range containers {
		gauge(dContainers, float64(v), st)
	}
	for st, v := range s.Users {
		gauge(dUsers, float64(v), st)
	}
	gauge(dOnline, float64(s.Online))
	for _, cs := range s.Consumers {
		gauge(dConsPending, float64(cs.Pending), cs.Stream, cs.Name)
		gauge(dConsAck, float64(cs.AckPending), cs.Stream, cs.Name)
	}
	for _, su := range s.Servers {
		gauge(dSrvUsers, float64(su.Desired), su.Node, su.Server, "desired")
		gauge(dSrvUsers, float64(su.Applied), su.Node, su.Server, "applied")
		gauge(dSrvBehind, float64(su.Behind), su.Node, su.Server)
	}
	firing := map[[2]string]int{}
	for _, a := range s.Firing {
		firing[[2]string{a.Rule, a.Severity}]++
	}
	for k, v := range firing {
		gauge(dFiring, float64(v), k[0], k[1])
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
