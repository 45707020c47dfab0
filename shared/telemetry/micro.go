package telemetry

import (
	"sync"

	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
)

// Requests exports the request metrics of a process's NATS micro services
// (users, servers, jobs, health, agent commands): requests, errors and
// processing time by service and endpoint, read from the services' own
// statistics at scrape time. One per registry; services are added as they
// start. A nil *Requests ignores Add, so cores run without one in tests.
type Requests struct {
	mu       sync.Mutex
	services []StatsSource

	requests, errors, seconds *prometheus.Desc
}

// NewRequests registers the request metrics on reg.
func NewRequests(reg prometheus.Registerer) *Requests {
	labels := []string{"service", "endpoint"}
	r := &Requests{
		requests: prometheus.NewDesc("vpnfleet_nats_requests_total", "Requests handled by a NATS micro endpoint.", labels, nil),
		errors:   prometheus.NewDesc("vpnfleet_nats_request_errors_total", "Requests a NATS micro endpoint answered with an error.", labels, nil),
		seconds:  prometheus.NewDesc("vpnfleet_nats_request_seconds_total", "Time spent handling requests of a NATS micro endpoint.", labels, nil),
	}
	reg.MustRegister(r)
	return r
}

// StatsSource is what Requests reads: a micro.Service whose handlers
// answer before they return (micro measures around its handler), or a
// bus.Service, which answers on goroutines of its own and measures there.
type StatsSource interface{ Stats() micro.Stats }

// Add includes s in the metrics.
func (r *Requests) Add(s StatsSource) {
	if r == nil || s == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.services = append(r.services, s)
}

// Describe implements prometheus.Collector.
func (r *Requests) Describe(ch chan<- *prometheus.Desc) {
	ch <- r.requests
	ch <- r.errors
	ch <- r.seconds
}

// Collect implements prometheus.Collector.
func (r *Requests) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	services := append([]StatsSource(nil), r.services...)
	r.mu.Unlock()
	for _, s := range services {
		st := s.Stats()
		for _, e := range st.Endpoints {
			ch <- prometheus.MustNewConstMetric(r.requests, prometheus.CounterValue, float64(e.NumRequests), st.Name, e.Name)
			ch <- prometheus.MustNewConstMetric(r.errors, prometheus.CounterValue, float64(e.NumErrors), st.Name, e.Name)
			ch <- prometheus.MustNewConstMetric(r.seconds, prometheus.CounterValue, e.ProcessingTime.Seconds(), st.Name, e.Name)
		}
	}
}
