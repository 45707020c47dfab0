// Command workload is the test workload of the runtime contract suite: a
// static binary that behaves like a small server so every runtime can be
// driven through a full life cycle. It is configured by environment:
//
//	WORKLOAD_LINES=n      print "line 1".."line n" at start (default 5)
//	WORKLOAD_EXIT=code    exit with code right after the start lines
//	WORKLOAD_TERM_EXIT=c  exit with code c on SIGTERM (default 0)
//	WORKLOAD_ALLOC_MB=n   allocate and touch n MiB, then keep running
//	WORKLOAD_ALLOC_WHEN=p with WORKLOAD_ALLOC_MB: allocate only once the
//	                      file p exists (the test creates it when the
//	                      runtime watches for the OOM it causes)
//	WORKLOAD_TICK=dur     print "tick N" and burn a little CPU every dur
//	                      (default 100ms)
//	WORKLOAD_FILE=path    append one line per start to path (restart counts)
//
// It always prints "ready" once set up, so tests know it runs. Run as
// "workload health" it exits 0 at once: the health check command.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "health" {
		os.Exit(0)
	}
	os.Exit(run())
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

var sink []byte

func run() int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)

	if p := os.Getenv("WORKLOAD_FILE"); p != "" {
		if f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintln(f, "start")
			f.Close()
		}
	}
	for i := 1; i <= envInt("WORKLOAD_LINES", 5); i++ {
		fmt.Printf("line %d\n", i)
	}
	fmt.Fprintln(os.Stderr, "stderr line")
	if v := os.Getenv("WORKLOAD_EXIT"); v != "" {
		code, _ := strconv.Atoi(v)
		fmt.Printf("exiting %d\n", code)
		return code
	}
	if mb := envInt("WORKLOAD_ALLOC_MB", 0); mb > 0 {
		if p := os.Getenv("WORKLOAD_ALLOC_WHEN"); p != "" {
			fmt.Printf("waiting for %s\n", p)
			for {
				if _, err := os.Stat(p); err == nil {
					break
				}
				select {
				case <-term:
					fmt.Println("terminating")
					return envInt("WORKLOAD_TERM_EXIT", 0)
				case <-time.After(10 * time.Millisecond):
				}
			}
		}
		fmt.Printf("allocating %d MiB\n", mb)
		for i := 0; i < mb; i++ {
			chunk := make([]byte, 1<<20)
			for j := 0; j < len(chunk); j += 4096 {
				chunk[j] = 1
			}
			sink = append(sink, chunk...)
		}
		fmt.Printf("allocated %d MiB\n", mb)
	}
	fmt.Println("ready")

	tick := 100 * time.Millisecond
	if d, err := time.ParseDuration(os.Getenv("WORKLOAD_TICK")); err == nil && d > 0 {
		tick = d
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-term:
			fmt.Println("terminating")
			return envInt("WORKLOAD_TERM_EXIT", 0)
		case <-t.C:
			burn(5 * time.Millisecond)
			fmt.Printf("tick %d\n", n)
		}
	}
}

// burn spins for d so CPU stats are non-zero.
func burn(d time.Duration) {
	end := time.Now().Add(d)
	x := 0
	for time.Now().Before(end) {
		x++
	}
	_ = x
}
