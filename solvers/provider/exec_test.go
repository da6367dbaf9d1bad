package provider_test

import (
	"os/exec"
	"time"
)

func execCommand(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = []string{"HOME=/nonexistent"}
	cmd.WaitDelay = 10 * time.Second
	return cmd
}
