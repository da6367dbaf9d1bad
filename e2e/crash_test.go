package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Crash tests: the plugin process is killed with SIGKILL at a chosen point of an order (held at the
// ACME proxy), and what the relaunched plugin does is checked from the outside: the order is
// resumed rather than placed again, and a DNS-01 record left behind is removed by the WAL rollback.
// Both hold devPluginMu exclusively: no other test of this package may see the plugin die.

// TestCrashAfterFinalizeResumesOrder: the plugin dies after the CA finalized the order, while the
// certificate download is held; the relaunched plugin stores the certificate of that same order
// (no second new-order, no second finalize), and later reads do not order again.
func TestCrashAfterFinalizeResumesOrder(t *testing.T) {
	t.Parallel()
	devPluginMu.Lock()
	defer devPluginMu.Unlock()

	c := env.RootClient(t)
	proxy := env.NewPebbleProxy(t)
	id := Unique("crashfin")
	domain := id + "." + env.Zone
	is := env.SetupProxiedIssuer(t, c, proxy, id, "default")

	var log requestLog
	hold, seen, release := Hold(http.MethodPost, "/certZ/")
	defer release()
	proxy.SetFault(log.wrap(hold))
	w := MustDo(t, c, http.MethodPut, Mount+"/certs/"+id, map[string]any{"role": is.Role, "domains": domain, "wait": "0s"})
	require.Equal(t, http.StatusAccepted, w.Status, "write with wait=0: %s", w)
	waitChan(t, seen, 90*time.Second, "the certificate download to reach the proxy")
	require.Equal(t, 1, proxy.NewOrders(), "one order so far")
	require.Len(t, log.distinct(http.MethodPost, "/finalize-order/"), 1, "the order was finalized")
	downloads := log.distinct(http.MethodPost, "/certZ/")
	require.Len(t, downloads, 1)
	finalizedSerial := strings.TrimPrefix(downloads[0], "/certZ/")

	killed := killDevPlugin(t)
	t.Logf("plugin process %v killed while the download of certificate %s was held", killed, finalizedSerial)
	release()
	proxy.SetFault(log.wrap(nil))

	// The next read relaunches the plugin; it (or the scheduler's first sweep) resumes the order.
	start := time.Now()
	r := readUntilOK(t, c, id, 90*time.Second)
	t.Logf("certificate readable %s after the kill", time.Since(start).Round(time.Second))
	cert, err := ParseCert(r.Data)
	require.NoError(t, err)
	assert.True(t, KeyMatches(cert.Key, cert.Leaf), "the stored key is the one of the resumed order's CSR")
	assert.Equal(t, 1, proxy.NewOrders(), "the order was resumed, not placed again")
	assert.Len(t, log.distinct(http.MethodPost, "/finalize-order/"), 1, "no second finalization")
	assert.Equal(t, normSerial(finalizedSerial), normSerial(cert.SerialNumber), "the certificate of the order the CA finalized")
	assert.Equal(t, normSerial(finalizedSerial), cert.Leaf.SerialNumber.Text(16))
	assert.Equal(t, "valid", r.Data["status"])
	assert.Equal(t, 0, intField(r.Data, "renewals"))

	// orders/<name> is gone: another read (after the scheduler's sweep window) orders nothing.
	time.Sleep(12 * time.Second)
	again := readCertOK(t, c, id)
	assert.Equal(t, r.Data["serial_number"], again.Data["serial_number"])
	assert.Equal(t, 1, proxy.NewOrders(), "a later read does not order again")
}

// TestWALRemovesLeftoverRecord: the plugin dies while the CA holds the challenge acceptance, so the
// DNS-01 TXT record stays in BIND; the certificate is deleted (nothing will retry and clean up), and
// the relaunched plugin's WAL rollback removes the record.
func TestWALRemovesLeftoverRecord(t *testing.T) {
	t.Parallel()
	devPluginMu.Lock()
	defer devPluginMu.Unlock()

	c := env.RootClient(t)
	proxy := env.NewPebbleProxy(t)
	id := Unique("walrec")
	domain := id + "." + env.Zone
	record := "_acme-challenge." + domain
	is := env.SetupProxiedIssuer(t, c, proxy, id, "default")

	hold, seen, release := Hold(http.MethodPost, "/chalZ/")
	defer release()
	proxy.SetFault(hold)
	w := MustDo(t, c, http.MethodPut, Mount+"/certs/"+id, map[string]any{"role": is.Role, "domains": domain, "wait": "0s"})
	require.Equal(t, http.StatusAccepted, w.Status, "write with wait=0: %s", w)
	waitChan(t, seen, 90*time.Second, "the challenge acceptance to reach the proxy")
	txt := digTXT(t, record)
	require.NotEmpty(t, txt, "the challenge record %s is in BIND while the acceptance is held", record)

	killed := killDevPlugin(t)
	killedAt := time.Now()
	t.Logf("plugin process %v killed with TXT %s = %v in BIND", killed, record, txt)
	release()
	proxy.SetFault(nil)

	// Delete the certificate (this request relaunches the plugin) so that no retry presents the
	// record again or cleans it up by itself.
	deleteUntilOK(t, c, Mount+"/certs/"+id, 60*time.Second)
	t.Logf("certificate deleted %s after the kill", time.Since(killedAt).Round(time.Second))

	// The WAL entry is older than 30 s after at most 30 s; Vault's rollback manager (every ~60 s)
	// hands it to the relaunched plugin, which removes the record.
	deadline := killedAt.Add(150 * time.Second)
	lastPoke := time.Now()
	for {
		txt = digTXT(t, record)
		if len(txt) == 0 {
			t.Logf("record %s removed %s after the kill", record, time.Since(killedAt).Round(time.Second))
			break
		}
		if time.Now().After(deadline) {
			require.FailNowf(t, "challenge record left behind", "%s still has TXT %v %s after the plugin was killed", record, txt, time.Since(killedAt).Round(time.Second))
		}
		if time.Since(lastPoke) > 10*time.Second {
			// A harmless request keeps the plugin running (Vault relaunches it lazily).
			MustDo(t, c, http.MethodGet, Mount+"/status/certs", nil)
			lastPoke = time.Now()
		}
		time.Sleep(2 * time.Second)
	}
	r := MustDo(t, c, http.MethodGet, Mount+"/certs/"+id, nil)
	assert.Equal(t, http.StatusNotFound, r.Status, "the certificate stays deleted: %s", r)
	assert.LessOrEqual(t, proxy.NewOrders(), 1, "the deleted certificate was not ordered again")
}

// ---------------------------------------------------------------------------------------------
// Helpers: the plugin process, BIND, waiting

// pluginPIDs returns the plugin processes that Vault process vaultPID runs from pluginDir (its
// direct children; the DNS helper processes, children of the plugin with the argument
// "dns-solver", are never among them).
func pluginPIDs(vaultPID int, pluginDir string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || !strings.HasPrefix(exe, pluginDir+string(os.PathSeparator)) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(cmdline, []byte("dns-solver")) {
			continue
		}
		if parentPID(pid) == vaultPID {
			pids = append(pids, pid)
		}
	}
	return pids
}

