package redistest

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the server exit if the test process dies without running its
// cleanups (a -timeout panic, a kill), instead of lingering on its port.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
