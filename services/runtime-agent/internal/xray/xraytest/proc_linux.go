package xraytest

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill the process if the test binary dies
// first (a timeout panic, a kill), so no Xray outlives its test.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
