//go:build bench

package e2e

// The scale benchmark of issue 10 (run by scripts/bench.sh: go test -tags bench -run
// '^TestBenchScale$'): one mount of the plugin holding 10,000 certificates (LE_BENCH_SCALE_N).
// They are made by a throw-away CA in the test and imported (certs/<name> with certificate,
// private_key and chain: no order) by 16 writers under a role allowing their names, with an account
// at Pebble behind a counting proxy. An import asks the CA for the certificate's renewal window
// (ARI) at once, so the benchmark waits until those 10,000 checks are done before measuring:
//
//   - mount start: the time from a reload of the mount (sys/plugins/reload/backend, which runs
//     Initialize and so loads the schedule) until a certificate read succeeds, and from a kill -9
//     of the plugin until a read succeeds in the new process Vault starts; with the plugin's own
//     "renewal schedule loaded" log line (its duration),
//   - the plugin process's VmRSS (and VmHWM, its peak) from /proc/<pid>/status,
//   - LIST certs/<prefix>/ (all 10,000 in one folder) through the API and the vault CLI,
//   - status/certs,
//   - the periodic tick (BenchmarkPeriodicTick in backend/, the same 10,000 in memory storage).

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func benchScaleN() int {
	if n, err := strconv.Atoi(os.Getenv("LE_BENCH_SCALE_N")); err == nil && n > 0 {
		return n
	}
	return 10000
}

// scaleCert is one certificate to import.
type scaleCert struct {
	name, certPEM, keyPEM string
}

// makeScaleCerts makes a throw-away CA and n leaf certificates, valid for 90 days from an hour
// ago, each for its own name under domain, with its own P-256 key.
func makeScaleCerts(t testing.TB, n int, domain string) (caPEM string, certs []scaleCert) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench throw-away CA"},
		NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	caPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))

	certs = make([]scaleCert, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				if err != nil {
					errs <- err
					return
				}
				serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
				host := fmt.Sprintf("c%05d.%s", i, domain)
				tmpl := &x509.Certificate{
					SerialNumber: serial, Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
					NotBefore: now.Add(-time.Hour), NotAfter: now.Add(90 * 24 * time.Hour),
					KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
				}
				der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
				if err != nil {
					errs <- err
					return
				}
				keyDER, err := x509.MarshalPKCS8PrivateKey(key)
				if err != nil {
					errs <- err
					return
				}
				certs[i] = scaleCert{
					name:    fmt.Sprintf("scale/c%05d", i),
					certPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
					keyPEM:  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})),
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	require.NoError(t, <-errs)
	return caPEM, certs
}

// letsencryptPluginPIDs are the running processes of this plugin's binary that the environment's
// Vault started (not the DNS solver children, nor other plugins).
func letsencryptPluginPIDs(t testing.TB) []int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.StateDir, "vault.pid"))
	require.NoError(t, err)
	vaultPID, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	var out []int
	for _, pid := range pluginPIDs(vaultPID, filepath.Join(env.StateDir, "plugins")) {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err == nil && filepath.Base(exe) == filepath.Base(env.PluginBin) && !isZombie(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// pluginMemory is VmRSS and VmHWM of the plugin's one process (multiplexed: every mount of the
// plugin is served by it).
func pluginMemory(t testing.TB) (pid int, rss, hwm int64) {
	t.Helper()
	pids := letsencryptPluginPIDs(t)
	require.Len(t, pids, 1, "one process of the plugin (multiplexed)")
	rss, hwm, err := procMemory(pids[0])
	require.NoError(t, err)
	return pids[0], rss, hwm
}

// scheduleLogLine finds, in vault.log after offset, the plugin's "renewal schedule loaded" line
// for n certificates and returns the duration it names.
// (Vault writes the plugin's key/value pairs in any order.)
var (
	scheduleCountRe    = regexp.MustCompile(`\bcertificates=(\d+)`)
	scheduleDurationRe = regexp.MustCompile(`\bduration=(\S+)`)
)

func scheduleLogDuration(offset int64, n int) (time.Duration, bool) {
	f, err := os.Open(filepath.Join(env.StateDir, "vault.log"))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		return 0, false
	}
	var found time.Duration
	ok := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "renewal schedule loaded") {
			continue
		}
		c, d := scheduleCountRe.FindStringSubmatch(line), scheduleDurationRe.FindStringSubmatch(line)
		if c == nil || d == nil || c[1] != strconv.Itoa(n) {
			continue
		}
		if d, err := time.ParseDuration(strings.Trim(d[1], `"`)); err == nil {
			found, ok = d, true
		}
	}
	return found, ok
}

