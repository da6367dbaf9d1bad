package e2e

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUpgradeKeepsCertificatesAndSchedules installs the plugin the way an operator does, from the
// release artifacts: `make dist` builds v0.1.0 and v0.2.0 for this host, SHA256SUMS is checked, the
// binaries go into the plugin_directory of a Vault server of the test's own (raft storage, started
// from a configuration file like a production node), and every vault command is the line make dist
// printed, run as printed. Three certificates are issued under v0.1.0 (two 90-day, one 300-second),
// then the mount is upgraded to v0.2.0 (register, secrets tune, plugin reload), reloaded again
// without a version change (the cluster-wide form make dist prints), left to renew the short one
// under v0.2.0, and downgraded back to v0.1.0. At each step: `vault secrets list -detailed` names the
// running version and sha256, the plugin process runs that version's file, every certificate keeps
// its serial and renew_at, status/certs still schedules all three, and the CA saw no new order
// (the 300-second one renews once, after its renew_at, under v0.2.0). The CA hides ARI so renew_at
// is the plugin's own plan and cannot move between two reads.
func TestUpgradeKeepsCertificatesAndSchedules(t *testing.T) {
	t.Parallel()
	platform := "linux/" + runtime.GOARCH
	started := time.Now()
	v1 := makeDist(t, "v0.1.0", platform)
	v2 := makeDist(t, "v0.2.0", platform)
	t.Logf("make dist for %s: v0.1.0 in %s, v0.2.0 in %s (binary %.1f MB)", platform,
		v1.Took.Round(time.Second), v2.Took.Round(time.Second), float64(v1.Size)/1e6)
	require.NotEqual(t, v1.SHA256, v2.SHA256, "the version is stamped into the binary")

	// The operator's install: v0.1.0 unzipped into the plugin directory, v0.2.0 copied as built.
	pluginDir := t.TempDir()
	v1.unzipInto(t, pluginDir)
	v2.copyInto(t, pluginDir)

	cl := startVaultCluster(t, 1, pluginDir)
	node := cl.Nodes[0]
	c := cl.client(t, node)
	vault := func(line []string) string {
		t.Helper()
		t.Logf("$ vault %s", strings.Join(line, " "))
		return cl.cli(t, node, line...)
	}

	vault(v1.registerLine(t))
	vault(v1.printed(t, "vault secrets enable "))
	firstPID := checkRunning(t, cl, node, v1)

	proxy := env.NewPebbleProxy(t)
	dirPath := "/dir"
	if u, err := url.Parse(env.PebbleDirectory); err == nil {
		dirPath = u.Path
	}
	proxy.SetAnswerHook(func(resp *http.Response) { HideRenewalInfo(resp, dirPath) })
	e := cl.nodeEnv(node)
	id := Unique("upgrade")
	long := e.SetupProxiedIssuer(t, c, proxy, id, DefaultProfile)
	short := e.SetupProxiedIssuer(t, c, proxy, id+"-s", ShortlivedProfile)
	names := map[string]Issuer{id + "/a": long, id + "/b": long, id + "-s": short}
	shortName := id + "-s"
	for name, is := range names {
		domain := name + "." + env.Zone // the short one: <id>-s.<zone>
		if sub, ok := strings.CutPrefix(name, id+"/"); ok {
			domain = sub + "." + id + "." + env.Zone
		}
		cert := IssueCert(t, c, name, map[string]any{"role": is.Role, "domains": domain}, 2*time.Minute)
		t.Logf("%s issued under v0.1.0: serial %s, not after %s", name, cert.SerialNumber, cert.Leaf.NotAfter.Format(time.TimeOnly))
	}
	issued := time.Now()
	plan := readPlans(t, c, names)
	require.Equal(t, 3, proxy.NewOrders(), "one order per certificate")
	shortLeaf := plan[shortName].Cert.Leaf
	require.InDelta(t, 300, shortLeaf.NotAfter.Sub(shortLeaf.NotBefore).Seconds(), 2, "profile %s", ShortlivedProfile)
	require.True(t, plan[shortName].RenewAt.After(time.Now().Add(60*time.Second)),
		"renew_at of %s (%s) leaves time for the upgrade steps", shortName, plan[shortName].RenewAt.Format(time.TimeOnly))
	unchanged := func(step string) time.Duration {
		t.Helper()
		return keptPlans(t, c, names, plan, proxy, 3, step)
	}

	// Upgrade: register v0.2.0 beside v0.1.0, tune the mount to it, reload the mount.
	vault(v2.registerLine(t))
	step := time.Now()
	vault(v2.printed(t, "vault secrets tune "))
	vault(v2.printed(t, "vault write sys/plugins/reload/backend ")) // this mount only
	reloadTook := time.Since(step)
	upgradedPID := checkRunning(t, cl, node, v2)
	assert.NotEqual(t, firstPID, upgradedPID, "the upgrade started a new plugin process")
	firstRound := unchanged("after the upgrade to v0.2.0")
	t.Logf("upgrade: tune + reload %s; first round of reads and status/certs on v0.2.0 %s; checked for 15 s (%s in all)",
		reloadTook.Round(time.Millisecond), firstRound.Round(time.Millisecond), time.Since(step).Round(time.Millisecond))

	// A reload without a version change, in the cluster-wide form.
	step = time.Now()
	out := vault(v2.printed(t, "vault plugin reload -scope=global "))
	require.Contains(t, out, "Success!")
	reloadedPID := checkRunning(t, cl, node, v2)
	assert.NotEqual(t, upgradedPID, reloadedPID, "the reload started a new plugin process")
	firstRound = unchanged("after a reload without a version change")
	t.Logf("reload without a version change: new plugin process (pid %d, was %d); first round of reads %s; checked for 15 s (%s in all)",
		reloadedPID, upgradedPID, firstRound.Round(time.Millisecond), time.Since(step).Round(time.Millisecond))

	// The short-lived certificate renews under v0.2.0 at its plan.
	renewAt := plan[shortName].RenewAt
	renewed := waitCertField(t, c, shortName, time.Until(shortLeaf.NotAfter), "renewal under v0.2.0", func(r *Resp) bool {
		return normSerial(fmt.Sprint(r.Data["serial_number"])) != normSerial(plan[shortName].Serial)
	})
	orders := proxy.NewOrderTimes()
	require.Len(t, orders, 4, "one new order: the renewal")
	assert.False(t, orders[3].Before(renewAt.Add(-3*time.Second)), "renewal ordered at %s, before renew_at %s", orders[3].Format(time.TimeOnly), renewAt.Format(time.TimeOnly))
	assert.True(t, orders[3].Before(shortLeaf.NotAfter), "renewal ordered before the old certificate expired")
	assert.Equal(t, 1, intField(renewed.Data, "renewals"))
	checkRunning(t, cl, node, v2)
	t.Logf("%s renewed under v0.2.0: order at %s (renew_at %s, %s after issuance), new serial %v",
		shortName, orders[3].Format(time.TimeOnly), renewAt.Format(time.TimeOnly), orders[3].Sub(issued).Round(time.Second), renewed.Data["serial_number"])
	plan = readPlans(t, c, names)

	// Downgrade: v0.1.0 is still registered; tune back and reload.
	step = time.Now()
	vault(v1.printed(t, "vault secrets tune "))
	vault(v1.printed(t, "vault plugin reload -type=secret ")) // every mount of the plugin on the node
	reloadTook = time.Since(step)
	checkRunning(t, cl, node, v1)
	firstRound = keptPlans(t, c, names, plan, proxy, 4, "after the downgrade to v0.1.0")
	t.Logf("downgrade: tune + reload %s; first round of reads and status/certs on v0.1.0 %s; checked for 15 s; whole test %s",
		reloadTook.Round(time.Millisecond), firstRound.Round(time.Millisecond), time.Since(started).Round(time.Second))
}

