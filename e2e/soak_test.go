package e2e

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Soak test ("never expire under faults"): several short-lived certificates renewed over and over
// for LE_SOAK_DURATION (default 30m) in an environment of the test's own, with a kill -9 of the
// plugin, the CA unreachable and the DNS server down on the way. Readers (the API every second and
// a consul-template file sampled every second) must never hold an expired certificate, and every
// order placed at the CA must end as a stored certificate.

const (
	// soakProfile is Pebble's 180-second profile (env-up.sh).
	soakProfile = "soak"
	// soakCerts is how many certificates are renewed side by side.
	soakCerts = 4
	// soakFaultLen is how long the CA and the DNS server stay away: under a third of a 180 s life.
	soakFaultLen = 50 * time.Second
	// soakDefaultDuration is the length of the run unless LE_SOAK_DURATION says otherwise.
	soakDefaultDuration = 30 * time.Minute
	// soakMinDuration is the shortest run that fits the faults with a recovery after each.
	soakMinDuration = 12 * time.Minute
	// soakRecovery is the least time between the end of one fault and the start of the next: the
	// renewals the fault held back are done, and every certificate again has more than a third of
	// its life left. Faults back to back would be one outage longer than a third of a 180 s life,
	// which no renewal schedule survives.
	soakRecovery = 2 * time.Minute
)

// soakSample is one read of certs/<name> through the API.
type soakSample struct {
	Start     time.Time // when the request was sent
	At        time.Time // when the answer arrived
	Name      string
	Status    int
	Err       string // transport error or the answer's error text when Status != 200
	Serial    string
	NotBefore time.Time
	NotAfter  time.Time // of the certificate PEM served, not the field
	IssuedAt  time.Time
	RenewAt   time.Time
	Renewals  int
	Attempts  int
	Expired   bool
}

// soakFileSample is one look at the file consul-template renders.
type soakFileSample struct {
	At       time.Time
	Serial   string
	NotAfter time.Time
	Err      string
	Expired  bool
}

// soakFault is one injected fault; End is when it was over (for the kill: when the plugin answered
// again).
type soakFault struct {
	Name       string
	Start, End time.Time
}

// soakCertVersion is one certificate stored for a name, as first seen by the API reader.
type soakCertVersion struct {
	Serial              string
	NotBefore, NotAfter time.Time
	IssuedAt            time.Time
	Renewals            int
	FirstSeen           time.Time
}

