package backend

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// One tenant's 24 certificates whose validation never ends hold at most their share of the 8
// workers: another tenant's certificate is issued at once, and the queued ones say why they wait.
func TestOneRoleCannotHoldEveryWorker(t *testing.T) {
	b, s, ca := getTestBackend(t)
	setup(t, b, s)
	resp := request(t, b, s, logical.CreateOperation, "roles/slow", map[string]any{"account": "main", "dns": "ns",
		"allowed_domains": "slow.example.com", "allow_subdomains": true, "allowed_cert_names": "slow/*"})
	require.False(t, resp.IsError(), resp.Error())
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) }) // before the backend's own cleanup (LIFO)
	ca.onObtain = func(req acme.OrderRequest) {
		if strings.HasSuffix(req.Domains[0], ".slow.example.com") {
			<-stuck
		}
	}
	for i := range 24 {
		resp := request(t, b, s, logical.CreateOperation, fmt.Sprintf("certs/slow/n%d", i),
			map[string]any{"role": "slow", "domains": fmt.Sprintf("n%d.slow.example.com", i), "wait": 0})
		require.False(t, resp.IsError(), resp.Error())
	}
	eventually(t, "the slow role's jobs take their share", func() bool {
		running, waiting, _ := b.workers.stats()
		return running == 6 && waiting == 18
	})

	start := time.Now()
	resp = request(t, b, s, logical.CreateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com", "wait": 10})
	require.Equal(t, storage.StatusValid, resp.Data["status"], "another role's certificate is issued while the slow one waits")
	require.Less(t, time.Since(start), 2*time.Second)

	sums := b.CertificateSummaries()
	queued, aQueued := 0, ""
	for i := range 24 {
		if w := sums[fmt.Sprintf("slow/n%d", i)].Waiting; w != "" {
			queued++
			aQueued = fmt.Sprintf("slow/n%d", i)
			require.Contains(t, w, `role "slow" already has 6 jobs running`)
		}
	}
	require.Equal(t, 18, queued, "the queued certificates say why they wait")
	// A read of a queued certificate (which 6 of the 24 got a worker varies) waits for it (up to
	// its wait); cut that short.
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	read, err := b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "certs/" + aQueued, Storage: s})
	require.Nil(t, read)
	require.ErrorContains(t, err, "queued")
}

// Concurrent writes cannot overrun a role's max_certificates: exactly the quota is stored.
func TestRoleQuotaUnderConcurrentWrites(t *testing.T) {
	b, s, _ := getTestBackend(t)
	setup(t, b, s)
	resp := request(t, b, s, logical.CreateOperation, "roles/q", map[string]any{"account": "main", "dns": "ns",
		"allowed_domains": "example.com", "allow_subdomains": true, "allowed_cert_names": "q/*", "max_certificates": 5})
	require.False(t, resp.IsError(), resp.Error())
	var wg sync.WaitGroup
	var refused atomic.Int32
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.CreateOperation, Path: fmt.Sprintf("certs/q/n%d", i), Storage: s,
				Data: map[string]any{"role": "q", "domains": fmt.Sprintf("n%d.example.com", i), "wait": 0}})
			if err == nil && resp.IsError() {
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	names, err := storage.CertNames(context.Background(), s)
	require.NoError(t, err)
	require.Len(t, names, 5)
	require.EqualValues(t, 15, refused.Load())
	require.Equal(t, 5, b.CountCertificates("q"))
}