// ---------------------------------------------------------------------------------------------
// make dist

// distBuild is one `make dist` run for one platform.
type distBuild struct {
	Version, Platform, Dir string
	Binary                 string // file name of the binary in Dir
	SHA256                 string // of the binary
	Size                   int64
	Out                    string // what make dist printed on stdout
	Took                   time.Duration
}

// makeDist runs `make dist` for version and platform into a new directory, checks its SHA256SUMS
// with sha256sum -c, and returns the build.
func makeDist(t *testing.T, version, platform string) *distBuild {
	t.Helper()
	d := &distBuild{Version: version, Platform: platform, Dir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "-C", RepoRoot(), "--no-print-directory", "dist",
		"VERSION="+version, "PLATFORMS="+platform, "DIST_DIR="+d.Dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	d.Took = time.Since(start)
	require.NoError(t, err, "make dist VERSION=%s PLATFORMS=%s (install what it needs: bash scripts/tools.sh dist)\n%s\n%s", version, platform, stderr.String(), stdout.String())
	d.Out = stdout.String()

	d.Binary = fmt.Sprintf("vault-plugin-secrets-letsencrypt_%s_%s", version, strings.ReplaceAll(platform, "/", "_"))
	b, err := os.ReadFile(filepath.Join(d.Dir, d.Binary))
	require.NoError(t, err, "make dist made no %s:\n%s", d.Binary, d.Out)
	sum := sha256.Sum256(b)
	d.SHA256, d.Size = hex.EncodeToString(sum[:]), int64(len(b))

	check := exec.CommandContext(ctx, "sha256sum", "-c", "SHA256SUMS")
	check.Dir = d.Dir
	out, err := check.CombinedOutput()
	require.NoError(t, err, "sha256sum -c SHA256SUMS in %s:\n%s", d.Dir, out)
	sums, err := os.ReadFile(filepath.Join(d.Dir, "SHA256SUMS"))
	require.NoError(t, err)
	assert.Contains(t, string(sums), d.SHA256+"  "+d.Binary+"\n", "SHA256SUMS lists the binary")
	assert.Contains(t, string(sums), "  "+d.Binary+".zip\n", "SHA256SUMS lists the zip")
	assert.Contains(t, d.Out, "-sha256="+d.SHA256+" ", "the register line carries the binary's sha256")
	return d
}

// printed returns the command line make dist printed that starts with prefix (after indentation
// and, for register lines, the platform), without "vault" and without a trailing "# comment".
func (d *distBuild) printed(t testing.TB, prefix string) []string {
	t.Helper()
	var found []string
	for _, line := range strings.Split(d.Out, "\n") {
		line = strings.TrimSpace(line)
		line = strings.TrimSpace(strings.TrimPrefix(line, d.Platform+":"))
		if i := strings.Index(line, " #"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if strings.HasPrefix(line, prefix) {
			require.Nil(t, found, "make dist printed two lines starting %q:\n%s", prefix, d.Out)
			found = strings.Fields(line)[1:]
		}
	}
	require.NotNil(t, found, "make dist printed no line starting %q:\n%s", prefix, d.Out)
	return found
}

// registerLine is the printed `vault plugin register` line (d has one platform).
func (d *distBuild) registerLine(t testing.TB) []string {
	t.Helper()
	line := d.printed(t, "vault plugin register ")
	require.Contains(t, line, "-command="+d.Binary, "the command is the binary's file name in plugin_directory")
	require.Contains(t, line, "-version="+d.Version)
	return line
}

// unzipInto extracts d's zip into dir and checks that it holds exactly the binary.
func (d *distBuild) unzipInto(t testing.TB, dir string) {
	t.Helper()
	zr, err := zip.OpenReader(filepath.Join(d.Dir, d.Binary+".zip"))
	require.NoError(t, err)
	defer zr.Close()
	require.Len(t, zr.File, 1, "the zip holds the binary alone")
	f := zr.File[0]
	require.Equal(t, d.Binary, f.Name)
	r, err := f.Open()
	require.NoError(t, err)
	defer r.Close()
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	sum := sha256.Sum256(b)
	require.Equal(t, d.SHA256, hex.EncodeToString(sum[:]), "the zipped binary is the binary")
	require.NoError(t, os.WriteFile(filepath.Join(dir, d.Binary), b, 0o755))
}

// copyInto copies d's binary into dir under its own name.
func (d *distBuild) copyInto(t testing.TB, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.Dir, d.Binary))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, d.Binary), b, 0o755))
}