// TestSoakNeverExpired: see the top of this file. It runs its own environment (Vault, Pebble, BIND)
// so that killing its plugin and stopping its BIND disturb no other test.
func TestSoakNeverExpired(t *testing.T) {
	t.Parallel()
	duration := soakDefaultDuration
	if s := os.Getenv("LE_SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		require.NoError(t, err, "LE_SOAK_DURATION=%q", s)
		duration = d
	}
	require.GreaterOrEqual(t, duration, soakMinDuration, "LE_SOAK_DURATION: the three faults and the recoveries between them need at least %s", soakMinDuration)
	require.NotNil(t, env, "the e2e environment is not running (LE_E2E_UNIT_ONLY=1 runs only the tests that need none)")

	// Our own environment, under the suite's state directory (kept with it when the suite fails).
	stateDir := filepath.Join(env.StateDir, Unique("soak"))
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(stateDir)
		}
		if err := StopEnv(stateDir); err != nil {
			t.Logf("env-down %s: %v", stateDir, err)
		}
	})
	se, err := StartEnv(stateDir)
	require.NoError(t, err, "start the soak environment")
	t.Logf("soak environment in %s: Vault %s, Pebble %s, BIND %s; duration %s", stateDir, se.VaultAddr, se.PebbleDirectory, se.DNSAddr, duration)

	c := se.RootClient(t)
	proxy := se.NewPebbleProxy(t)
	id := "soak"
	is := se.SetupProxiedIssuer(t, c, proxy, id, soakProfile)
	names := make([]string, soakCerts)
	for i := range names {
		names[i] = fmt.Sprintf("%s/c%d", id, i+1)
		first := IssueCert(t, c, names[i], map[string]any{"role": is.Role, "domains": fmt.Sprintf("c%d.%s.%s", i+1, id, se.Zone)}, 2*time.Minute)
		life := first.Leaf.NotAfter.Sub(first.Leaf.NotBefore)
		require.InDelta(t, 180, life.Seconds(), 2, "Pebble profile %q", soakProfile)
	}

	ct := startConsulTemplateAt(t, se.VaultAddr, readToken(t, c, names[0]),
		fmt.Sprintf(`{{ with secret "%s/certs/%s" }}{{ .Data.certificate }}{{ end }}`, Mount, names[0]))
	{
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		for ct.renderedSerial() == "" && ctx.Err() == nil {
			time.Sleep(200 * time.Millisecond)
		}
		cancel()
		require.NotEmpty(t, ct.renderedSerial(), "consul-template rendered %s into %s within 60 s", names[0], ct.Dest)
	}

	// Readers.
	var (
		mu          sync.Mutex
		apiSamples  []soakSample
		fileSamples []soakFileSample
	)
	ctx, stopReaders := context.WithCancel(context.Background())
	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			for _, name := range names {
				s := soakRead(ctx, c, name)
				if ctx.Err() != nil {
					return
				}
				mu.Lock()
				apiSamples = append(apiSamples, s)
				mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	go func() {
		defer readers.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			s := soakReadFile(ct.Dest)
			mu.Lock()
			fileSamples = append(fileSamples, s)
			mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	defer stopReaders()

	// Faults, at the same fractions of the run whatever its length (9, 15 and 20 min of 30), each
	// at least soakRecovery after the end of the one before.
	t0 := time.Now()
	var lastFaultEnd time.Time
	at := func(frac float64) time.Time {
		tm := t0.Add(time.Duration(frac * float64(duration)))
		if !lastFaultEnd.IsZero() && tm.Before(lastFaultEnd.Add(soakRecovery)) {
			tm = lastFaultEnd.Add(soakRecovery)
		}
		return tm
	}
	sleepUntil := func(tm time.Time) { time.Sleep(time.Until(tm)) }
	var faults []soakFault

	sleepUntil(at(9.0 / 30))
	killStart := time.Now()
	pids := killEnvPlugin(t, se)
	// The readers relaunch the plugin; the fault is over at the first good read sent after the
	// plugin was gone.
	killEnd := waitFirstOK(&mu, &apiSamples, time.Now(), 2*time.Minute)
	t.Logf("fault kill -9: plugin %v killed at %s, answering again at %s", pids, killStart.Format(time.RFC3339), killEnd.Format(time.RFC3339))
	faults = append(faults, soakFault{Name: "kill -9 plugin", Start: killStart, End: killEnd})
	lastFaultEnd = killEnd

	sleepUntil(at(15.0 / 30))
	caStart := time.Now()
	proxy.SetFault(Unreachable())
	time.Sleep(soakFaultLen)
	proxy.SetFault(nil)
	caEnd := time.Now()
	t.Logf("fault CA unreachable: %s to %s", caStart.Format(time.RFC3339), caEnd.Format(time.RFC3339))
	faults = append(faults, soakFault{Name: "CA unreachable", Start: caStart, End: caEnd})
	lastFaultEnd = caEnd

	sleepUntil(at(20.0 / 30))
	dnsStart := time.Now()
	stopNamed(t, se)
	time.Sleep(soakFaultLen - time.Since(dnsStart))
	startNamed(t, se)
	dnsEnd := time.Now()
	t.Logf("fault DNS down: %s to %s", dnsStart.Format(time.RFC3339), dnsEnd.Format(time.RFC3339))
	faults = append(faults, soakFault{Name: "DNS down", Start: dnsStart, End: dnsEnd})
	require.False(t, dnsEnd.Add(soakRecovery).After(t0.Add(duration)), "the run ends %s after the last fault (LE_SOAK_DURATION=%s): too short to see the recovery",
		t0.Add(duration).Sub(dnsEnd).Round(time.Second), duration)

	sleepUntil(t0.Add(duration))
	stopReaders()
	readers.Wait()
	end := time.Now()

	// Orders against stored certificates: an order still under way at the end is given a minute
	// to be stored.
	finalRenewals := map[string]int{}
	finalIssued := map[string]time.Time{}
	stored, orders := 0, 0
	deadline := time.Now().Add(90 * time.Second)
	for {
		stored = 0
		for _, name := range names {
			r := readUntilOK(t, c, name, time.Minute)
			finalRenewals[name] = intField(r.Data, "renewals")
			finalIssued[name] = soakTime(r.Data["issued_at"])
			stored += 1 + finalRenewals[name]
		}
		orders = proxy.NewOrders()
		if orders == stored || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}

	// Analysis.
	mu.Lock()
	api := append([]soakSample(nil), apiSamples...)
	files := append([]soakFileSample(nil), fileSamples...)
	mu.Unlock()

	apiExpired, apiOK := 0, 0
	var apiErrors []string
	errorsByKind := map[string]int{}
	maxGap := map[string]time.Duration{}
	lastOK := map[string]time.Time{}
	for _, s := range api {
		if s.Status != http.StatusOK {
			apiErrors = append(apiErrors, fmt.Sprintf("%s %s: %d %s", s.At.Format("15:04:05.000"), s.Name, s.Status, strings.Join(strings.Fields(s.Err), " ")))
			errorsByKind[soakErrorKind(s)]++
			continue
		}
		apiOK++
		if s.Expired {
			apiExpired++
			t.Errorf("API read at %s of %s served certificate %s, expired at %s", s.At.Format(time.RFC3339Nano), s.Name, s.Serial, s.NotAfter.Format(time.RFC3339))
		}
		if prev, ok := lastOK[s.Name]; ok && s.At.Sub(prev) > maxGap[s.Name] {
			maxGap[s.Name] = s.At.Sub(prev)
		}
		lastOK[s.Name] = s.At
	}
	fileExpired, fileOK, fileErr := 0, 0, 0
	fileSerials := map[string]bool{}
	for _, s := range files {
		switch {
		case s.Err != "":
			fileErr++
		case s.Expired:
			fileExpired++
			fileOK++
			t.Errorf("file sample at %s holds certificate %s, expired at %s", s.At.Format(time.RFC3339Nano), s.Serial, s.NotAfter.Format(time.RFC3339))
		default:
			fileOK++
		}
		if s.Serial != "" {
			fileSerials[s.Serial] = true
		}
	}

	// Certificates stored per name, and the remaining life of each predecessor at its replacement.
	versions := map[string][]soakCertVersion{}
	for _, s := range api {
		if s.Status != http.StatusOK {
			continue
		}
		vs := versions[s.Name]
		if len(vs) == 0 || vs[len(vs)-1].Serial != s.Serial {
			versions[s.Name] = append(vs, soakCertVersion{Serial: s.Serial, NotBefore: s.NotBefore, NotAfter: s.NotAfter,
				IssuedAt: s.IssuedAt, Renewals: s.Renewals, FirstSeen: s.At})
		}
	}
	minFrac, maxFrac := math.Inf(1), math.Inf(-1)
	var minFracAt, maxFracAt string
	observedRenewals, skipped := 0, 0
	for _, name := range names {
		vs := versions[name]
		for i := 1; i < len(vs); i++ {
			prev, cur := vs[i-1], vs[i]
			observedRenewals++
			if cur.Renewals != prev.Renewals+1 {
				skipped++
				t.Errorf("%s: renewals went from %d (%s) to %d (%s): a stored certificate was never seen", name, prev.Renewals, prev.Serial, cur.Renewals, cur.Serial)
			}
			replacedAt := cur.IssuedAt
			if replacedAt.IsZero() {
				replacedAt = cur.FirstSeen
			}
			frac := prev.NotAfter.Sub(replacedAt).Seconds() / prev.NotAfter.Sub(prev.NotBefore).Seconds()
			where := fmt.Sprintf("%s renewal %d at %s (%s replaced by %s)", name, cur.Renewals, replacedAt.Format(time.RFC3339), prev.Serial, cur.Serial)
			if frac < minFrac {
				minFrac, minFracAt = frac, where
			}
			if frac > maxFrac {
				maxFrac, maxFracAt = frac, where
			}
		}
	}
	totalRenewals := 0
	for _, name := range names {
		totalRenewals += finalRenewals[name]
	}
	// Renewals stored after the reader's last read of a name (the run ends on the reader's clock,
	// renewals go on) cannot have been seen; any other renewal the reader did not see is a miss.
	afterReaders := 0
	for _, name := range names {
		var last *soakSample
		for i := range api {
			if api[i].Name == name && api[i].Status == http.StatusOK {
				last = &api[i]
			}
		}
		if last == nil {
			continue
		}
		if late := finalRenewals[name] - last.Renewals; late > 0 {
			afterReaders += late
			assert.True(t, finalIssued[name].After(last.Start),
				"%s: %d renewal(s) after the reader's last read at %s, but the stored certificate was issued at %s, before it",
				name, late, last.Start.Format(time.RFC3339Nano), finalIssued[name].Format(time.RFC3339Nano))
		}
	}

	// For each fault: the certificates whose renewal was due (or failing) when the fault ended, and
	// how long after the end their renewal was stored.
	type faultFigure struct {
		delayed  []string
		maxDelay time.Duration
		orders   int
	}
	orderTimes := proxy.NewOrderTimes()
	figures := make([]faultFigure, len(faults))
	for fi, f := range faults {
		for _, ot := range orderTimes {
			if !ot.Before(f.Start) && ot.Before(f.End) {
				figures[fi].orders++
			}
		}
		for _, name := range names {
			var last *soakSample
			for i := range api {
				s := &api[i]
				if s.Name == name && s.Status == http.StatusOK && !s.At.After(f.End) {
					last = s
				}
			}
			if last == nil || (last.RenewAt.After(f.End) && last.Attempts == 0) {
				continue
			}
			var next *soakCertVersion
			for i, v := range versions[name] {
				if v.Serial == last.Serial && i+1 < len(versions[name]) {
					next = &versions[name][i+1]
				}
			}
			if next == nil {
				figures[fi].delayed = append(figures[fi].delayed, name+": not renewed by the end")
				continue
			}
			d := next.IssuedAt.Sub(f.End)
			figures[fi].delayed = append(figures[fi].delayed, fmt.Sprintf("%s: due %s, renewed %s after the end (%.0f%% life left)",
				name, last.RenewAt.Format("15:04:05"), d.Round(100*time.Millisecond),
				100*last.NotAfter.Sub(next.IssuedAt).Seconds()/last.NotAfter.Sub(last.NotBefore).Seconds()))
			if d > figures[fi].maxDelay {
				figures[fi].maxDelay = d
			}
		}
	}

	reasons, minAttemptFrac, failedAttempts := soakAttemptsFromLog(t, filepath.Join(stateDir, "vault.log"))

	// The summary block.
	var b strings.Builder
	fmt.Fprintf(&b, "\n===== SOAK SUMMARY (TestSoakNeverExpired) =====\n")
	fmt.Fprintf(&b, "run:                 %s (%s to %s), %d certificates of %s (180 s), state %s\n",
		end.Sub(t0).Round(time.Second), t0.Format(time.RFC3339), end.Format(time.RFC3339), soakCerts, soakProfile, stateDir)
	fmt.Fprintf(&b, "API reads:           %d (%d ok, %d errors), expired: %d\n", len(api), apiOK, len(apiErrors), apiExpired)
	gaps := make([]string, 0, len(names))
	for _, name := range names {
		gaps = append(gaps, fmt.Sprintf("%s %s", name, maxGap[name].Round(100*time.Millisecond)))
	}
	fmt.Fprintf(&b, "  longest gap between good reads: %s\n", strings.Join(gaps, ", "))
	if len(errorsByKind) > 0 {
		fmt.Fprintf(&b, "  errors by kind:    %v\n", errorsByKind)
	}
	fmt.Fprintf(&b, "file samples:        %d (%d with a certificate, %d without), expired: %d, distinct serials rendered: %d\n",
		len(files), fileOK, fileErr, fileExpired, len(fileSerials))
	fmt.Fprintf(&b, "orders at the CA:    %d\n", orders)
	fmt.Fprintf(&b, "certificates stored: %d (%d first issuances + %d renewals; %d renewals seen as serial changes, %d stored after the readers stopped)\n",
		stored, soakCerts, totalRenewals, observedRenewals, afterReaders)
	fmt.Fprintf(&b, "remaining life at replacement: smallest %.3f (%s)\n", minFrac, minFracAt)
	fmt.Fprintf(&b, "                               largest  %.3f (%s)\n", maxFrac, maxFracAt)
	for fi, f := range faults {
		fmt.Fprintf(&b, "fault %-16s %s to %s (%s), orders during it %d; longest delay from its end to a delayed renewal: %s\n",
			f.Name+":", f.Start.Format("15:04:05"), f.End.Format("15:04:05"), f.End.Sub(f.Start).Round(100*time.Millisecond),
			figures[fi].orders, figures[fi].maxDelay.Round(100*time.Millisecond))
		for _, d := range figures[fi].delayed {
			fmt.Fprintf(&b, "    %s\n", d)
		}
	}
	fmt.Fprintf(&b, "attempts (vault.log \"attempt starts\"), by reason:\n")
	reasonKeys := make([]string, 0, len(reasons))
	for k := range reasons {
		reasonKeys = append(reasonKeys, k)
	}
	sort.Strings(reasonKeys)
	for _, k := range reasonKeys {
		fmt.Fprintf(&b, "    %4d  %s\n", reasons[k], k)
	}
	fmt.Fprintf(&b, "  smallest life_left_fraction at an attempt start: %.3f; \"attempt failed\" lines: %d\n", minAttemptFrac, failedAttempts)
	fmt.Fprintf(&b, "===============================================\n")
	t.Log(b.String())
	if len(apiErrors) > 0 {
		shown := apiErrors
		if len(shown) > 30 {
			shown = shown[:30]
		}
		t.Logf("API read errors (first %d of %d):\n  %s", len(shown), len(apiErrors), strings.Join(shown, "\n  "))
	}

	// Assertions.
	assert.Zero(t, apiExpired, "API reads that served an expired certificate")
	assert.Zero(t, fileExpired, "file samples holding an expired certificate")
	assert.Positive(t, fileOK, "the consul-template file was sampled")
	assert.LessOrEqual(t, len(apiErrors), 20, "API read errors (a handful are expected right after the kill -9)")
	assert.Equal(t, stored, orders, "one order at the CA per stored certificate (first issuances + renewals)")
	assert.Equal(t, totalRenewals-afterReaders, observedRenewals, "every renewal stored while the reader ran was seen by it")
	assert.Zero(t, skipped)
	if observedRenewals > 0 {
		assert.Positive(t, minFrac, "a renewal stored after its predecessor expired")
		assert.LessOrEqual(t, maxFrac, 0.85, "a certificate replaced while its predecessor had more than 85%% of its life left")
	}
	// With a 180 s life and renewals between 1/3 and 2/3 of it, every certificate is renewed at
	// least once every two minutes.
	assert.GreaterOrEqual(t, totalRenewals, soakCerts*int(duration/(2*time.Minute))-soakCerts, "renewals over the run")
	assert.GreaterOrEqual(t, len(fileSerials), 2, "the consul-template file followed renewals")
}

// soakRead reads certs/<name> once.
func soakRead(ctx context.Context, c *vaultapi.Client, name string) soakSample {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	r, err := Do(rctx, c, http.MethodGet, Mount+"/certs/"+name, nil)
	s := soakSample{Start: start, At: time.Now(), Name: name}
	if err != nil {
		s.Err = err.Error()
		return s
	}
	s.Status = r.Status
	if r.Status != http.StatusOK {
		s.Err = r.ErrorText()
		return s
	}
	pemText, _ := r.Data["certificate"].(string)
	certs, err := ParseCertsPEM(pemText)
	if err != nil {
		s.Status, s.Err = 0, "parse certificate: "+err.Error()
		return s
	}
	leaf := certs[0]
	s.Serial = leaf.SerialNumber.Text(16)
	s.NotBefore, s.NotAfter = leaf.NotBefore, leaf.NotAfter
	s.Expired = !s.At.Before(leaf.NotAfter)
	s.IssuedAt = soakTime(r.Data["issued_at"])
	s.RenewAt = soakTime(r.Data["renew_at"])
	s.Renewals = intField(r.Data, "renewals")
	s.Attempts = intField(r.Data, "attempts")
	return s
}

func soakTime(v any) time.Time {
	s, _ := v.(string)
	ts, _ := time.Parse(time.RFC3339Nano, s)
	return ts
}

// soakReadFile looks at the certificate in the file consul-template renders.
func soakReadFile(path string) soakFileSample {
	s := soakFileSample{At: time.Now()}
	b, err := os.ReadFile(path)
	if err != nil {
		s.Err = err.Error()
		return s
	}
	certs, err := ParseCertsPEM(string(b))
	if err != nil {
		s.Err = err.Error()
		return s
	}
	s.Serial = certs[0].SerialNumber.Text(16)
	s.NotAfter = certs[0].NotAfter
	s.Expired = !time.Now().Before(certs[0].NotAfter)
	return s
}

// soakErrorKind groups failed reads for the summary.
func soakErrorKind(s soakSample) string {
	msg := strings.Join(strings.Fields(s.Err), " ")
	if len(msg) > 60 {
		msg = msg[:60]
	}
	if s.Status == 0 {
		return "transport: " + msg
	}
	return fmt.Sprintf("HTTP %d: %s", s.Status, msg)
}

// waitFirstOK waits for the first good read sent after since and returns when it was answered.
func waitFirstOK(mu *sync.Mutex, samples *[]soakSample, since time.Time, timeout time.Duration) time.Time {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		mu.Lock()
		for _, s := range *samples {
			if s.Status == http.StatusOK && s.Start.After(since) {
				mu.Unlock()
				return s.At
			}
		}
		mu.Unlock()
		time.Sleep(200 * time.Millisecond)
	}
	return time.Now()
}

