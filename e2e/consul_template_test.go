package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestConsulTemplateFollowsRenewal runs a real consul-template (v0.41.1, scripts/tools.sh) that
// renders a 300-second certificate from letsencrypt/certs/<name> with a token that may only read
// it. consul-template re-reads a lease-less secret carrying rotation_period after its ttl (+1 s),
// and the plugin's ttl points at the next renewal (then every 3 s until it is stored), so the file
// must follow the plugin's own renewal within about 10 s.
func TestConsulTemplateFollowsRenewal(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock() // the plugin's timers must stay alive throughout (see faults_test.go)
	defer devPluginMu.RUnlock()
	c := env.RootClient(t)
	proxy := env.NewPebbleProxy(t)
	id := Unique("ctmpl")
	is, domain := setupShortlived(t, c, id, proxy)
	rec := recordACME(proxy)

	first := IssueCert(t, c, id, map[string]any{"role": is.Role, "domains": domain}, 2*time.Minute)
	firstSerial := first.Leaf.SerialNumber.Text(16)
	ct := startConsulTemplate(t, readToken(t, c, id),
		fmt.Sprintf(`{{ with secret "%s/certs/%s" }}{{ .Data.certificate }}{{ end }}`, Mount, id))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := ct.waitRendered(ctx, firstSerial)
	require.NoError(t, err, "consul-template renders the current certificate")
	b, err := os.ReadFile(ct.Dest)
	require.NoError(t, err)
	assert.Equal(t, strings.TrimSpace(fmt.Sprint(first.Data["certificate"])), strings.TrimSpace(string(b)), "the file holds the certificate as read")

	// The plugin renews on its own before the certificate expires.
	renewed := waitRenewed(t, c, id, firstSerial, time.Second, first.Leaf.NotAfter.Add(30*time.Second))
	firstID := ariCertID(t, first.Leaf)
	var checks []string
	for _, e := range rec.Events("ari") {
		if e.ARIID == firstID {
			checks = append(checks, e.At.Format(time.RFC3339Nano))
		}
	}
	t.Logf("renewed: %s stored at %s; the first read said renew_at %s, ttl %v; ARI checks of the old certificate at %v",
		renewed.Serial, renewed.IssuedAt.Format(time.RFC3339Nano), first.Data["renew_at"], first.Data["ttl"], checks)

	const lag = 10 * time.Second
	ctx2, cancel2 := context.WithDeadline(context.Background(), renewed.IssuedAt.Add(lag))
	defer cancel2()
	seen, err := ct.waitRendered(ctx2, renewed.Serial)
	if err != nil {
		// Say how late it is, to tell a slow reader from one that was told to come back too late.
		lateCtx, lateCancel := context.WithTimeout(context.Background(), 5*time.Minute)
		late, err2 := ct.waitRendered(lateCtx, renewed.Serial)
		lateCancel()
		if err2 == nil {
			err = fmt.Errorf("%w; it was re-rendered only %s after the renewal was stored", err, late.Sub(renewed.IssuedAt).Round(time.Millisecond))
		}
	}
	require.NoErrorf(t, err, "consul-template re-renders the renewed certificate within %s of the plugin storing it (at %s)", lag, renewed.IssuedAt.Format(time.RFC3339Nano))
	t.Logf("consul-template re-rendered %s after the renewal was stored", seen.Sub(renewed.IssuedAt).Round(time.Millisecond))
	b, err = os.ReadFile(ct.Dest)
	require.NoError(t, err)
	assert.Equal(t, strings.TrimSpace(fmt.Sprint(renewed.Cert.Data["certificate"])), strings.TrimSpace(string(b)), "the file holds the renewed certificate")
}
