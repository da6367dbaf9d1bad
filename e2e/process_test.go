package e2e

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// startLogged starts cmd with its output in the file logPath, never outliving the test binary, and
// stops it when the test ends (stop, then a kill after 10 s), logging the last lines of its log if
// the test failed. what names the program in that message. The channel closes when it exits.
func startLogged(t testing.TB, cmd *exec.Cmd, logPath string, stop os.Signal, what string) <-chan struct{} {
	t.Helper()
	logf, err := os.Create(logPath)
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		require.NoError(t, err, "start %s", what)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(stop)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("last lines of the %s log:\n%s", what, tailFile(logPath, 80))
		}
	})
	return done
}