var (
	soakReasonRe = regexp.MustCompile(`reason=("(?:[^"\\]|\\.)*"|\S+)`)
	soakFracRe   = regexp.MustCompile(`life_left_fraction=\"?([0-9.]+)`)
)

// soakAttemptsFromLog counts the plugin's "attempt starts" lines in vault.log by reason, and
// returns the smallest life_left_fraction they report and the number of "attempt failed" lines.
func soakAttemptsFromLog(t testing.TB, path string) (map[string]int, float64, int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Logf("read %s: %v", path, err)
		return nil, math.NaN(), 0
	}
	reasons := map[string]int{}
	minFrac := math.Inf(1)
	failed := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "attempt failed") {
			failed++
		}
		if !strings.Contains(line, "attempt starts") {
			continue
		}
		reason := "?"
		if m := soakReasonRe.FindStringSubmatch(line); m != nil {
			reason = m[1]
			if uq, err := strconv.Unquote(reason); err == nil {
				reason = uq
			}
		}
		reasons[reason]++
		if m := soakFracRe.FindStringSubmatch(line); m != nil {
			if f, err := strconv.ParseFloat(m[1], 64); err == nil && f < minFrac {
				minFrac = f
			}
		}
	}
	return reasons, minFrac, failed
}

// ---------------------------------------------------------------------------------------------
// Faults in a test's own environment

