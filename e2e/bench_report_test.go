//go:build bench

package e2e

// Shared by the benchmarks of issue 10 (bench_test.go, bench_reads_test.go, bench_scale_test.go):
// the one table scripts/bench.sh prints at the end (each benchmark adds its rows to the file
// $LE_BENCH_TABLE; without it the rows are printed at once), a keep-alive HTTP client for many
// requests, medians and a process's memory from /proc.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The table's columns: what is measured, this engine's figure, what users would pick instead, and
// the target with its verdict.
const benchTableFormat = "%-46s %-30s %-50s %s\n"

var benchTableMu sync.Mutex

// benchRow adds one row to the table (printed by scripts/bench.sh after every benchmark ran).
func benchRow(t testing.TB, what, engine, instead, target string) {
	t.Helper()
	line := strings.TrimRight(fmt.Sprintf(benchTableFormat, what, engine, instead, target), " \n") + "\n"
	benchTableMu.Lock()
	defer benchTableMu.Unlock()
	path := os.Getenv("LE_BENCH_TABLE")
	if path == "" {
		fmt.Print("bench table: " + line)
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() == 0 {
		_, err = fmt.Fprintf(f, benchTableFormat, "measured (make bench)", "this engine", "what users would pick instead", "target (issue 10)")
		require.NoError(t, err)
	}
	_, err = f.WriteString(line)
	require.NoError(t, err)
}

// verdict is "met" or "MISSED" with the target's words.
func verdict(ok bool, target string) string {
	if ok {
		return target + ": met"
	}
	return target + ": MISSED"
}

// median of ds (0 for none).
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// secs formats d in seconds with 3 decimals, ms below a second, µs below a millisecond.
func secs(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%.2fµs", float64(d.Nanoseconds())/1000)
	}
	if d < time.Second {
		return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
	}
	return fmt.Sprintf("%.3fs", d.Seconds())
}

// benchHTTP sends many requests to Vault over kept-alive connections with one token.
type benchHTTP struct {
	hc    *http.Client
	addr  string
	token string
}

func newBenchHTTP(addr, token string, conns int) *benchHTTP {
	tr := &http.Transport{
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		MaxConnsPerHost:     0,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &benchHTTP{hc: &http.Client{Transport: tr, Timeout: 2 * time.Minute}, addr: addr, token: token}
}

func (h *benchHTTP) close() { h.hc.CloseIdleConnections() }

// do sends method to /v1/<path> with body (JSON, nil for none) and returns the status and body.
func (h *benchHTTP) do(ctx context.Context, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.addr+"/v1/"+strings.TrimPrefix(path, "/"), rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("X-Vault-Token", h.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// mustDo is do that fails the test on a transport error or a status other than want.
func (h *benchHTTP) mustDo(t testing.TB, method, path string, body any, want int) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	status, b, err := h.do(ctx, method, path, body)
	require.NoError(t, err, "%s %s", method, path)
	require.Equal(t, want, status, "%s %s: %s", method, path, b)
	return b
}

// procMemory returns VmRSS and VmHWM (peak) of pid in bytes, from /proc/<pid>/status.
func procMemory(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		for key, dst := range map[string]*int64{"VmRSS:": &rss, "VmHWM:": &hwm} {
			if v, ok := strings.CutPrefix(line, key); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				*dst = kb * 1024
			}
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return rss, hwm, nil
}

// mb formats bytes in MB (10^6 bytes, the unit of the target).
func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
