package integration

import "syscall"

// dieWithParent has the kernel kill the dev binary when this test process
// dies (a test timeout, a kill), so no server is left holding its port.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
