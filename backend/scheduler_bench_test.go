package backend

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/paths"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// countingStorage counts storage reads (Get and List), the gRPC round trips an external plugin pays.
type countingStorage struct {
	logical.Storage
	reads atomic.Int64
}

func (c *countingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	c.reads.Add(1)
	return c.Storage.Get(ctx, key)
}

func (c *countingStorage) List(ctx context.Context, prefix string) ([]string, error) {
	c.reads.Add(1)
	return c.Storage.List(ctx, prefix)
}

// BenchmarkPeriodicTick measures one periodic tick with 10,000 stored certificates of which none,
// or 100, are due. The jobs of due certificates are counted rather than run, so only the tick is
// measured. It reports storage reads per tick.
func BenchmarkPeriodicTick(b *testing.B) {
	ctx := context.Background()
	store := &countingStorage{Storage: &logical.InmemStorage{}}
	conf := logical.TestBackendConfig()
	conf.StorageView, conf.Logger = store, hclog.NewNullLogger()
	lb, err := New(ctx, conf, Options{Dial: (&fakeCA{}).dial, Solvers: &fakeSolvers{}})
	require.NoError(b, err)
	be := lb.(*backend)
	defer be.Cleanup(ctx)
	var started atomic.Int64
	be.dispatch = func(string) { started.Add(1) }
	now := time.Now()
	for i := range 10000 {
		c := &storage.CertEntry{Role: "web", Domains: []string{"www.example.com"}, Generation: 1, IssuedGeneration: 1,
			Certificate: "x", Status: storage.StatusValid, NotAfter: now.Add(90 * 24 * time.Hour), RenewAt: now.Add(60 * 24 * time.Hour)}
		require.NoError(b, storage.StoreCert(ctx, store, fmt.Sprintf("team-%d/cert-%d", i%20, i), c))
	}
	require.NoError(b, be.loadSchedule(ctx, store))
	for _, due := range []int{0, 100} {
		b.Run(fmt.Sprintf("stored=10000/due=%d", due), func(b *testing.B) {
			started.Store(0)
			b.ResetTimer()
			var dispatched int64
			before := store.reads.Load()
			for i := 0; i < b.N; i++ {
				if due > 0 {
					// Make `due` certificates due again (as if their renew_at had come); not timed.
					b.StopTimer()
					for j := range due {
						be.sched.set(fmt.Sprintf("team-%d/cert-%d", j%20, j), now.Add(-time.Second), paths.CertSummary{})
					}
					b.StartTimer()
				}
				dispatched += int64(be.dispatchDue(time.Now()))
			}
			reads := store.reads.Load() - before
			b.StopTimer()
			b.ReportMetric(float64(reads)/float64(b.N), "storage-reads/tick")
			b.ReportMetric(float64(dispatched)/float64(b.N), "dispatched/tick")
			require.Equal(b, dispatched, started.Load())
		})
	}
}
