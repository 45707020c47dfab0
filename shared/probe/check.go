package probe

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// CheckReady asks the ops listener at addr (host:port, as --ops-addr takes
// it) whether its process is ready, and returns nil when /readyz answers
// 200. A listener on every address (0.0.0.0, [::] or no host) is asked on
// loopback. It is what the binaries' `healthcheck` subcommand runs, so a
// FROM-scratch image, which has no shell and no curl, can declare a
// HEALTHCHECK.
func CheckReady(ctx context.Context, addr string) error {
	if addr == "" {
		return errs.New(errs.Invalid, "the ops listener is off (--ops-addr is empty): there is no /readyz to ask")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errs.New(errs.Invalid, "ops address %q: %v", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	url := "http://" + net.JoinHostPort(host, port) + "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("asking %s: %w", url, err)
	}
	req.Close = true // one question: keep no idle connection behind
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "asking %s", url)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return errs.New(errs.Unavailable, "%s answered %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
