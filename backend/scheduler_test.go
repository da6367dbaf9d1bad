package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/paths"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// getInitializedBackend is getTestBackend after Vault's Initialize: the scheduler goroutine runs,
// with a first sweep within a millisecond.
func getInitializedBackend(t *testing.T) (*backend, logical.Storage, *fakeCA) {
	t.Helper()
	ca := newFakeCA(t)
	b := initializedBackend(t, &logical.InmemStorage{}, ca)
	return b, b.storage, ca
}

// initializedBackend builds a backend over s that orders from ca and runs Initialize.
func initializedBackend(t *testing.T, s logical.Storage, ca *fakeCA) *backend {
	t.Helper()
	b := newTestBackend(t, s, Options{Dial: ca.dial, Solvers: &fakeSolvers{}, FirstSweepJitter: time.Millisecond})
	require.NoError(t, b.Initialize(context.Background(), &logical.InitializationRequest{Storage: s}))
	return b
}

// eventually waits up to 5 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 5*time.Second, 10*time.Millisecond, what)
}

func loadCert(t *testing.T, s logical.Storage, name string) *storage.CertEntry {
	t.Helper()
	c, err := storage.LoadCert(context.Background(), s, name)
	require.NoError(t, err)
	return c
}

// Certificates found in storage at Initialize (a restart, an unseal) are issued by the scheduler
// without any request.
func TestInitializeSchedulesStoredCertificates(t *testing.T) {
	// Declare the certificates on a backend that never initializes, as a previous process would
	// leave them: pending, none issued.
	prev, s, _ := getTestBackend(t)
	setup(t, prev, s)
	now := time.Now().UTC()
	for i := range 3 {
		c := &storage.CertEntry{Role: "web", Domains: []string{fmt.Sprintf("n%d.example.com", i)}, KeyType: "ec256",
			Generation: 1, Status: storage.StatusPending, CreatedAt: now, UpdatedAt: now}
		require.NoError(t, storage.StoreCert(context.Background(), s, fmt.Sprintf("web/n%d", i), c))
	}

	ca := newFakeCA(t)
	initializedBackend(t, s, ca)
	eventually(t, "the scheduler issues every stored certificate", func() bool {
		for i := range 3 {
			if c := loadCert(t, s, fmt.Sprintf("web/n%d", i)); !c.Current() {
				return false
			}
		}
		return true
	})
	require.EqualValues(t, 3, ca.orders.Load(), "one order per certificate")
}

// A renewal due between two of Vault's periodic ticks is started by the scheduler's own timer.
func TestSchedulerRenewsAtDueTimeBetweenTicks(t *testing.T) {
	b, s, ca := getInitializedBackend(t)
	first := issueOne(t, b, s)
	require.EqualValues(t, 1, ca.orders.Load())

	// The scheduler may have dispatched the new certificate alongside the write; forget that, as
	// minRedispatch (10 s) would: a renewal is never dispatched again sooner.
	b.jobsMu.Lock()
	clear(b.lastDispatch)
	b.jobsMu.Unlock()
	setRenewAt(t, s, "web", time.Now().Add(300*time.Millisecond))
	b.CertificateChanged("web")
	eventually(t, "renewed without a periodic tick", func() bool {
		return loadCert(t, s, "web").SerialNumber != first.SerialNumber
	})
	require.EqualValues(t, 2, ca.orders.Load())
	require.Equal(t, 1, loadCert(t, s, "web").Renewals)
}

// Clean stops the scheduler goroutine and every worker.
func TestCleanStopsBackgroundWork(t *testing.T) {
	b, _, _ := getInitializedBackend(t)
	b.Cleanup(context.Background())
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("background goroutines still running after Clean")
	}
	require.ErrorIs(t, b.ctx.Err(), context.Canceled)
}

