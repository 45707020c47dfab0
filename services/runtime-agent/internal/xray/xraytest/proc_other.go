//go:build !linux

package xraytest

import "os/exec"

// startDyingWithParent only starts cmd here: t.Cleanup still kills the
// process on every normal end of a test.
func startDyingWithParent(cmd *exec.Cmd) (wait func() error, err error) {
	return cmd.Wait, cmd.Start()
}
