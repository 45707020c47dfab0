package bus

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// Service is a NATS micro service whose requests are handled on their own
// goroutines, at most a fixed number at once (further requests wait in
// the subscription), so one replica overlaps the round trips of many. A
// micro endpoint delivers its requests one after another and measures
// them around its handler; a request answered after that handler returned
// would count as a success taking microseconds. Service therefore keeps
// each endpoint's statistics itself, around the real handling, and Stats
// reports those: the request metrics (telemetry.Requests) read them.
type Service struct {
	ms    micro.Service
	nc    *nats.Conn
	name  string
	slots chan struct{}

	mu       sync.Mutex // orders inFlight.Add before inFlight.Wait; guards the rest
	stopped  bool
	inFlight sync.WaitGroup
	stats    map[string]*micro.EndpointStats // by endpoint name
}

// ServiceEndpoint is one named handler of a Service, on Subject.
type ServiceEndpoint struct {
	Name    string
	Subject string
	Handler micro.Handler
}

// Serve adds a micro service on nc with its endpoints, each handled
// concurrently, at most maxInFlight requests at once. The caller stops it.
func Serve(nc *nats.Conn, cfg micro.Config, maxInFlight int, eps []ServiceEndpoint) (*Service, error) {
	ms, err := micro.AddService(nc, cfg)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "adding %s service", cfg.Name)
	}
	s := &Service{ms: ms, nc: nc, name: cfg.Name, slots: make(chan struct{}, max(maxInFlight, 1)), stats: map[string]*micro.EndpointStats{}}
	// Every endpoint's stats exist before the first one takes requests:
	// the map is only read from then on.
	for _, ep := range eps {
		s.stats[ep.Name] = &micro.EndpointStats{Name: ep.Name}
	}
	for _, ep := range eps {
		if err := ms.AddEndpoint(ep.Name, s.concurrent(ep.Name, ep.Handler), micro.WithEndpointSubject(ep.Subject)); err != nil {
			_ = s.Stop()
			return nil, errs.Wrap(errs.Unavailable, err, "adding %s endpoint %s", cfg.Name, ep.Name)
		}
	}
	return s, nil
}

// Stats reports the micro service's identity and endpoints with the
// statistics Service measured: every request, those answered with an
// error (or not answered at all), and the time from delivery to reply.
func (s *Service) Stats() micro.Stats {
	st := s.ms.Stats()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, e := range st.Endpoints {
		own, ok := s.stats[e.Name]
		if !ok {
			continue
		}
		c := *e
		c.NumRequests, c.NumErrors, c.LastError = own.NumRequests, own.NumErrors, own.LastError
		c.ProcessingTime, c.AverageProcessingTime = own.ProcessingTime, own.AverageProcessingTime
		st.Endpoints[i] = &c
	}
	return st
}

// Stop stops taking requests and waits for those in flight. Requests the
// draining subscription still delivers are refused as Unavailable.
func (s *Service) Stop() error {
	err := s.ms.Stop()
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.inFlight.Wait()
	return err
}

// record counts one request of endpoint name that took d; failure is
// the error it was answered with, or nil.
func (s *Service) record(name string, d time.Duration, failure error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.stats[name]
	e.NumRequests++
	e.ProcessingTime += d
	e.AverageProcessingTime = e.ProcessingTime / time.Duration(e.NumRequests)
	if failure != nil {
		e.NumErrors++
		e.LastError = failure.Error()
	}
}

// concurrent runs h on its own goroutine per request, at most
// cap(s.slots) at once, and records what it did.
func (s *Service) concurrent(name string, h micro.Handler) micro.Handler {
	return micro.HandlerFunc(func(r micro.Request) {
		start := time.Now()
		s.slots <- struct{}{}
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			<-s.slots
			_ = r.Error(errs.Code(errs.Unavailable), s.name+" service is stopping", nil)
			s.record(name, time.Since(start), fmt.Errorf("%s service is stopping", s.name))
			return
		}
		s.inFlight.Add(1)
		s.mu.Unlock()
		go func() {
			defer func() { <-s.slots; s.inFlight.Done() }()
			d := &detached{Request: r, nc: s.nc}
			h.Handle(d)
			if !d.answered && d.failure == nil {
				d.failure = fmt.Errorf("%w: no reply", micro.ErrRespond)
			}
			s.record(name, time.Since(start), d.failure)
		}()
	})
}

// detached is a request answered after its micro handler returned. It
// publishes the reply itself: micro's own Respond and Error record the
// outcome on the request, which micro reads as soon as its handler
// returns, so answering through them from another goroutine is a data
// race. It remembers the outcome for Service's statistics instead. Only
// the goroutine handling the request uses it.
type detached struct {
	micro.Request
	nc       *nats.Conn
	answered bool
	failure  error
}

func (d *detached) Respond(data []byte, opts ...micro.RespondOpt) error {
	m := &nats.Msg{Subject: d.Reply(), Data: data}
	for _, opt := range opts {
		opt(m)
	}
	d.answered = true
	if err := d.nc.PublishMsg(m); err != nil {
		d.failure = fmt.Errorf("%w: %w", micro.ErrRespond, err)
		return d.failure
	}
	return nil
}

// maxPayload is the largest message the connection may publish.
func (d *detached) maxPayload() int64 { return d.nc.MaxPayload() }

func (d *detached) RespondJSON(v any, opts ...micro.RespondOpt) error {
	data, err := json.Marshal(v)
	if err != nil {
		d.failure = micro.ErrMarshalResponse
		return micro.ErrMarshalResponse
	}
	return d.Respond(data, opts...)
}

func (d *detached) Error(code, description string, data []byte, opts ...micro.RespondOpt) error {
	h := micro.Headers{micro.ErrorHeader: {description}, micro.ErrorCodeHeader: {code}}
	if err := d.Respond(data, append(opts, micro.WithHeaders(h))...); err != nil {
		return err
	}
	d.failure = fmt.Errorf("%s: %s", code, description)
	return nil
}
