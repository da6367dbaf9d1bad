package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pluginName is the name env-up.sh registers the plugin under (and its file in STATE_DIR/plugins).
const pluginName = "vault-plugin-secrets-letsencrypt"

// TestHAOnlyActiveRenews runs the plugin on a real 3-node Vault cluster (raft) and renews three
// short-lived (300 s) certificates for several minutes, with a step-down of the active node half
// way. Certificates are read through every node in turn (standbys forward to the active node).
// It checks that no certificate ever expires, that each renewal is one order at the CA (no
// duplicate orders across nodes or across the step-down), and that renewals go on on the new active
// node. Which node stored each certificate is read from the nodes' Vault logs.
func TestHAOnlyActiveRenews(t *testing.T) {
	t.Parallel()
	const (
		minRun     = 4*time.Minute + 30*time.Second // after the first certificates
		maxRun     = 6*time.Minute + 30*time.Second
		stepDownAt = 2 * time.Minute
		poll       = 3 * time.Second
	)
	cl := startHACluster(t, 3)
	first := cl.waitActive(t, time.Minute, nil)
	c := cl.client(t, first)
	t.Logf("active node: %s", first.Name)

	// Register the plugin (sha256 and version, as env-up.sh does for the dev server) and mount it.
	MustWrite(t, c, "sys/plugins/catalog/secret/"+pluginName, map[string]any{
		"sha256": env.PluginSHA256, "command": pluginName, "version": env.PluginVersion,
	})
	MustWrite(t, c, "sys/mounts/"+Mount, map[string]any{"type": pluginName, "plugin_version": env.PluginVersion})

	proxy := env.NewPebbleProxy(t)
	id := Unique("ha")
	is := cl.nodeEnv(first).SetupProxiedIssuer(t, c, proxy, id, "shortlived")
	names := []string{id + "/a", id + "/b", id + "/c"}
	type track struct {
		serials  []string
		notAfter time.Time
		lastRead time.Time
	}
	certs := map[string]*track{}
	for _, n := range names {
		domain := strings.TrimPrefix(n, id+"/") + "." + id + "." + env.Zone
		cert := IssueCert(t, c, n, map[string]any{"role": is.Role, "domains": domain}, 2*time.Minute)
		certs[n] = &track{serials: []string{cert.SerialNumber}, notAfter: cert.Leaf.NotAfter, lastRead: time.Now()}
		t.Logf("%s issued on %s: serial %s, valid until %s", n, first.Name, cert.SerialNumber, cert.Leaf.NotAfter.Format(time.TimeOnly))
	}
	start := time.Now()
	elapsed := func() string { return time.Since(start).Round(time.Second).String() }

	var (
		steppedDown   bool
		stepDownTime  time.Time
		newActive     *haNode
		readErrors    int
		afterStepDown int // renewals first seen after the new active took over
	)
	for i := 0; ; i++ {
		now := time.Now()
		if !steppedDown && now.Sub(start) >= stepDownAt {
			old := cl.waitActive(t, time.Minute, nil)
			t.Logf("+%s step-down of the active node %s", elapsed(), old.Name)
			cl.cli(t, old, "operator", "step-down")
			stepDownTime = time.Now()
			newActive = cl.waitActive(t, 90*time.Second, old)
			t.Logf("+%s sys/leader: %s is active now (%s after the step-down)", elapsed(), newActive.Name, time.Since(stepDownTime).Round(time.Millisecond))
			steppedDown = true
		}
		if now.Sub(start) >= maxRun || (now.Sub(start) >= minRun && afterStepDown > 0) {
			break
		}

		act := cl.active()
		for j, name := range names {
			tr := certs[name]
			via := cl.Nodes[(i+j)%len(cl.Nodes)] // standbys forward to the active node
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			r, err := via.do(ctx, cl.RootToken, http.MethodGet, Mount+"/certs/"+name, nil)
			cancel()
			if err != nil || r.Status != http.StatusOK {
				readErrors++
				msg := fmt.Sprint(err)
				if err == nil {
					msg = r.String()
				}
				t.Logf("+%s read %s via %s failed (active %s): %s", elapsed(), name, via.Name, nodeName(act), msg)
				require.Less(t, time.Since(tr.lastRead), 90*time.Second, "%s not readable for 90 s", name)
				continue
			}
			cert, err := ParseCert(r.Data)
			require.NoError(t, err, "%s via %s", name, via.Name)
			require.Truef(t, time.Now().Before(cert.Leaf.NotAfter), "%s: served certificate %s expired at %s", name, cert.SerialNumber, cert.Leaf.NotAfter)
			tr.lastRead = time.Now()
			if cert.SerialNumber != tr.serials[len(tr.serials)-1] {
				tr.serials = append(tr.serials, cert.SerialNumber)
				gap := cert.Leaf.NotBefore.Sub(tr.notAfter)
				tr.notAfter = cert.Leaf.NotAfter
				t.Logf("+%s %s renewed (#%d, renewals=%v): serial %s valid until %s, seen via %s, active %s; overlap with the previous one %s",
					elapsed(), name, len(tr.serials)-1, r.Data["renewals"], cert.SerialNumber, cert.Leaf.NotAfter.Format(time.TimeOnly),
					via.Name, nodeName(act), (-gap).Round(time.Second))
				require.LessOrEqual(t, gap, time.Duration(0), "%s: renewed only after the previous certificate expired", name)
				if steppedDown && act == newActive {
					afterStepDown++
				}
			}
		}
		time.Sleep(poll)
	}
	t.Logf("+%s observation over: %d failed reads (expected only around the step-down)", elapsed(), readErrors)

	// Final checks through the active node.
	act := cl.waitActive(t, time.Minute, nil)
	ca := cl.client(t, act)
	total, distinct := 0, 0
	deadline := time.Now().Add(30 * time.Second)
	for {
		total, distinct = 0, 0
		for _, name := range names {
			r := readCertOK(t, ca, name)
			total += 1 + intField(r.Data, "renewals")
			tr := certs[name]
			if s := fmt.Sprint(r.Data["serial_number"]); s != tr.serials[len(tr.serials)-1] {
				tr.serials = append(tr.serials, s)
			}
			distinct += len(tr.serials)
		}
		if proxy.NewOrders() == total || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second) // an order may be in flight
	}
	t.Logf("orders created at the CA: %d; certificates stored (1 + renewals): %d; distinct serials seen: %d", proxy.NewOrders(), total, distinct)
	assert.Equal(t, total, proxy.NewOrders(), "one order per stored certificate: no duplicate orders")
	assert.LessOrEqual(t, distinct, total)
	for _, name := range names {
		assert.GreaterOrEqual(t, len(certs[name].serials), 2, "%s was renewed at least once", name)
	}
	assert.Greater(t, afterStepDown, 0, "renewals continued on the new active node %s after the step-down", nodeName(newActive))

	// Who stored what, from the Vault logs: only the node active at the time.
	stored := map[string][]time.Time{}
	for _, n := range cl.Nodes {
		stored[n.Name] = storedInLog(t, n.Log, id+"/")
		t.Logf("%s stored %d certificates of %s/*", n.Name, len(stored[n.Name]), id)
	}
	for _, n := range cl.Nodes {
		for _, at := range stored[n.Name] {
			switch {
			case n == first:
				assert.Truef(t, at.Before(stepDownTime.Add(time.Second)), "%s stored a certificate at %s, after its step-down at %s", n.Name, at.Format(time.TimeOnly), stepDownTime.Format(time.TimeOnly))
			case n == newActive:
				assert.Truef(t, at.After(stepDownTime), "%s stored a certificate at %s, before it became active", n.Name, at.Format(time.TimeOnly))
			default:
				assert.Failf(t, "a standby renewed", "%s was never active but stored a certificate at %s", n.Name, at.Format(time.TimeOnly))
			}
		}
	}
	assert.NotEmpty(t, stored[newActive.Name], "the new active node %s stored renewals (see its log)", newActive.Name)
	assert.Equal(t, total, len(stored[first.Name])+len(stored[newActive.Name]), "every stored certificate is in the active nodes' logs")
}

func nodeName(n *haNode) string {
	if n == nil {
		return "none"
	}
	return n.Name
}

var storedLine = regexp.MustCompile(`^(\S+) \[INFO\].*certificate stored:.* cert=(\S+)`)

// storedInLog returns when the plugin logged "certificate stored" for a certificate under prefix
// in a Vault server log.
func storedInLog(t testing.TB, logFile, prefix string) []time.Time {
	t.Helper()
	b, err := os.ReadFile(logFile)
	require.NoError(t, err)
	var out []time.Time
	for _, line := range strings.Split(string(b), "\n") {
		m := storedLine.FindStringSubmatch(line)
		if m == nil || !strings.HasPrefix(m[2], prefix) {
			continue
		}
		ts, err := time.Parse(time.RFC3339Nano, m[1])
		require.NoError(t, err, "log line %q", line)
		out = append(out, ts)
	}
	return out
}
