package provider

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/go-acme/lego/v4/challenge"
	legolog "github.com/go-acme/lego/v4/log"
)

// Test-only providers. This file is compiled only into this package's test
// binary, which doubles as the dns-solver child in the tests.
func init() {
	extraProviders = map[string]func() (challenge.Provider, error){
		"test-envprobe": func() (challenge.Provider, error) { return envProbe{}, nil },
		"test-echo":     newEcho,
		"test-panic":    func() (challenge.Provider, error) { return panicker{}, nil },
	}
}

// envProbe reports the child's pid, environment variable names and TMPDIR
// through its errors.
type envProbe struct{}

func (envProbe) report() error {
	var keys []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		keys = append(keys, k)
	}
	sort.Strings(keys)
	wd, _ := os.Getwd()
	return fmt.Errorf("pid=%d tmpdir=%s cwd=%s env=%s", os.Getpid(), os.Getenv("TMPDIR"), wd, strings.Join(keys, ","))
}

func (p envProbe) Present(_, _, _ string) error { return p.report() }
func (p envProbe) CleanUp(_, _, _ string) error { return p.report() }

// echo puts its ECHO_SECRET credential into errors and logs.
type echo struct{ secret string }

func newEcho() (challenge.Provider, error) {
	s := os.Getenv("ECHO_SECRET")
	if s == "" {
		return nil, errors.New("echo: some credentials information are missing: ECHO_SECRET")
	}
	if os.Getenv("ECHO_FAIL_CONFIG") != "" {
		return nil, fmt.Errorf("echo: secret %s was rejected", s)
	}
	return echo{secret: s}, nil
}

func (e echo) Present(domain, _, _ string) error {
	legolog.Infof("[%s] echo: presenting with secret %s", domain, e.secret)
	return fmt.Errorf("echo: API rejected token %s for %s", e.secret, domain)
}
func (e echo) CleanUp(string, string, string) error { return nil }

type panicker struct{}

func (panicker) Present(string, string, string) error { panic("provider bug") }
func (panicker) CleanUp(string, string, string) error { return nil }
