//go:build bench

package e2e

// The read benchmark of issue 10 (run by scripts/bench.sh: go test -tags bench -run
// '^TestBenchReads$'): with 16 concurrent readers, how many GET /v1/<mount>/certs/<name> Vault
// answers per second, against the same bytes (the read's certificate, private_key and ca_chain)
// in what users would otherwise keep certificates in: the KV v2 engine built into Vault, and KV v2
// run as an external plugin (vault-plugin-secrets-kv, the version Vault 1.21 builds in, from the
// tools cache, registered in the dev server's plugin directory like this plugin). One Go HTTP
// client with kept-alive connections, one token, 16 goroutines; each target is read for
// LE_BENCH_READ_SECONDS (default 10) in two interleaved halves, after a 1 s warm-up each.

import (
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// kvPluginName is the name the external KV plugin is registered under (and its binary's name).
const kvPluginName = "vault-plugin-secrets-kv"

const benchReaders = 16

// kvPluginBin is $LE_KV_PLUGIN_BIN or the tools cache's build; the test fails with how to get it.
func kvPluginBin(t testing.TB) string {
	t.Helper()
	p := os.Getenv("LE_KV_PLUGIN_BIN")
	if p == "" {
		p = filepath.Join(ToolsDir(), "bin", kvPluginName)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the external KV plugin is not at %s: run `bash scripts/tools.sh %s` (or scripts/bench.sh, which builds it)", p, kvPluginName)
	}
	return p
}

func benchReadSeconds() time.Duration {
	if n, err := strconv.Atoi(os.Getenv("LE_BENCH_READ_SECONDS")); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	return 10 * time.Second
}

// readTarget is one path read by the benchmark, with what it measured.
type readTarget struct {
	label, path string
	n           int64
	took        time.Duration
	lat         []time.Duration
	bytes       int
}

func (r *readTarget) rate() float64 { return float64(r.n) / r.took.Seconds() }

func (r *readTarget) percentile(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), r.lat...)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// readFor reads path with workers goroutines for d and returns the successful reads, how long they
// took (until the last answer) and each one's latency. Any other answer fails the test.
func readFor(t testing.TB, h *benchHTTP, path string, workers int, d time.Duration) (int64, time.Duration, []time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	defer cancel()
	var n, failed atomic.Int64
	var firstErr atomic.Value
	lats := make([][]time.Duration, workers)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				s := time.Now()
				status, body, err := h.do(ctx, http.MethodGet, path, nil)
				if err != nil || status != http.StatusOK {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("HTTP %d %v %.200s", status, err, body))
					continue
				}
				lats[w] = append(lats[w], time.Since(s))
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	require.Zero(t, failed.Load(), "GET %s: %d reads failed, e.g. %v", path, failed.Load(), firstErr.Load())
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	return n.Load(), took, all
}