// ---------------------------------------------------------------------------------------------
// Checks

// checkRunning requires that `vault secrets list -detailed` shows the mount running d's version
// and sha256, and that the node's plugin process for it (there is one: the mount is read) runs d's
// file, and no other version's. It returns that process's pid.
func checkRunning(t *testing.T, cl *haCluster, node *haNode, d *distBuild) int {
	t.Helper()
	out := cl.cli(t, node, "secrets", "list", "-detailed", "-format=json")
	var mounts map[string]struct {
		Type                 string `json:"type"`
		PluginVersion        string `json:"plugin_version"`
		RunningPluginVersion string `json:"running_plugin_version"`
		RunningSha256        string `json:"running_sha256"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &mounts), "vault secrets list -detailed -format=json: %s", out)
	m, ok := mounts[Mount+"/"]
	require.True(t, ok, "no mount %s/ in %s", Mount, out)
	require.Equal(t, "vault-plugin-secrets-letsencrypt", m.Type)
	require.Equal(t, d.Version, m.PluginVersion, "the mount's pinned version")
	require.Equal(t, d.Version, m.RunningPluginVersion, "the mount's running version")
	require.Equal(t, d.SHA256, m.RunningSha256, "the mount's running sha256")

	MustDo(t, cl.client(t, node), http.MethodGet, Mount+"/status/certs", nil)
	want := filepath.Join(cl.PluginDir, d.Binary)
	var running int
	waitFor(t, 30*time.Second, "only the "+d.Version+" plugin process", func() (bool, string) {
		var exes []string
		for _, pid := range pluginPIDs(node.cmd.Process.Pid, cl.PluginDir) {
			if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && !isZombie(pid) {
				exes = append(exes, exe)
				running = pid
			}
		}
		return len(exes) == 1 && exes[0] == want, fmt.Sprintf("plugin processes run %v", exes)
	})
	return running
}

// readPlans reads every certificate of names (200 required).
func readPlans(t testing.TB, c *vaultapi.Client, names map[string]Issuer) map[string]certRead {
	t.Helper()
	out := map[string]certRead{}
	for name := range names {
		out[name] = readCertPlan(t, c, name)
	}
	return out
}

// keptPlans requires, for 15 s after a reload (the new plugin's first scheduler sweeps), that every
// certificate reads with the serial and renew_at of plan, that status/certs schedules all of them
// with none pending, failing or expiring, and that the CA has seen exactly orders new orders. It
// returns how long the first round of these checks took (the first reads meet the new plugin).
func keptPlans(t *testing.T, c *vaultapi.Client, names map[string]Issuer, plan map[string]certRead, proxy *ACMEProxy, orders int, step string) time.Duration {
	t.Helper()
	start := time.Now()
	until := start.Add(15 * time.Second)
	var first time.Duration
	for {
		for name := range names {
			r := readUntilOK(t, c, name, 60*time.Second) // the first read after a reload may meet the plugin starting
			cert, err := ParseCert(r.Data)
			require.NoError(t, err)
			require.Equal(t, plan[name].Serial, cert.Leaf.SerialNumber.Text(16), "%s: %s keeps its certificate", step, name)
			require.Equal(t, plan[name].RenewAt.UTC().Format(time.RFC3339Nano), timeField(t, r.Data, "renew_at").UTC().Format(time.RFC3339Nano),
				"%s: %s keeps its renew_at", step, name)
			require.Equal(t, "valid", r.Data["status"], "%s: %s", step, name)
		}
		s := MustDo(t, c, http.MethodGet, Mount+"/status/certs", nil)
		require.Equal(t, http.StatusOK, s.Status, "%s: status/certs: %s", step, s)
		counts, _ := s.Data["counts"].(map[string]any)
		require.EqualValues(t, len(names), counts["total"], "%s: status/certs schedules every certificate: %s", step, s)
		for _, k := range []string{"pending", "failing", "expiring"} {
			require.EqualValues(t, 0, counts[k], "%s: status/certs %s: %s", step, k, s)
		}
		require.Equal(t, orders, proxy.NewOrders(), "%s: no new order at the CA", step)
		if first == 0 {
			first = time.Since(start)
		}
		if time.Now().After(until) {
			return first
		}
		time.Sleep(time.Second)
	}
}
