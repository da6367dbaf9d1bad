package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDistVersion checks the version make dist stamps when VERSION is not given (scripts/dist.sh
// --print-version in a throw-away git repository holding a copy of the scripts): the tag at HEAD
// when the worktree is clean, otherwise a development version Vault accepts and orders after the
// last tag; and that a VERSION that is not semver with a leading v is refused.
func TestDistVersion(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	for _, f := range []string{"dist.sh", "lib.sh", "requirements.txt"} {
		b, err := os.ReadFile(filepath.Join(root, "scripts", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, "scripts"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "scripts", f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=test", "-c", "user.email=test@example.test",
			"-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"}, args...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	commit := func(msg string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "file.txt"), []byte(msg), 0o644); err != nil {
			t.Fatal(err)
		}
		git("add", "-A")
		git("commit", "-q", "-m", msg)
	}
	version := func(env ...string) (string, error) {
		t.Helper()
		cmd := exec.Command("bash", "scripts/dist.sh", "--print-version")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "VERSION=")
		cmd.Env = append(cmd.Env, env...)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	want := func(what, expected string, env ...string) {
		t.Helper()
		got, err := version(env...)
		if err != nil || got != expected {
			t.Errorf("%s: dist.sh --print-version = %q (%v), want %q", what, got, err, expected)
		}
	}

	git("init", "-q")
	commit("one")
	want("no tag", "v0.0.0-dev.1+g"+git("rev-parse", "--short=12", "HEAD"))
	git("tag", "release-1") // not a version tag: ignored
	commit("two")
	want("no version tag", "v0.0.0-dev.2+g"+git("rev-parse", "--short=12", "HEAD"))
	git("tag", "v0.1.0")
	want("the tag at HEAD", "v0.1.0")
	if err := os.WriteFile(filepath.Join(dir, "file.txt"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	want("the tag at HEAD with uncommitted changes", "v0.1.1-dev.0+g"+git("rev-parse", "--short=12", "HEAD")+".dirty")
	commit("three")
	commit("four")
	want("two commits after the tag", "v0.1.1-dev.2+g"+git("rev-parse", "--short=12", "HEAD"))
	want("VERSION given", "v0.2.0-rc.1", "VERSION=v0.2.0-rc.1")
	for _, bad := range []string{"0.2.0", "v0.2", "v0.2.0.1", "v01.2.3", "latest"} {
		out, err := version("VERSION=" + bad)
		if err == nil || !strings.Contains(out, "leading v") {
			t.Errorf("VERSION=%s: dist.sh --print-version = %q (%v), want a refusal naming the leading v", bad, out, err)
		}
	}
}

// TestMakeTakesValuesAsWritten runs make with VERSION, PLATFORMS and DIST_DIR values shaped like
// hostile git tag names (command substitution, make functions, quotes): nothing they hold runs,
// and make dist refuses them (make -n for build: its recipe quotes the version from the environment).
func TestMakeTakesValuesAsWritten(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	mark := func(n int) string { return filepath.Join(dir, "ran"+string(rune('0'+n))) }
	cases := [][]string{
		{"dist", "VERSION=`touch " + mark(1) + "`v1.0.0", "PLATFORMS=linux/amd64", "DIST_DIR=" + dir + "/d"},
		{"dist", "VERSION=$(shell touch " + mark(2) + ")v1.0.0", "PLATFORMS=linux/amd64", "DIST_DIR=" + dir + "/d"},
		{"dist", `VERSION=v1.0.0"; touch ` + mark(3) + `; echo "`, "PLATFORMS=linux/amd64", "DIST_DIR=" + dir + "/d"},
		{"dist", "VERSION=v1.0.0", `PLATFORMS=linux/amd64"; touch ` + mark(4) + `; echo "`, "DIST_DIR=" + dir + "/d"},
		{"dist", "VERSION=v1.0.0", "PLATFORMS=$(shell touch " + mark(5) + ")linux/amd64", "DIST_DIR=" + dir + "/d"},
		{"-n", "build", "VERSION=$(shell touch " + mark(6) + ")", "PLATFORMS=$(shell touch " + mark(7) + ")"},
	}
	for i, args := range cases {
		cmd := exec.Command("make", append([]string{"--no-print-directory", "-C", root}, args...)...)
		out, err := cmd.CombinedOutput()
		if args[0] == "dist" && err == nil {
			t.Errorf("case %d: make %q succeeded:\n%s", i+1, args, out)
		}
	}
	for n := 1; n <= 7; n++ {
		if _, err := os.Stat(mark(n)); err == nil {
			t.Errorf("a value given to make ran a command (%s exists)", mark(n))
		}
	}
}
