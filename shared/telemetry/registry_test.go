package telemetry_test

import (
	"io"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/telemetry"
	"github.com/vpnfleet/vpnfleet/shared/version"
)

// TestRegistryServesBuildInfo: every binary's registry says which build it
// runs, as a gauge of 1 labelled with the version and the Go version.
func TestRegistryServesBuildInfo(t *testing.T) {
	srv := httptest.NewServer(telemetry.MetricsHandler(telemetry.NewRegistry()))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	want := telemetry.BuildInfoName + `{go_version="` + runtime.Version() + `",version="` + version.Version + `"} 1`
	if !strings.Contains(string(body), want) {
		t.Fatalf("metrics lack %s:\n%s", want, body)
	}
}