// killEnvPlugin sends SIGKILL to the plugin process(es) of e's Vault and waits until they are gone.
func killEnvPlugin(t testing.TB, e *Env) []int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.StateDir, "vault.pid"))
	require.NoError(t, err)
	vaultPID, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	pids := pluginPIDs(vaultPID, filepath.Join(e.StateDir, "plugins"))
	require.NotEmpty(t, pids, "no plugin process of the Vault in %s found", e.StateDir)
	for _, pid := range pids {
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL), "kill -9 %d", pid)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for syscall.Kill(pid, 0) == nil && parentPID(pid) != 0 && !isZombie(pid) {
			require.True(t, time.Now().Before(deadline), "plugin process %d survived SIGKILL", pid)
			time.Sleep(50 * time.Millisecond)
		}
	}
	return pids
}

// namedBin is BIND's named (Debian keeps it in /usr/sbin).
func namedBin(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("named"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/named", "/sbin/named"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	require.FailNow(t, "named not found: run `bash scripts/tools.sh e2e` (apt-get install bind9)")
	return ""
}

// dnsAnswers reports whether e's BIND answers the SOA query of its zone.
func dnsAnswers(e *Env) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "dig", "+time=1", "+tries=1", "+short", "@127.0.0.1", "-p", e.DNSPort, e.Zone, "SOA").Output()
	return err == nil && strings.Contains(string(out), "ns."+e.Zone)
}