func vaultLogSize() int64 {
	st, err := os.Stat(filepath.Join(env.StateDir, "vault.log"))
	if err != nil {
		return 0
	}
	return st.Size()
}

func TestBenchScale(t *testing.T) {
	n := benchScaleN()
	const writers = 16
	h := newBenchHTTP(env.VaultAddr, env.VaultToken, writers)
	defer h.close()
	mount := Unique("le-scale")
	h.mustDo(t, http.MethodPost, "sys/mounts/"+mount, map[string]any{
		"type": "vault-plugin-secrets-letsencrypt", "plugin_version": env.PluginVersion,
	}, http.StatusNoContent)
	t.Cleanup(func() { h.mustDo(t, http.MethodDelete, "sys/mounts/"+mount, nil, http.StatusNoContent) })

	// An account at Pebble behind a proxy that counts the renewal-window (ARI) requests.
	proxy := env.NewPebbleProxy(t)
	var ari atomic.Int64
	proxy.SetFault(func(_ http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "renewalInfo") {
			ari.Add(1)
		}
		return false
	})
	put := func(path string, data map[string]any) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		status, body, err := h.do(ctx, http.MethodPut, mount+"/"+path, data)
		require.NoError(t, err)
		require.True(t, status >= 200 && status < 300, "PUT %s/%s: HTTP %d %s", mount, path, status, body)
	}
	put("accounts/scale", env.AccountData(t, map[string]any{
		"directory_url": proxy.DirectoryURL(env.PebbleDirectory), "ca_bundle": string(proxy.CAPEM),
	}))
	put("config/dns/scale", env.DNSData(nil))
	domain := "scale." + env.Zone
	put("roles/scale", map[string]any{
		"account": "scale", "dns": "scale", "allowed_domains": domain, "allow_subdomains": true,
		"allowed_cert_names": "scale/*", "key_type": "ec256", "profile": DefaultProfile, "allow_imports": true,
	})

	start := time.Now()
	caPEM, certs := makeScaleCerts(t, n, domain)
	fmt.Printf("bench: scale: %d certificates made by a throw-away CA in %s\n", n, secs(time.Since(start)))

	// Import them, 16 at a time.
	start = time.Now()
	var next, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				c := certs[i]
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				status, body, err := h.do(ctx, http.MethodPut, mount+"/certs/"+c.name, map[string]any{
					"role": "scale", "certificate": c.certPEM, "private_key": c.keyPEM, "chain": caPEM,
				})
				cancel()
				if err != nil || status != http.StatusOK {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: HTTP %d %v %.300s", c.name, status, err, body))
				}
			}
		}()
	}
	wg.Wait()
	importTook := time.Since(start)
	require.Zero(t, failed.Load(), "imports failed, e.g. %v", firstErr.Load())
	fmt.Printf("bench: scale: %d imports by %d writers in %s (%.0f/s); %d renewal-window checks so far\n",
		n, writers, secs(importTook), float64(n)/importTook.Seconds(), ari.Load())

	// Each import asks the CA for its renewal window once: wait for those, then for quiet.
	last, lastChange := ari.Load(), time.Now()
	for ari.Load() < int64(n) && time.Since(lastChange) < time.Minute {
		time.Sleep(time.Second)
		if c := ari.Load(); c != last {
			last, lastChange = c, time.Now()
		}
	}
	ariTook := time.Since(start)
	fmt.Printf("bench: scale: %d renewal-window checks at the CA done %s after the first import\n", ari.Load(), secs(ariTook))
	require.GreaterOrEqual(t, ari.Load(), int64(n), "every imported certificate's renewal window was asked for")
	time.Sleep(3 * time.Second)
	_, rssImport, hwmImport := pluginMemory(t)
	fmt.Printf("bench: scale: plugin after the imports: VmRSS %s, VmHWM %s\n", mb(rssImport), mb(hwmImport))

	first := mount + "/certs/" + certs[0].name
	readOK := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		status, _, err := h.do(ctx, http.MethodGet, first, nil)
		return err == nil && status == http.StatusOK
	}
	require.True(t, readOK(), "GET %s", first)

	// LIST of the folder holding all of them: the API, and the vault CLI (a process per list).
	var listAPI, listCLI []time.Duration
	for range 5 {
		s := time.Now()
		body := h.mustDo(t, "LIST", mount+"/certs/scale/", nil, http.StatusOK)
		listAPI = append(listAPI, time.Since(s))
		var l struct {
			Data struct {
				Keys []string `json:"keys"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(body, &l))
		require.Len(t, l.Data.Keys, n, "LIST certs/scale/")
	}
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		s := time.Now()
		out, _, err := env.CLI(ctx, env.VaultToken, "list", "-format=json", mount+"/certs/scale/")
		listCLI = append(listCLI, time.Since(s))
		cancel()
		require.NoError(t, err)
		var keys []string
		require.NoError(t, json.Unmarshal([]byte(out), &keys))
		require.Len(t, keys, n, "vault list")
	}
	var status []time.Duration
	for range 5 {
		s := time.Now()
		body := h.mustDo(t, http.MethodGet, mount+"/status/certs", nil, http.StatusOK)
		status = append(status, time.Since(s))
		var st struct {
			Data struct {
				Counts map[string]int `json:"counts"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(body, &st))
		require.Equal(t, n, st.Data.Counts["total"], "status/certs counts")
	}
	fmt.Printf("bench: scale: LIST certs/scale/ (%d keys): API %s (median of 5), vault list %s (median of 3); GET status/certs %s (median of 5)\n",
		n, secs(median(listAPI)), secs(median(listCLI)), secs(median(status)))

	// Mount start, 1: a reload of the mount (the same plugin process; Initialize loads the schedule).
	var reloads []time.Duration
	var reloadLog []time.Duration
	for range 3 {
		offset := vaultLogSize()
		s := time.Now()
		h.mustDo(t, http.MethodPut, "sys/plugins/reload/backend", map[string]any{"mounts": []string{mount + "/"}}, http.StatusOK)
		for !readOK() {
			require.Less(t, time.Since(s), 2*time.Minute, "a read after the reload")
			time.Sleep(10 * time.Millisecond)
		}
		reloads = append(reloads, time.Since(s))
		logged := "not found"
		if d, ok := scheduleLogDuration(offset, n); ok {
			logged = secs(d)
			reloadLog = append(reloadLog, d)
		}
		fmt.Printf("bench: scale: reload of %s/ until a read succeeds: %s (the plugin logged the schedule load: %s)\n", mount, secs(reloads[len(reloads)-1]), logged)
	}

	// Mount start, 2: a new plugin process (kill -9; the next request makes Vault start one, and
	// the mount's Initialize runs in it before the request is served).
	var colds []time.Duration
	var coldLog []time.Duration
	var rss, hwm int64
	for range 2 {
		old := letsencryptPluginPIDs(t)
		for _, pid := range old {
			require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
		}
		waitFor(t, 10*time.Second, "the killed plugin to exit", func() (bool, string) {
			return len(letsencryptPluginPIDs(t)) == 0, fmt.Sprint(letsencryptPluginPIDs(t))
		})
		offset := vaultLogSize()
		s := time.Now()
		for !readOK() {
			require.Less(t, time.Since(s), 2*time.Minute, "a read after the plugin was killed")
			time.Sleep(10 * time.Millisecond)
		}
		colds = append(colds, time.Since(s))
		logged := "not found"
		if d, ok := scheduleLogDuration(offset, n); ok {
			logged = secs(d)
			coldLog = append(coldLog, d)
		}
		time.Sleep(3 * time.Second)
		var pid int
		pid, rss, hwm = pluginMemory(t)
		fmt.Printf("bench: scale: new plugin process %d (after kill -9 of %v) until a read succeeds: %s (schedule load logged: %s); VmRSS %s, VmHWM %s\n",
			pid, old, secs(colds[len(colds)-1]), logged, mb(rss), mb(hwm))
	}

	tick := periodicTickFigures(t)

	startWorst := max(median(colds), median(reloads))
	benchRow(t, fmt.Sprintf("import %d certificates, %d writers", n, writers), fmt.Sprintf("%s (%.0f/s)", secs(importTook), float64(n)/importTook.Seconds()),
		fmt.Sprintf("(and each one's ARI check: all done in %s)", secs(ariTook)), "-")
	benchRow(t, fmt.Sprintf("mount start, %d certs: new plugin process", n), fmt.Sprintf("%s (log: load %s)", secs(median(colds)), secs(median(coldLog))),
		"kill -9, until a read succeeds (median of 2)", verdict(startWorst < 3*time.Second, "< 3 s"))
	benchRow(t, "  reload of the mount (same process)", fmt.Sprintf("%s (log: load %s)", secs(median(reloads)), secs(median(reloadLog))),
		"sys/plugins/reload/backend, until a read (median 3)", "")
	benchRow(t, fmt.Sprintf("plugin RSS, %d certs loaded", n), mb(rss), "VmRSS of the new process, 3 s after its start", verdict(rss < 150e6, "< 150 MB"))
	benchRow(t, "  while importing them (and their ARI checks)", mb(hwmImport)+" peak", fmt.Sprintf("VmHWM; VmRSS %s once done", mb(rssImport)), verdict(hwmImport < 150e6, "< 150 MB"))
	benchRow(t, fmt.Sprintf("LIST certs/scale/ (%d keys in one folder)", n), "API "+secs(median(listAPI)), "vault list (CLI process): "+secs(median(listCLI)), "-")
	benchRow(t, "GET status/certs", secs(median(status)), "none needs attention", "-")
	for _, r := range tick {
		benchRow(t, r[0], r[1], r[2], "-")
	}
}

