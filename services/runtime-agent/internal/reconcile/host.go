package reconcile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/imagetar"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
)

// Where an Xray container finds its config: the server's config dir is
// mounted read-only at containerConfigDir.
const (
	containerConfigDir = "/etc/xray"
	containerXray      = "/usr/local/bin/xray"
)

// ErrPortTaken: a port of the spec is in use on the host by something
// other than this server's own Xray.
var ErrPortTaken = errors.New("port in use on this host")

// freeLoopbackPort returns a loopback address with a port that was free a
// moment ago, for a new Xray's API.
func freeLoopbackPort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", errs.Wrap(errs.Unavailable, err, "finding a free loopback port")
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// portsFree checks, by binding them, that the ports of inbounds are free on
// the host, except those held (by the server's own running Xray, which the
// new one replaces). Shadowsocks-2022 listens on UDP too.
func portsFree(inbounds, held []xray.Inbound) error {
	mine := map[int]bool{}
	for _, in := range held {
		mine[in.Port] = true
	}
	var fe []errs.FieldError
	for i, in := range inbounds {
		if mine[in.Port] {
			continue
		}
		host := in.Listen
		if host == "" {
			host = "0.0.0.0"
		}
		addr := net.JoinHostPort(host, strconv.Itoa(in.Port))
		rule := ""
		if l, err := net.Listen("tcp", addr); err != nil {
			rule = fmt.Sprintf("port %d is in use on this host (tcp %s: %v)", in.Port, addr, unwrapSyscall(err))
		} else {
			_ = l.Close()
		}
		if rule == "" && in.UDP() {
			if c, err := net.ListenPacket("udp", addr); err != nil {
				rule = fmt.Sprintf("port %d is in use on this host (udp %s: %v)", in.Port, addr, unwrapSyscall(err))
			} else {
				_ = c.Close()
			}
		}
		if rule != "" {
			fe = append(fe, errs.FieldError{Field: fmt.Sprintf("inbounds[%d].port", i), Rule: rule})
		}
	}
	if len(fe) == 0 {
		return nil
	}
	return &errs.Error{Class: errs.Conflict, Msg: "ports in use", Fields: fe, Err: ErrPortTaken}
}

// unwrapSyscall keeps the useful end of a listen error ("address already
// in use").
func unwrapSyscall(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		var sys *os.SyscallError
		if errors.As(op.Err, &sys) {
			return sys.Err
		}
		return op.Err
	}
	return err
}

// workloadImage returns what runs Xray for the server whose files are in
// dir on runtime rt: for the process runtime the binary with the config
// path; for an engine the image (imported from the binary when missing)
// with the config dir mounted.
func (r *Reconciler) workloadImage(ctx context.Context, rt runtime.Runtime, dir string) (string, []string, []runtime.Mount, error) {
	cfgDir := filepath.Join(dir, "config")
	if !rt.Capabilities().Images {
		if r.cfg.XrayBin == "" {
			return "", nil, nil, errs.New(errs.Unavailable, "no xray binary: install xray next to the agent or in PATH, or set --xray-bin")
		}
		if err := rt.EnsureImage(ctx, r.cfg.XrayBin, nil); err != nil {
			return "", nil, nil, fmt.Errorf("xray binary %s: %w", r.cfg.XrayBin, err)
		}
		return r.cfg.XrayBin, []string{"run", "-c", filepath.Join(cfgDir, "config.json")}, nil, nil
	}
	if err := r.ensureImage(ctx, rt); err != nil {
		return "", nil, nil, err
	}
	return r.cfg.XrayImage, []string{"run", "-c", containerConfigDir + "/config.json"},
		[]runtime.Mount{{Source: cfgDir, Target: containerConfigDir, ReadOnly: true}}, nil
}

// ensureImage makes XrayImage available: present, pulled, or, when the
// engine has no way to get it and the binary is known, a FROM-scratch image
// of the binary imported under that name (hosts with no registry).
func (r *Reconciler) ensureImage(ctx context.Context, rt runtime.Runtime) error {
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	err := rt.EnsureImage(pctx, r.cfg.XrayImage, nil)
	cancel()
	if err == nil {
		return nil
	}
	if r.cfg.XrayBin == "" || ctx.Err() != nil {
		return fmt.Errorf("xray image %s: %w", r.cfg.XrayImage, err)
	}
	r.log.Info("xray image missing; importing one built from the binary", logkey.Runtime, rt.Kind(), logkey.Image, r.cfg.XrayImage, logkey.Path, r.cfg.XrayBin, logkey.Detail, err.Error())
	bin, rerr := os.ReadFile(r.cfg.XrayBin)
	if rerr != nil {
		return errs.Wrap(errs.Unavailable, rerr, "reading xray binary for image %s", r.cfg.XrayImage)
	}
	var buf bytes.Buffer
	if werr := imagetar.Write(&buf, imagetar.Image{
		Ref:        r.cfg.XrayImage,
		Files:      []imagetar.File{{Path: containerXray, Mode: 0o755, Data: bin}},
		Entrypoint: []string{containerXray},
		Cmd:        []string{"run", "-c", containerConfigDir + "/config.json"},
		Labels:     map[string]string{"vpnfleet.xray-version": xray.Version()},
	}); werr != nil {
		return fmt.Errorf("writing xray image %s: %w", r.cfg.XrayImage, werr)
	}
	if _, ierr := rt.ImportImage(ctx, &buf); ierr != nil {
		return fmt.Errorf("importing xray image %s: %w", r.cfg.XrayImage, ierr)
	}
	if err := rt.EnsureImage(ctx, r.cfg.XrayImage, nil); err != nil {
		return fmt.Errorf("xray image %s after import: %w", r.cfg.XrayImage, err)
	}
	return nil
}

// poll calls check until it succeeds, gone reports the thing waited for
// died (its error ends the wait), or ctx ends.
func poll(ctx context.Context, check func() error, gone func(context.Context) error) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for n := 0; ; n++ {
		err := check()
		if err == nil {
			return nil
		}
		if n%10 == 9 {
			if gerr := gone(ctx); gerr != nil {
				return gerr
			}
		}
		select {
		case <-ctx.Done():
			if gerr := gone(context.WithoutCancel(ctx)); gerr != nil {
				return gerr
			}
			return errs.Wrap(errs.Unavailable, err, "not ready in time")
		case <-t.C:
		}
	}
}

// dialOnce checks that addr accepts a TCP connection.
func dialOnce(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}