// Deleting a certificate while its order is in flight stops the job, removes the order record
// (which holds a private key) and stores nothing; the name can be declared again at once.
func TestDeleteCancelsJobAndRemovesOrder(t *testing.T) {
	b, s, ca := getInitializedBackend(t)
	setup(t, b, s)
	ca.delay = time.Minute
	resp := request(t, b, s, logical.CreateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com", "wait": 0})
	require.Equal(t, http.StatusAccepted, resp.Data[logical.HTTPStatusCode])
	eventually(t, "the order is recorded", func() bool {
		o, err := storage.LoadOrder(context.Background(), s, "web")
		return err == nil && o != nil
	})
	require.True(t, b.inFlight("web"))

	start := time.Now()
	request(t, b, s, logical.DeleteOperation, "certs/web", nil)
	eventually(t, "the job ends", func() bool { return !b.inFlight("web") })
	require.Less(t, time.Since(start), 5*time.Second, "the job was cancelled, not waited for")
	o, err := storage.LoadOrder(context.Background(), s, "web")
	require.NoError(t, err)
	require.Nil(t, o, "the order record with its private key is gone")
	require.Nil(t, loadCert(t, s, "web"), "nothing stored after the delete")
	keys, err := logical.CollectKeys(context.Background(), s)
	require.NoError(t, err)
	require.NotContains(t, keys, storage.CertPrefix+"web")
	require.NotContains(t, keys, storage.OrderPrefix+"web")

	// Declared again: issued normally, with no failure carried over from the cancelled job.
	ca.delay = 0
	resp = request(t, b, s, logical.CreateOperation, "certs/web", map[string]any{"role": "web", "domains": "other.example.com"})
	require.Equal(t, storage.StatusValid, resp.Data["status"], resp.Data["last_error"])
	c := loadCert(t, s, "web")
	require.Equal(t, []string{"other.example.com"}, c.Domains)
	require.Zero(t, c.Attempts)
	require.Empty(t, c.LastError)
}

// A result or failure of an attempt for an entry that was deleted and written anew (same name,
// same generation) does not land on the new entry.
func TestResultOfAReplacedEntryIsDiscarded(t *testing.T) {
	b, s, _ := getTestBackend(t)
	ctx := context.Background()
	old := &storage.CertEntry{Role: "web", Domains: []string{"a.example.com"}, Generation: 1, Status: storage.StatusPending,
		CreatedAt: time.Now().Add(-time.Hour).UTC()}
	fresh := &storage.CertEntry{Role: "web", Domains: []string{"b.example.com"}, Generation: 1, Status: storage.StatusPending,
		CreatedAt: time.Now().UTC()}
	require.NoError(t, storage.StoreCert(ctx, s, "web", fresh))

	b.recordFailure(ctx, "web", old, errors.New("dns down"))
	c := loadCert(t, s, "web")
	require.Zero(t, c.Attempts)
	require.Empty(t, c.LastError)

	b.recordFailure(ctx, "web", fresh, errors.New("dns down"))
	require.Equal(t, 1, loadCert(t, s, "web").Attempts, "a failure of the entry itself is recorded")

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	b.recordFailure(cancelled, "web", loadCert(t, s, "web"), context.Canceled)
	require.Equal(t, 1, loadCert(t, s, "web").Attempts, "a cancelled attempt is not a failure")
}

// lastDispatch remembers only recent dispatches.
func TestLastDispatchIsPruned(t *testing.T) {
	b, _, _ := getTestBackend(t)
	b.dispatch = func(string) {}
	now := time.Now()
	for i := range 100 {
		b.sched.set(fmt.Sprintf("c%d", i), now.Add(-time.Second), paths.CertSummary{})
	}
	require.Equal(t, 100, b.dispatchDue(now))
	b.jobsMu.Lock()
	require.Len(t, b.lastDispatch, 100)
	b.jobsMu.Unlock()

	b.sched.set("late", now.Add(minRedispatch), paths.CertSummary{})
	require.Equal(t, 1, b.dispatchDue(now.Add(minRedispatch)))
	b.jobsMu.Lock()
	require.Len(t, b.lastDispatch, 1, "dispatches older than minRedispatch are forgotten")
	b.jobsMu.Unlock()

	// A deleted certificate is forgotten at once.
	b.refresh(context.Background(), "late")
	b.jobsMu.Lock()
	require.Empty(t, b.lastDispatch)
	b.jobsMu.Unlock()
}

// Two mounts served by one plugin process have their own locks: a write held on one never waits
// for the other.
func TestLocksBelongToTheMount(t *testing.T) {
	b1, _, _ := getTestBackend(t)
	b2, _, _ := getTestBackend(t)
	l1 := b1.Locks().Cert("team-a/www")
	l1.Lock()
	defer l1.Unlock()
	l2 := b2.Locks().Cert("team-a/www")
	require.True(t, l2.TryLock(), "the other mount's lock of the same name is free")
	l2.Unlock()
	require.False(t, b1.Locks().Cert("team-a/www").TryLock(), "the same mount's lock is held")
	require.True(t, b1.Locks().For(storage.RolePrefix, "team-a/www").TryLock(), "a role's lock is not a certificate's")
}
