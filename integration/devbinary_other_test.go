//go:build !linux

package integration

import "syscall"

// dieWithParent: only Linux can tie a child's life to its parent's; the
// test's cleanup stops the dev binary elsewhere.
func dieWithParent() *syscall.SysProcAttr { return nil }