// stopNamed stops e's BIND (SIGTERM, SIGKILL after 10 s) and checks that it no longer answers.
func stopNamed(t testing.TB, e *Env) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.StateDir, "named.pid"))
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGTERM), "stop named %d", pid)
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil && !isZombie(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			time.Sleep(200 * time.Millisecond)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.False(t, dnsAnswers(e), "BIND at %s still answers after it was stopped", e.DNSAddr)
}

// startNamed starts e's BIND again the way env-up.sh does (same configuration, zone, journal and
// port; output appended to named.log, pid in named.pid so env-down.sh stops it) and waits until
// it answers.
func startNamed(t testing.TB, e *Env) {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(e.StateDir, "named.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	require.NoError(t, err)
	fmt.Fprintf(logf, "---- restart %s ----\n", time.Now().UTC().Format(time.RFC3339))
	cmd := exec.Command(namedBin(t), "-g", "-c", filepath.Join(e.StateDir, "named.conf"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	require.NoError(t, cmd.Start(), "start named")
	go func() { _ = cmd.Wait(); _ = logf.Close() }()
	require.NoError(t, os.WriteFile(filepath.Join(e.StateDir, "named.pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644))
	deadline := time.Now().Add(30 * time.Second)
	for !dnsAnswers(e) {
		require.True(t, time.Now().Before(deadline), "BIND at %s did not answer within 30 s of its restart (see %s/named.log)", e.DNSAddr, e.StateDir)
		time.Sleep(200 * time.Millisecond)
	}
}
