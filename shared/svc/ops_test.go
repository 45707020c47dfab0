package svc

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/probe"
	"github.com/vpnfleet/vpnfleet/shared/telemetry"
)

// TestPprofIsOffUnlessAsked: the ops listener serves Go's profiles only
// with --pprof, and --pprof needs the ops listener.
func TestPprofIsOffUnlessAsked(t *testing.T) {
	env := Env{Probe: probe.New(), Metrics: telemetry.NewRegistry()}
	for _, on := range []bool{false, true} {
		srv := httptest.NewServer(OpsHandler(env, on))
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/cmdline"} {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if want := map[bool]int{false: http.StatusNotFound, true: http.StatusOK}[on]; resp.StatusCode != want {
				t.Errorf("pprof %v: GET %s = %d, want %d", on, path, resp.StatusCode, want)
			}
		}
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("pprof %v: /metrics: %v, %v", on, resp, err)
		}
		resp.Body.Close()
		srv.Close()
	}

	c := Defaults("")
	c.Pprof = true
	fe := errs.FieldsOf(c.Validate())
	if len(fe) != 1 || fe[0].Field != "pprof" {
		t.Fatalf("--pprof without --ops-addr: %v", fe)
	}
}
