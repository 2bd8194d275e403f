package amscontract

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal has the kernel kill the daemon if the test binary itself dies
// (a panic, `go test -timeout`), when no cleanup of ours runs.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
