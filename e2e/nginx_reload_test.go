package e2e

// The whole pipeline that dehydrated hooks or certbot's `service nginx reload` stand for today:
// the engine renews, consul-template re-renders the files and reloads nginx, and the next TLS
// handshake gets the new certificate. Configuration: e2e/testdata/consul-template/nginx.hcl and
// e2e/testdata/nginx/tls-server.conf, the files the README shows.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestNginxReloadOnTheWire: nginx on 127.0.0.1 serves a 180-second certificate from files that a
// real consul-template renders from certs/<name>, reloading nginx (`nginx -s reload`) after each
// change. A TLS handshake every 250 ms, verified against Pebble's root for the certificate's name,
// must see each of three natural renewals within 10 s of the API serving it, and no handshake may
// fail or see an expired certificate.
func TestNginxReloadOnTheWire(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock() // the plugin's timers must stay alive throughout (see faults_test.go)
	defer devPluginMu.RUnlock()

	c := env.RootClient(t)
	_, name, domain, _, first, life := issueSoakCert(t, c, "wire")
	firstSerial := first.Leaf.SerialNumber.Text(16)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root, err := env.PebbleRoot(ctx)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	roots.AddCert(root)

	// The first deployment writes the files once from a read (consul-template's first render runs
	// the reload command too, so nginx must be running by then), then starts nginx.
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	require.NoError(t, os.MkdirAll(tlsDir, 0o700))
	chain := ""
	for _, p := range first.Data["ca_chain"].([]any) {
		chain += strings.TrimSpace(fmt.Sprint(p)) + "\n"
	}
	require.NoError(t, os.WriteFile(filepath.Join(tlsDir, "www.pem"), []byte(strings.TrimSpace(fmt.Sprint(first.Data["certificate"]))+"\n"+chain), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(tlsDir, "www.key"), []byte(fmt.Sprint(first.Data["private_key"])), 0o600))

	tlsPort := freePort(t)
	n := startNginxWith(t, freePort(t), env.VaultAddr, Mount, testdataWith(t, "nginx/tls-server.conf",
		"127.0.0.1:8443", fmt.Sprintf("127.0.0.1:%d", tlsPort),
		"www.example.com", domain,
		"/etc/nginx/tls/", tlsDir+"/",
	))
	addr := fmt.Sprintf("127.0.0.1:%d", tlsPort)
	handshake := func() (*x509.Certificate, error) {
		d := &net.Dialer{Timeout: 3 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: roots, ServerName: domain, MinVersion: tls.VersionTLS12})
		if err != nil {
			return nil, fmt.Errorf("TLS handshake with nginx at %s for %s: %w", addr, domain, err)
		}
		defer conn.Close()
		peer := conn.ConnectionState().PeerCertificates
		if len(peer) == 0 {
			return nil, errors.New("nginx sent no certificate")
		}
		return peer[0], nil
	}
	leaf, err := handshake()
	require.NoError(t, err)
	require.Equal(t, firstSerial, leaf.SerialNumber.Text(16), "nginx serves the certificate written from the first read")

	// consul-template with the README's configuration; its reload command is this nginx's.
	quoted := make([]string, 0, 8)
	for _, a := range n.SignalArgs("reload") {
		quoted = append(quoted, fmt.Sprintf("%q", a))
	}
	bin := consulTemplateBin(t)
	cfg := filepath.Join(dir, "consul-template.hcl")
	require.NoError(t, os.WriteFile(cfg, []byte(testdataWith(t, "consul-template/nginx.hcl",
		"http://127.0.0.1:8200", env.VaultAddr,
		"letsencrypt/certs/web/www", Mount+"/certs/"+name,
		"/etc/nginx/tls/", tlsDir+"/",
		`["nginx", "-s", "reload"]`, "["+strings.Join(quoted, ", ")+"]",
	)), 0o600))
	ctLog := filepath.Join(dir, "consul-template.log")
	ctExited := runConsulTemplate(t, bin, cfg, dir, ctLog, "VAULT_TOKEN="+createReadToken(t, c, name, true))
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(ctLog)
		if strings.Contains(string(b), "(runner) all templates rendered") {
			break
		}
		select {
		case <-ctExited:
			require.FailNowf(t, "consul-template exited", "%s", tailFile(ctLog, 40))
		default:
		}
		require.Truef(t, time.Now().Before(deadline), "consul-template did not render within 30 s:\n%s", tailFile(ctLog, 40))
		time.Sleep(100 * time.Millisecond)
	}
	reloadsBefore := strings.Count(readText(t, ctLog), "executing command")

	probe := func() (*x509.Certificate, error) {
		select {
		case <-ctExited:
			return nil, fmt.Errorf("consul-template exited:\n%s", tailFile(ctLog, 30))
		default:
		}
		return handshake()
	}
	start := time.Now()
	rep := followRenewals(t, c, name, firstSerial, consumerRenewals, 250*time.Millisecond, consumerBound,
		time.Now().Add(consumerRenewals*life*2/3+time.Minute), probe)
	reloads := strings.Count(readText(t, ctLog), "executing command") - reloadsBefore
	hups := strings.Count(readText(t, n.ErrorLog), "signal 1 (SIGHUP) received")
	t.Logf("nginx: %d renewals in %s, %d handshakes, none failed; delays from the API serving a certificate to a handshake seeing it: %v; consul-template ran the reload command %d times, nginx logged %d reloads",
		len(rep.Renewals), time.Since(start).Round(time.Second), rep.Probes, rep.Delays(), reloads, hups)
	require.GreaterOrEqual(t, reloads, consumerRenewals, "consul-template reloaded nginx after each renewal:\n%s", tailFile(ctLog, 40))
	require.GreaterOrEqual(t, hups, consumerRenewals, "nginx received a reload per renewal:\n%s", tailFile(n.ErrorLog, 40))
}

// readText is the content of a file, failing the test when it cannot be read.
func readText(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}
