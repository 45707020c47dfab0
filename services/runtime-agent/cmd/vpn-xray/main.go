// Command vpn-xray is Xray-core, at the version this module pins, with
// vpnfleet's session extension built in (package sessions): on top of what
// Xray does, it ends a user's open connections when the agent asks
// (SessionService.CutUsers on Xray's API), and counts a user's traffic
// while it flows instead of when a spliced connection closes.
//
// It is a drop-in for the stock binary: the same `run -c FILE` (every
// other subcommand is Xray's own), the same config, the same API. `make
// xray` builds it as bin/xray; `make xray-stock` builds the stock binary,
// which the agent still drives, reporting the extension as missing.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/xtls/xray-core/common/cmdarg"
	"github.com/xtls/xray-core/core"
	"github.com/xtls/xray-core/main/commands/base"
	_ "github.com/xtls/xray-core/main/distro/all"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/sessions"
)

// Marker is the line `vpn-xray version` prints after Xray's own, which the
// agent looks for to tell this build from the stock one.
const Marker = sessions.VersionMarker

var (
	configFiles cmdarg.Arg
	testOnly    bool
)

var cmdRun = &base.Command{
	UsageLine: "{{.Exec}} run [-c config.json] [-test]",
	Short:     "Run Xray with the session extension",
	Long: `
Run Xray with the config files given by -c (or -config), with vpnfleet's
session extension installed. -test checks the config and exits.
	`,
}

var cmdVersion = &base.Command{
	UsageLine: "{{.Exec}} version",
	Short:     "Show the Xray version and the extensions built in",
	Run: func(*base.Command, []string) {
		printVersion()
	},
}

func init() {
	cmdRun.Run = executeRun
	cmdRun.Flag.Var(&configFiles, "config", "config file")
	cmdRun.Flag.Var(&configFiles, "c", "short for -config")
	cmdRun.Flag.BoolVar(&testOnly, "test", false, "check the config and exit")
}

func printVersion() {
	for _, s := range core.VersionStatement() {
		fmt.Println(s)
	}
	fmt.Println(Marker)
}

func executeRun(*base.Command, []string) {
	printVersion()
	server, err := start()
	if err != nil {
		fmt.Println("Failed to start:", err)
		// Xray's exit code for a config error: a supervisor should not
		// restart on it.
		os.Exit(23)
	}
	if testOnly {
		fmt.Println("Configuration OK.")
		os.Exit(0)
	}
	if err := server.Start(); err != nil {
		fmt.Println("Failed to start:", err)
		os.Exit(1)
	}
	runtime.GC()
	debug.FreeOSMemory()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	if err := server.Close(); err != nil {
		fmt.Println("Closing:", err)
	}
}

func start() (*core.Instance, error) {
	if len(configFiles) == 0 {
		return nil, fmt.Errorf("no config: give one with -c")
	}
	cfg, err := core.LoadConfig("json", configFiles)
	if err != nil {
		return nil, fmt.Errorf("loading %v: %w", configFiles, err)
	}
	if err := sessions.Install(cfg); err != nil {
		return nil, err
	}
	return core.New(cfg)
}

func main() {
	// Without a subcommand, run (as Xray does).
	if len(os.Args) == 1 || (len(os.Args) > 1 && len(os.Args[1]) > 0 && os.Args[1][0] == '-') {
		os.Args = append([]string{os.Args[0], "run"}, os.Args[1:]...)
	}
	base.RootCommand.Long = "Xray with vpnfleet's session extension."
	base.RootCommand.Commands = append([]*base.Command{cmdRun, cmdVersion}, base.RootCommand.Commands...)
	base.Execute()
}
