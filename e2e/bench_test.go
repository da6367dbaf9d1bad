//go:build bench

package e2e

// The benchmark (run by scripts/bench.sh: go test -tags bench -run '^TestBenchIssuance$'):
// N single-name certificate issuances through Vault (vault write, which waits for the
// certificate, then vault read; and the same two requests through the HTTP API), N with the lego
// CLI (lego run) and N with certbot (certonly), against the same Pebble and BIND, all with DNS-01
// and the same DNS polling interval. certbot has no RFC 2136 client of its own: it runs
// --manual with scripts/bench-certbot-hook.sh, which writes the record with nsupdate and waits
// until BIND answers it. Each starts with one untimed warm-up issuance (account registration,
// plugin start-up).

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func benchN() int {
	if n, err := strconv.Atoi(os.Getenv("LE_BENCH_N")); err == nil && n > 0 {
		return n
	}
	return 5
}

func legoBin(t *testing.T) string {
	p := os.Getenv("LE_LEGO_BIN")
	if p == "" {
		p = filepath.Join(ToolsDir(), "bin", "lego")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("lego CLI not found at %s: run `bash scripts/tools.sh lego` (or scripts/bench.sh, which builds it)", p)
	}
	return p
}

func TestBenchIssuance(t *testing.T) {
	n := benchN()
	lego := legoBin(t)
	c := env.RootClient(t)
	// Same DNS timings for both clients: poll every second, give up after 60s.
	env.CreateAccount(t, c, "bench-acct", map[string]any{"contact": "bench@" + env.Zone})
	env.CreateDNS(t, c, "bench-dns", map[string]any{"polling_interval": "1s", "propagation_timeout": "60s"})
	CreateRole(t, c, "bench", map[string]any{
		"account": "bench-acct", "dns": "bench-dns", "allowed_domains": env.Zone,
		"allow_subdomains": true, "allowed_cert_names": "bench-*",
	})

	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()

	vaultIssue := func(i string) (time.Duration, error) {
		name := "bench-" + i
		start := time.Now()
		if _, _, err := env.CLI(ctx, env.VaultToken, "write", "-format=json", Mount+"/certs/"+name,
			"role=bench", "domains="+name+"."+env.Zone, "wait=60s"); err != nil {
			return 0, err
		}
		out, _, err := env.CLI(ctx, env.VaultToken, "read", "-format=json", Mount+"/certs/"+name)
		elapsed := time.Since(start)
		if err != nil {
			return 0, err
		}
		var s struct {
			Data map[string]any `json:"data"`
		}
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			return 0, fmt.Errorf("vault read output: %w", err)
		}
		if _, err := ParseCert(s.Data); err != nil {
			return 0, fmt.Errorf("vault read: %w", err)
		}
		return elapsed, nil
	}

	apiIssue := func(i string) (time.Duration, error) {
		name := "bench-api-" + i
		start := time.Now()
		w, err := Do(ctx, c, http.MethodPut, Mount+"/certs/"+name, map[string]any{
			"role": "bench", "domains": name + "." + env.Zone, "wait": "60s",
		})
		if err != nil {
			return 0, err
		}
		if w.Status != http.StatusOK {
			return 0, fmt.Errorf("write certs/%s: %s", name, w)
		}
		r, err := Do(ctx, c, http.MethodGet, Mount+"/certs/"+name, nil)
		elapsed := time.Since(start)
		if err != nil {
			return 0, err
		}
		if r.Status != http.StatusOK {
			return 0, fmt.Errorf("read certs/%s: %s", name, r)
		}
		if _, err := ParseCert(r.Data); err != nil {
			return 0, fmt.Errorf("read certs/%s: %w", name, err)
		}
		return elapsed, nil
	}

	certbotDir := filepath.Join(env.StateDir, "certbot")
	hook := filepath.Join(RepoRoot(), "scripts", "bench-certbot-hook.sh")
	dnsHost, dnsPort, _ := strings.Cut(env.DNSAddr, ":")
	hookArgs := strings.Join([]string{dnsHost, dnsPort, filepath.Join(env.StateDir, "tsig.key")}, " ")
	certbotVersion := "certbot"
	if out, err := exec.CommandContext(ctx, certbotBin(t), "--version").CombinedOutput(); err == nil {
		certbotVersion = strings.TrimSpace(string(out))
	}
	certbotIssue := func(i string) (time.Duration, error) {
		domain := "certbot-" + i + "." + env.Zone
		start := time.Now()
		runCertbot(t, certbotDir, env.PebbleTLSCA, "certonly", "--manual", "--preferred-challenges", "dns",
			"--manual-auth-hook", "bash "+hook+" auth "+hookArgs, "--manual-cleanup-hook", "bash "+hook+" cleanup "+hookArgs,
			"--server", env.PebbleDirectory, "--agree-tos", "-m", "bench@"+env.Zone, "--no-eff-email", "-d", domain)
		elapsed := time.Since(start)
		crt, err := os.ReadFile(filepath.Join(certbotDir, "config", "live", domain, "cert.pem"))
		if err != nil {
			return 0, err
		}
		if _, err := ParseCertsPEM(string(crt)); err != nil {
			return 0, fmt.Errorf("certbot certificate: %w", err)
		}
		return elapsed, nil
	}

	legoPath := filepath.Join(env.StateDir, "lego")
	legoIssue := func(i string) (time.Duration, error) {
		domain := "lego-" + i + "." + env.Zone
		cmd := exec.CommandContext(ctx, lego,
			"--server", env.PebbleDirectory,
			"--accept-tos", "--email", "bench@"+env.Zone,
			"--dns", "rfc2136", "--dns.resolvers", env.DNSAddr,
			// BIND listens on a random port: the authoritative-NS check would query ns.example.test:53.
			"--dns.propagation-disable-ans",
			"--path", legoPath, "-d", domain, "run")
		cmd.Env = append(os.Environ(),
			"LEGO_CA_CERTIFICATES="+env.PebbleTLSCA,
			"RFC2136_NAMESERVER="+env.DNSAddr,
			"RFC2136_TSIG_KEY="+env.TSIGKeyName,
			"RFC2136_TSIG_ALGORITHM="+env.TSIGAlgorithm,
			"RFC2136_TSIG_SECRET="+env.TSIGSecret,
			"RFC2136_ZONES="+env.Zone,
			"RFC2136_POLLING_INTERVAL=1",
			"RFC2136_PROPAGATION_TIMEOUT=60",
		)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		elapsed := time.Since(start)
		if err != nil {
			return 0, fmt.Errorf("lego run %s: %w\n%s", domain, err, out)
		}
		crt, err := os.ReadFile(filepath.Join(legoPath, "certificates", domain+".crt"))
		if err != nil {
			return 0, err
		}
		if _, err := ParseCertsPEM(string(crt)); err != nil {
			return 0, fmt.Errorf("lego certificate: %w", err)
		}
		return elapsed, nil
	}

	type series struct {
		name  string
		issue func(string) (time.Duration, error)
		runs  []time.Duration
	}
	all := []*series{{name: "vault", issue: vaultIssue}, {name: "api", issue: apiIssue}, {name: "lego", issue: legoIssue}, {name: "certbot", issue: certbotIssue}}
	for _, s := range all {
		d, err := s.issue("warmup")
		require.NoError(t, err, "%s warm-up", s.name)
		fmt.Printf("bench: %-7s warm-up (untimed in the figures): %.3fs\n", s.name, d.Seconds())
	}
	// Interleave the two so that drift of the machine affects both alike.
	for i := 1; i <= n; i++ {
		for _, s := range all {
			d, err := s.issue(strconv.Itoa(i))
			require.NoError(t, err, "%s run %d", s.name, i)
			s.runs = append(s.runs, d)
			fmt.Printf("bench: %-7s run %d: %.3fs\n", s.name, i, d.Seconds())
		}
	}

	fmt.Printf("\nbench: %d single-name issuances each, Pebble + BIND (DNS-01 via RFC 2136; certbot: --manual hook running nsupdate), DNS polling 1s\n", n)
	fmt.Printf("%-48s %8s %8s %8s   %s\n", "client", "min", "median", "max", "runs (s)")
	labels := map[string]string{
		"vault":   "vault write (waits) + vault read",
		"api":     "PUT certs/<name> (waits) + GET, HTTP API",
		"lego":    "lego run (CLI v4.35.2)",
		"certbot": certbotVersion + " certonly --manual (nsupdate hook)",
	}
	medians := map[string]time.Duration{}
	for _, s := range all {
		medians[s.name] = median(s.runs)
		sorted := append([]time.Duration(nil), s.runs...)
		sort.Slice(sorted, func(a, b int) bool { return sorted[a] < sorted[b] })
		var med time.Duration
		if len(sorted)%2 == 1 {
			med = sorted[len(sorted)/2]
		} else {
			med = (sorted[len(sorted)/2-1] + sorted[len(sorted)/2]) / 2
		}
		var runs []string
		for _, r := range s.runs {
			runs = append(runs, fmt.Sprintf("%.3f", r.Seconds()))
		}
		fmt.Printf("%-48s %7.3fs %7.3fs %7.3fs   %s\n", labels[s.name],
			sorted[0].Seconds(), med.Seconds(), sorted[len(sorted)-1].Seconds(), strings.Join(runs, " "))
	}
	what := fmt.Sprintf("single issuance, DNS-01 (median of %d)", n)
	benchRow(t, what, fmt.Sprintf("API %s, vault CLI %s", secs(medians["api"]), secs(medians["vault"])),
		fmt.Sprintf("lego %s, certbot %s", secs(medians["lego"]), secs(medians["certbot"])), "-")
}
