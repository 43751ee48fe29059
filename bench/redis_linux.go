package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel stop cmd if this process dies first (a
// log.Fatal skips the deferred stop).
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