func TestBenchReads(t *testing.T) {
	kvBin := kvPluginBin(t)
	root := env.RootClient(t)
	h := newBenchHTTP(env.VaultAddr, env.VaultToken, benchReaders)
	defer h.close()

	// One certificate issued by Pebble, read as users read it.
	id := Unique("bread")
	is := env.SetupIssuer(t, root, id, nil, map[string]any{
		"allowed_domains": env.Zone, "allow_subdomains": true, "allowed_cert_names": id,
	})
	IssueCert(t, root, id, map[string]any{"role": is.Role, "domains": "www." + id + "." + env.Zone}, 2*time.Minute)
	certPath := Mount + "/certs/" + id
	var read struct {
		Data map[string]any `json:"data"`
	}
	require.NoError(t, json.Unmarshal(h.mustDo(t, http.MethodGet, certPath, nil, http.StatusOK), &read))
	payload := map[string]any{}
	for _, f := range []string{"certificate", "private_key", "ca_chain"} {
		require.NotEmpty(t, read.Data[f], "the certificate's %s", f)
		payload[f] = read.Data[f]
	}

	// KV v2 built into Vault.
	kvb := Unique("kvb")
	h.mustDo(t, http.MethodPost, "sys/mounts/"+kvb, map[string]any{"type": "kv", "options": map[string]any{"version": "2"}}, http.StatusNoContent)

	// KV v2 as an external plugin, registered from the dev server's plugin directory.
	bin, err := os.ReadFile(kvBin)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(env.StateDir, "plugins", kvPluginName), bin, 0o755))
	sum := sha256.Sum256(bin)
	kvVersion := "(unknown version)"
	if bi, err := buildinfo.ReadFile(kvBin); err == nil {
		kvVersion = bi.Main.Version
	}
	// Vault lets only the type "kv" take options.version at mount time: the external plugin is
	// mounted (KV v1) and then upgraded to KV v2 by a tune, as `vault kv enable-versioning` does.
	h.mustDo(t, http.MethodPut, "sys/plugins/catalog/secret/"+kvPluginName, map[string]any{
		"sha256": hex.EncodeToString(sum[:]), "command": kvPluginName,
	}, http.StatusNoContent)
	kvx := Unique("kvx")
	t.Cleanup(func() {
		h.mustDo(t, http.MethodDelete, "sys/mounts/"+kvx, nil, http.StatusNoContent)
		h.mustDo(t, http.MethodDelete, "sys/mounts/"+kvb, nil, http.StatusNoContent)
	})
	h.mustDo(t, http.MethodPost, "sys/mounts/"+kvx, map[string]any{"type": kvPluginName}, http.StatusNoContent)
	h.mustDo(t, http.MethodPost, "sys/mounts/"+kvx+"/tune", map[string]any{"options": map[string]any{"version": "2"}}, http.StatusOK)
	var mounts struct {
		Data map[string]struct {
			RunningSHA256 string `json:"running_sha256"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(h.mustDo(t, http.MethodGet, "sys/mounts", nil, http.StatusOK), &mounts))
	require.Equal(t, hex.EncodeToString(sum[:]), mounts.Data[kvx+"/"].RunningSHA256, "%s/ runs the external plugin", kvx)
	require.Empty(t, mounts.Data[kvb+"/"].RunningSHA256, "%s/ runs the built-in KV", kvb)

	// The same three fields in both (a new KV v2 mount answers writes once its set-up is done).
	for _, m := range []string{kvb, kvx} {
		waitFor(t, time.Minute, "KV v2 at "+m+" to take writes", func() (bool, string) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			status, body, err := h.do(ctx, http.MethodPut, m+"/data/cert", map[string]any{"data": payload})
			return err == nil && status == http.StatusOK, fmt.Sprintf("HTTP %d %v %.200s", status, err, body)
		})
		var kv struct {
			Data struct {
				Data map[string]any `json:"data"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(h.mustDo(t, http.MethodGet, m+"/data/cert", nil, http.StatusOK), &kv))
		require.Equal(t, payload, kv.Data.Data, "KV at %s returns the certificate's fields", m)
	}

	targets := []*readTarget{
		{label: "engine", path: certPath},
		{label: "KV v2 built-in", path: kvb + "/data/cert"},
		{label: "KV v2 external plugin " + kvVersion, path: kvx + "/data/cert"},
	}
	for _, r := range targets {
		r.bytes = len(h.mustDo(t, http.MethodGet, r.path, nil, http.StatusOK))
		readFor(t, h, r.path, benchReaders, time.Second) // warm-up: connections, caches
	}
	d := benchReadSeconds()
	// Two halves, the second in reverse order, so that drift of the machine affects all alike.
	for half := range 2 {
		order := targets
		if half == 1 {
			order = []*readTarget{targets[2], targets[1], targets[0]}
		}
		for _, r := range order {
			n, took, lat := readFor(t, h, r.path, benchReaders, d/2)
			r.n, r.took, r.lat = r.n+n, r.took+took, append(r.lat, lat...)
			fmt.Printf("bench: reads %-40s half %d: %7d in %.2fs = %8.0f/s\n", r.label, half+1, n, took.Seconds(), float64(n)/took.Seconds())
		}
	}

	eng, kvB, kvX := targets[0], targets[1], targets[2]
	fmt.Printf("\nbench: reads, %d readers, %s per target, one token, kept-alive connections\n", benchReaders, d)
	fmt.Printf("%-46s %10s %10s %10s %8s\n", "target", "reads/s", "p50", "p99", "bytes")
	for _, r := range targets {
		fmt.Printf("%-46s %10.0f %10s %10s %8d\n", r.label+" ("+r.path+")", r.rate(), secs(r.percentile(0.5)), secs(r.percentile(0.99)), r.bytes)
	}
	vsBuiltin, vsExternal := eng.rate()/kvB.rate(), eng.rate()/kvX.rate()
	what := fmt.Sprintf("reads/s, %d readers, %s each, GET certs/<name>", benchReaders, d)
	benchRow(t, what, fmt.Sprintf("%.0f/s (p99 %s)", eng.rate(), secs(eng.percentile(0.99))),
		fmt.Sprintf("KV v2 built-in: %.0f/s (engine = %.2fx)", kvB.rate(), vsBuiltin), verdict(vsBuiltin >= 0.6, ">= 0.6x built-in KV"))
	benchRow(t, "", "",
		fmt.Sprintf("KV v2 external plugin %s: %.0f/s (%.2fx)", kvVersion, kvX.rate(), vsExternal), verdict(vsExternal >= 2.5, ">= 2.5x external KV plugin"))
	benchRow(t, "  response bytes (KV holds the same 3 fields)", fmt.Sprintf("%d B", eng.bytes),
		fmt.Sprintf("KV built-in %d B, external %d B", kvB.bytes, kvX.bytes), "-")
}