// periodicTickFigures runs BenchmarkPeriodicTick (backend/scheduler_bench_test.go: 10,000
// certificates in memory storage, none or 100 due) and returns its figures as table rows.
func periodicTickFigures(t testing.TB) [][3]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "BenchmarkPeriodicTick", "-count", "1", "./backend/")
	cmd.Dir = RepoRoot()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go test -bench BenchmarkPeriodicTick ./backend/:\n%s", out)
	fmt.Printf("bench: scale: make bench-tick:\n%s", out)
	// BenchmarkPeriodicTick/stored=10000/due=0-2   1000000   1234 ns/op   0 dispatched/tick   0 storage-reads/tick
	re := regexp.MustCompile(`(?m)^BenchmarkPeriodicTick/stored=(\d+)/due=(\d+)\S*\s+\d+\s+([\d.]+) ns/op(.*)$`)
	var rows [][3]string
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		ns, _ := strconv.ParseFloat(m[3], 64)
		reads := regexp.MustCompile(`([\d.]+) storage-reads/tick`).FindStringSubmatch(m[4])
		extra := ""
		if reads != nil {
			extra = reads[1] + " storage reads"
		}
		rows = append(rows, [3]string{
			fmt.Sprintf("periodic tick, %s stored, %s due", m[1], m[2]),
			secs(time.Duration(ns)),
			"make bench-tick; " + extra + " per tick",
		})
	}
	require.NotEmpty(t, rows, "BenchmarkPeriodicTick figures in:\n%s", out)
	return rows
}
