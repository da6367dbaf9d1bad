package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestConcurrentReadsOrderOnce: 20 simultaneous reads of a certificate that is not issued yet
// cause exactly one new-order at the CA (counted at the ACME proxy) and all get the same
// certificate.
func TestConcurrentReadsOrderOnce(t *testing.T) {
	c := env.RootClient(t)
	proxy := env.NewPebbleProxy(t)
	id := Unique("conc")
	domain := id + "." + env.Zone
	is := env.SetupProxiedIssuer(t, c, proxy, id, "default")
	require.Greater(t, proxy.Requests(http.MethodPost, "/sign-me-up"), 0, "account registration went through the proxy")
	require.Equal(t, 0, proxy.NewOrders(), "no order before the certificate write")

	// Hold the new-order request for a while, so every reader arrives while the order is in flight.
	proxy.SetFault(Delay(proxy.NewOrderPath(), 2*time.Second))
	w := MustDo(t, c, http.MethodPut, Mount+"/certs/"+id, map[string]any{
		"role": is.Role, "domains": domain, "wait": "0s",
	})
	// The order is held 2s at the proxy, so wait=0 must answer at once: 202, pending.
	require.Equal(t, http.StatusAccepted, w.Status, "write with wait=0: %s", w)
	assert.Equal(t, "pending", w.Data["status"], "%s", w)

	const readers = 20
	type result struct {
		serial  string
		cert    string
		status  []int
		err     error
		elapsed time.Duration
	}
	results := make([]result, readers)
	var wg sync.WaitGroup
	startGate := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for i := 0; i < readers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rc, err := env.Client(env.VaultToken)
			if err != nil {
				results[i].err = err
				return
			}
			<-startGate
			start := time.Now()
			for {
				r, err := Do(ctx, rc, http.MethodGet, Mount+"/certs/"+id, nil)
				if err != nil {
					results[i].err = fmt.Errorf("%w (statuses so far %v)", err, results[i].status)
					return
				}
				results[i].status = append(results[i].status, r.Status)
				switch r.Status {
				case http.StatusOK:
					cert, _ := r.Data["certificate"].(string)
					if cert == "" {
						results[i].err = fmt.Errorf("200 with an empty certificate: %s", r)
						return
					}
					results[i].serial = fmt.Sprint(r.Data["serial_number"])
					results[i].cert = cert
					results[i].elapsed = time.Since(start)
					return
				case http.StatusServiceUnavailable:
					if r.FailedAttempt() {
						results[i].err = fmt.Errorf("issuance failed: %s", r)
						return
					}
					if ctx.Err() != nil {
						results[i].err = fmt.Errorf("still 503 at the deadline: %s", r)
						return
					}
					time.Sleep(500 * time.Millisecond)
				default:
					results[i].err = fmt.Errorf("unexpected answer: %s", r)
					return
				}
			}
		}(i)
	}
	close(startGate)
	wg.Wait()

	proxy.SetFault(nil)
	serials := map[string]int{}
	for i, r := range results {
		if !assert.NoError(t, r.err, "reader %d", i) {
			continue
		}
		serials[r.serial]++
		t.Logf("reader %2d: statuses %v, certificate after %s", i, r.status, r.elapsed.Round(time.Millisecond))
	}
	assert.Len(t, serials, 1, "all readers get the same certificate: %v", serials)
	for i := 1; i < readers; i++ {
		if results[i].err == nil && results[0].err == nil {
			assert.Equal(t, results[0].cert, results[i].cert, "reader %d certificate", i)
		}
	}
	assert.Equal(t, 1, proxy.NewOrders(), "exactly one new-order (HTTP 201) at the CA; POSTs to %s: %d",
		proxy.NewOrderPath(), proxy.Requests(http.MethodPost, proxy.NewOrderPath()))

	// The certificate is fine, and reading it again does not order again.
	cert := WaitCert(t, c, id, time.Minute)
	assert.True(t, KeyMatches(cert.Key, cert.Leaf))
	assert.Equal(t, 1, proxy.NewOrders(), "a later read does not order again")
}
