package svc_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// replica is one standalone service started by startReplicas.
type replica struct {
	log   *syncBuffer
	ready chan struct{} // closed when its core runs: connected and provisioned
	done  chan error    // what Standalone returned
}

// startReplicas starts n standalone services on cfg at the same moment
// (a barrier releases them together); each core only reports that it runs
// and waits for ctx.
func startReplicas(ctx context.Context, n int, cfg svc.Config) []*replica {
	out := make([]*replica, n)
	var gate sync.WaitGroup
	gate.Add(1)
	for i := range out {
		r := &replica{log: &syncBuffer{}, ready: make(chan struct{}), done: make(chan error, 1)}
		out[i] = r
		go func() {
			gate.Wait()
			r.done <- svc.Standalone(ctx, fmt.Sprintf("vpn-test-%d", i), "test", cfg, r.log, func(ctx context.Context, _ svc.Env) error {
				close(r.ready)
				<-ctx.Done()
				return nil
			})
		}()
	}
	gate.Done()
	return out
}

// waitReady waits until every replica's core runs, failing on the first
// that returns instead.
func waitReady(t *testing.T, rs []*replica, within time.Duration) {
	t.Helper()
	timeout := time.After(within)
	for i, r := range rs {
		select {
		case <-r.ready:
		case err := <-r.done:
			t.Fatalf("replica %d stopped before it was ready: %v\n%s", i, err, r.log.String())
		case <-timeout:
			t.Fatalf("replica %d not ready within %s: %s", i, within, r.log.String())
		}
	}
}

// stopReplicas ends ctx's replicas and checks each stopped cleanly.
func stopReplicas(t *testing.T, cancel context.CancelFunc, rs []*replica) {
	t.Helper()
	cancel()
	for i, r := range rs {
		if err := <-r.done; err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
	}
}

// checkReplicated checks every declared stream and bucket exists on the
// cluster with three replicas.
func checkReplicated(t *testing.T, c *natstest.Cluster) {
	t.Helper()
	js := c.JetStream()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	names := []string{}
	for _, s := range subject.Streams(3) {
		names = append(names, s.Name)
	}
	for _, b := range subject.Buckets(3) {
		names = append(names, subject.KVStream(b.Bucket))
	}
	for _, o := range subject.ObjectStores(3) {
		names = append(names, "OBJ_"+o.Bucket)
	}
	for _, name := range names {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if r := st.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, r)
		}
	}
}

func clusterConfig(c *natstest.Cluster) svc.Config {
	cfg := svc.Defaults("")
	cfg.NATSURL, cfg.NATSCreds, cfg.Replicas = c.URLs(), c.ServiceCredsFile(), 3
	return cfg
}

// TestReplicasStartBeforeTheirCluster: two replicas of a service start
// at the same moment against a 3-node cluster none of whose nodes is up
// yet. Each logs its failed attempts and waits; once the nodes start, both
// connect, provision every stream and bucket R3 (racing each other to
// create them) and run. Neither exits.
func TestReplicasStartBeforeTheirCluster(t *testing.T) {
	c := natstest.NewCluster(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rs := startReplicas(ctx, 2, clusterConfig(c))
	for i, r := range rs {
		waitfor.Cond(t, time.Minute, func() error {
			if !slices.Contains(r.log.messages(), "retrying") {
				return fmt.Errorf("replica %d has not logged a failed attempt: %v", i, r.log.messages())
			}
			return nil
		})
	}
	c.StartAll()
	waitReady(t, rs, 2*time.Minute)
	checkReplicated(t, c)
	stopReplicas(t, cancel, rs)
}

// TestReplicasProvisionAFreshClusterTogether: four replicas released at
// the same moment on a running cluster with nothing provisioned race to
// create the same streams and buckets; a create that loses the race is
// not a failure, and every replica runs.
func TestReplicasProvisionAFreshClusterTogether(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rs := startReplicas(ctx, 4, clusterConfig(c))
	waitReady(t, rs, 2*time.Minute)
	checkReplicated(t, c)
	stopReplicas(t, cancel, rs)
}

// TestStartGivesUpOnANATSThatNeverAnswers: a URL where something accepts
// connections and never speaks NATS, and one where nothing listens. After
// --start-timeout the service stops with one Unavailable error (code
// not_ready) that names the setting and the URL, having started nothing:
// its core never ran.
func TestStartGivesUpOnANATSThatNeverAnswers(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held sync.WaitGroup
	held.Go(func() {
		var conns []net.Conn
		for {
			c, err := silent.Accept()
			if err != nil {
				break
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			_ = c.Close()
		}
	})
	defer func() {
		_ = silent.Close()
		held.Wait()
	}()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := closed.Addr().String()
	_ = closed.Close()

	for name, url := range map[string]string{"silent": "nats://" + silent.Addr().String(), "refused": "nats://" + refused} {
		t.Run(name, func(t *testing.T) {
			cfg := svc.Defaults("")
			cfg.NATSURL, cfg.StartTimeout = url, time.Second
			log := &syncBuffer{}
			ran := false
			err := svc.Standalone(context.Background(), "vpn-test", "test", cfg, log, func(context.Context, svc.Env) error {
				ran = true
				return nil
			})
			if !errors.Is(err, errs.Unavailable) || errs.CodeOf(err) != errs.CodeNotReady {
				t.Fatalf("err = %v (code %q), want Unavailable with code %s", err, errs.CodeOf(err), errs.CodeNotReady)
			}
			for _, want := range []string{"--start-timeout", url} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %s", err, want)
				}
			}
			if ran {
				t.Error("the core ran without NATS")
			}
			if slices.Contains(log.messages(), "started") {
				t.Errorf("logged started: %v", log.messages())
			}
		})
	}
}
