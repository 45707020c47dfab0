package sessions_test

import (
	"bytes"
	"testing"

	"github.com/xtls/xray-core/app/commander"
	"github.com/xtls/xray-core/app/dispatcher"
	"github.com/xtls/xray-core/app/policy"
	"github.com/xtls/xray-core/common/serial"
	"github.com/xtls/xray-core/core"
	_ "github.com/xtls/xray-core/main/distro/all"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/sessionpb"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/sessions"
)

// load builds the agent's config for an empty server and loads it as
// vpn-xray does.
func load(t *testing.T) *core.Config {
	t.Helper()
	raw, err := xray.BuildConfig(xray.Spec{APIListen: "127.0.0.1:10085", Inbounds: []xray.Inbound{
		{Tag: "socks", Protocol: xray.SOCKS5, Listen: "127.0.0.1", Port: 10086, Users: []xray.User{{ID: "u1", Password: "p1"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := core.LoadConfig("json", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestInstallRewritesTheAgentsConfig(t *testing.T) {
	cfg := load(t)
	if err := sessions.Install(cfg); err != nil {
		t.Fatalf("Install: %v", err)
	}
	var tracker *sessionpb.Config
	var services []string
	for _, app := range cfg.App {
		inst, err := app.GetInstance()
		if err != nil {
			t.Fatal(err)
		}
		switch c := inst.(type) {
		case *dispatcher.Config:
			t.Error("Xray's dispatcher is still configured")
		case *sessionpb.Config:
			tracker = c
		case *commander.Config:
			for _, s := range c.Service {
				services = append(services, s.Type)
			}
		case *policy.Config:
			for name, level := range c.GetLevel() {
				if level.GetStats().GetUserDownlink() {
					t.Errorf("policy level %d still counts user downlink in Xray", name)
				}
				if !level.GetStats().GetUserUplink() {
					t.Errorf("policy level %d lost its user uplink counter", name)
				}
			}
		}
	}
	if tracker == nil || !tracker.GetUserDownlink() {
		t.Fatalf("tracker config = %v; want one that counts user downlink", tracker)
	}
	want := serial.GetMessageType(&sessionpb.ServiceConfig{})
	found := false
	for _, s := range services {
		found = found || s == want
	}
	if !found {
		t.Fatalf("api services %v lack %s", services, want)
	}
	// The rewritten config makes an instance (core.New builds every
	// feature and inbound without listening).
	inst, err := core.New(cfg)
	if err != nil {
		t.Fatalf("core.New with the extension: %v", err)
	}
	if err := inst.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestInstallRefusesAConfigWithoutDispatcher(t *testing.T) {
	if err := sessions.Install(&core.Config{}); err == nil {
		t.Fatal("Install accepted a config without a dispatcher")
	}
}
