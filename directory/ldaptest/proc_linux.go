package ldaptest

import "syscall"

// sysProcAttr has the kernel end slapd should the test binary die without
// its cleanups, so no server outlives its test holding a port.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
