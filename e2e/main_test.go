package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// env is the environment shared by every test of the package (started once by TestMain).
var env *Env

// TestMain starts the real environment (scripts/env-up.sh) into a temporary state directory, runs
// the tests and stops it again (scripts/env-down.sh). If this process dies without reaching the
// end (a panic, the -timeout alarm, a kill), the watchdog env-up.sh starts stops the environment.
// Set LE_E2E_STATE_DIR to choose the state directory (it is then kept, with its logs);
// LE_E2E_UNIT_ONLY=1 starts nothing (for the tests that need no environment, e.g. TestACMEProxy*).
func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) (code int) {
	if os.Getenv("LE_E2E_UNIT_ONLY") == "1" {
		return m.Run() // e.g. LE_E2E_UNIT_ONLY=1 go test -run TestACMEProxy .
	}
	stateDir := os.Getenv("LE_E2E_STATE_DIR")
	keep := stateDir != ""
	if stateDir == "" {
		d, err := os.MkdirTemp("", "le-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		stateDir = d
	}

	fmt.Fprintf(os.Stderr, "e2e: starting the environment in %s\n", stateDir)
	e, err := StartEnv(stateDir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "\nFAIL: e2e environment could not start:\n%v\n\n", err)
		_ = StopEnv(stateDir)
		if entries, _ := os.ReadDir(stateDir); len(entries) == 0 && !keep {
			_ = os.Remove(stateDir)
		} else {
			fmt.Fprintf(os.Stderr, "e2e: logs kept in %s\n", stateDir)
		}
		return 1
	}
	env = e

	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		if err := StopEnv(stateDir); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: env-down:", err)
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "e2e: %v: stopping the environment\n", s)
		stop()
		os.Exit(130)
	}()
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "e2e: panic: %v\n", r)
			code = 2
		}
		if code != 0 {
			dumpLogs(stateDir)
			keep = true
		}
		stop()
		if keep {
			fmt.Fprintf(os.Stderr, "e2e: logs kept in %s\n", stateDir)
		} else {
			_ = os.RemoveAll(stateDir)
		}
	}()
	return m.Run()
}

// dumpLogs prints the end of every service log, to see what the plugin or the CA said.
func dumpLogs(stateDir string) {
	for _, name := range []string{"vault.log", "pebble.log", "named.log"} {
		b, err := os.ReadFile(filepath.Join(stateDir, name))
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 60 {
			lines = lines[len(lines)-60:]
		}
		fmt.Fprintf(os.Stderr, "\n----- last lines of %s -----\n%s\n", name, strings.Join(lines, "\n"))
	}
}
