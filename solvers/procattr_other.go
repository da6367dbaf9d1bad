//go:build !linux

package solvers

import "os/exec"

// setProcAttr is a no-op where Pdeathsig is unavailable; children still stop
// when their RPC connection closes.
func setProcAttr(*exec.Cmd) {}