// parentPID reads PPid from /proc/<pid>/status (0 if gone).
func parentPID(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// killDevPlugin sends SIGKILL to the dev Vault's plugin process(es) and waits until they are gone.
func killDevPlugin(t testing.TB) []int {
	t.Helper()
	return killEnvPlugin(t, env)
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z'
	}
	return false
}

// digTXT asks the environment's BIND for the TXT records of name.
func digTXT(t testing.TB, name string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "dig", "@127.0.0.1", "-p", env.DNSPort, "TXT", name, "+short", "+time=2", "+tries=2").Output()
	require.NoError(t, err, "dig TXT %s", name)
	var recs []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			recs = append(recs, l)
		}
	}
	return recs
}

// waitChan waits for ch to close.
func waitChan(t testing.TB, ch <-chan struct{}, timeout time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(timeout):
		require.FailNowf(t, "timed out", "waiting %s for %s", timeout, what)
	}
}

// readUntilOK reads certs/<name> until it answers 200, whatever came before (503 while issuing,
// errors while Vault relaunches the plugin), up to timeout.
func readUntilOK(t testing.TB, c *vaultapi.Client, name string, timeout time.Duration) *Resp {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var seen []string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		r, err := Do(ctx, c, http.MethodGet, Mount+"/certs/"+name, nil)
		cancel()
		if err == nil && r.Status == http.StatusOK {
			if len(seen) > 0 {
				t.Logf("read certs/%s: before 200: %s", name, strings.Join(seen, " | "))
			}
			return r
		}
		if err != nil {
			seen = append(seen, err.Error())
		} else {
			seen = append(seen, fmt.Sprintf("%d %s", r.Status, r.ErrorText()))
		}
		require.Truef(t, time.Now().Before(deadline), "certs/%s not readable within %s: %s", name, timeout, strings.Join(seen, " | "))
		time.Sleep(time.Second)
	}
}

// deleteUntilOK deletes path until Vault answers 2xx (the first request after a plugin crash may
// fail while Vault relaunches it).
func deleteUntilOK(t testing.TB, c *vaultapi.Client, path string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		r, err := Do(ctx, c, http.MethodDelete, path, nil)
		cancel()
		if err == nil && r.Status >= 200 && r.Status < 300 {
			return
		}
		msg := fmt.Sprint(err)
		if err == nil {
			msg = r.String()
		}
		require.Truef(t, time.Now().Before(deadline), "DELETE %s: %s", path, msg)
		t.Logf("DELETE %s: %s; retrying", path, msg)
		time.Sleep(time.Second)
	}
}
