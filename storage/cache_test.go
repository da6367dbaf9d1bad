package storage

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"
)

// countingStorage counts the Gets that reach the storage under the cache.
type countingStorage struct {
	logical.Storage
	mu   sync.Mutex
	gets int
	// beforeGet, when set, runs inside Get before the entry is read (a write racing a read).
	beforeGet func()
}

func (s *countingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	s.mu.Lock()
	s.gets++
	f := s.beforeGet
	s.beforeGet = nil
	s.mu.Unlock()
	if f != nil {
		f()
	}
	return s.Storage.Get(ctx, key)
}

func TestCacheServesReadsAndStaysExact(t *testing.T) {
	ctx := context.Background()
	under := &countingStorage{Storage: &logical.InmemStorage{}}
	c := NewCache(CertPrefix, 0)
	s := c.Wrap(under)
	require.Same(t, s, c.Wrap(s), "wrapping twice changes nothing")

	require.NoError(t, StoreCert(ctx, s, "a", &CertEntry{Role: "r1"}))
	for range 5 {
		e, err := LoadCert(ctx, s, "a")
		require.NoError(t, err)
		require.Equal(t, "r1", e.Role)
	}
	require.Equal(t, 0, under.gets, "reads after a write come from the cache")

	// A returned entry is a copy: changing it changes nothing cached.
	e, _ := s.Get(ctx, CertPrefix+"a")
	e.Value[0] = 'X'
	got, err := LoadCert(ctx, s, "a")
	require.NoError(t, err)
	require.Equal(t, "r1", got.Role)

	// Missing entries are cached as missing; a delete is seen at once.
	none, err := LoadCert(ctx, s, "b")
	require.NoError(t, err)
	require.Nil(t, none)
	_, _ = LoadCert(ctx, s, "b")
	require.Equal(t, 1, under.gets)
	require.NoError(t, DeleteCert(ctx, s, "a"))
	gone, err := LoadCert(ctx, s, "a")
	require.NoError(t, err)
	require.Nil(t, gone)

	// Another node wrote: Invalidate makes the next read go to storage.
	require.NoError(t, StoreCert(ctx, under.Storage, "c", &CertEntry{Role: "old"}))
	_, _ = LoadCert(ctx, s, "c")
	require.NoError(t, StoreCert(ctx, under.Storage, "c", &CertEntry{Role: "new"}))
	stale, _ := LoadCert(ctx, s, "c")
	require.Equal(t, "old", stale.Role, "unseen until invalidated")
	c.Invalidate(CertPrefix + "c")
	fresh, _ := LoadCert(ctx, s, "c")
	require.Equal(t, "new", fresh.Role)

	// Other prefixes pass through.
	require.NoError(t, StoreRole(ctx, s, "r", &RoleEntry{Account: "x"}))
	before := under.gets
	_, _ = LoadRole(ctx, s, "r")
	require.Equal(t, before+1, under.gets)
}

func TestCacheReadRacingAWriteDoesNotCacheTheOldValue(t *testing.T) {
	ctx := context.Background()
	under := &countingStorage{Storage: &logical.InmemStorage{}}
	require.NoError(t, StoreCert(ctx, under.Storage, "a", &CertEntry{Role: "v1"}))
	c := NewCache(CertPrefix, 0)
	s := c.Wrap(under)
	// The read misses, and before it reaches storage a write lands through another wrapper.
	under.beforeGet = func() {
		require.NoError(t, StoreCert(ctx, c.Wrap(&logical.InmemStorage{}), "a", &CertEntry{Role: "ignored"}))
	}
	_, err := LoadCert(ctx, s, "a")
	require.NoError(t, err)
	_, misses, entries, _ := c.Stats()
	require.Equal(t, uint64(1), misses)
	require.Equal(t, 1, entries, "only the write is cached, not the racing read's older value")
	e, _ := LoadCert(ctx, s, "a")
	require.Equal(t, "ignored", e.Role)
}

func TestCacheIsBounded(t *testing.T) {
	ctx := context.Background()
	c := NewCache(CertPrefix, 100_000)
	s := c.Wrap(&logical.InmemStorage{})
	big := make([]byte, 1000)
	for i := range 1000 {
		require.NoError(t, s.Put(ctx, &logical.StorageEntry{Key: fmt.Sprintf("%sc%d", CertPrefix, i), Value: big}))
	}
	_, _, entries, bytes := c.Stats()
	require.LessOrEqual(t, bytes, 100_000)
	require.Greater(t, entries, 50)
	// The most recent survive; the oldest went first.
	e, err := s.Get(ctx, CertPrefix+"c999")
	require.NoError(t, err)
	require.NotNil(t, e)
	hits, _, _, _ := c.Stats()
	require.Equal(t, uint64(1), hits)
	// An entry larger than a quarter of the bound is never cached.
	require.NoError(t, s.Put(ctx, &logical.StorageEntry{Key: CertPrefix + "huge", Value: make([]byte, 30_000)}))
	_, _ = s.Get(ctx, CertPrefix+"huge")
	_, misses, _, _ := c.Stats()
	require.Equal(t, uint64(1), misses)
}

// LoadCertShared decodes a cached entry once and shares it until the entry changes (a write, a
// delete, an invalidation, eviction); misses and other storages behave like LoadCert.
func TestCacheSharedDecodeFollowsTheEntry(t *testing.T) {
	ctx := context.Background()
	under := &countingStorage{Storage: &logical.InmemStorage{}}
	c := NewCache(CertPrefix, 0)
	s := c.Wrap(under)

	// A miss fills the cache; the next shared loads return one decoded value.
	require.NoError(t, StoreCert(ctx, under.Storage, "a", &CertEntry{Role: "r1", Domains: []string{"a.example"}}))
	first, err := LoadCertShared(ctx, s, "a")
	require.NoError(t, err)
	require.Equal(t, "r1", first.Role)
	second, err := LoadCertShared(ctx, s, "a")
	require.NoError(t, err)
	third, err := LoadCertShared(ctx, s, "a")
	require.NoError(t, err)
	require.Same(t, second, third, "decoded once")
	require.Equal(t, 1, under.gets)
	// LoadCert still returns a private copy.
	own, err := LoadCert(ctx, s, "a")
	require.NoError(t, err)
	require.NotSame(t, third, own)

	// A write through the cache replaces the shared value.
	require.NoError(t, StoreCert(ctx, s, "a", &CertEntry{Role: "r2"}))
	after, err := LoadCertShared(ctx, s, "a")
	require.NoError(t, err)
	require.Equal(t, "r2", after.Role)

	// Another node's write: stale until invalidated, then the new value.
	require.NoError(t, StoreCert(ctx, under.Storage, "a", &CertEntry{Role: "r3"}))
	c.Invalidate(CertPrefix + "a")
	inv, err := LoadCertShared(ctx, s, "a")
	require.NoError(t, err)
	require.Equal(t, "r3", inv.Role)

	// Deleted and missing entries are nil.
	require.NoError(t, DeleteCert(ctx, s, "a"))
	gone, err := LoadCertShared(ctx, s, "a")
	require.NoError(t, err)
	require.Nil(t, gone)
	none, err := LoadCertShared(ctx, s, "nothing")
	require.NoError(t, err)
	require.Nil(t, none)

	// A decode racing a write does not keep the older value.
	require.NoError(t, StoreCert(ctx, s, "b", &CertEntry{Role: "old"}))
	_, it, e, found := c.shared(CertPrefix + "b")
	require.True(t, found)
	require.NotNil(t, e)
	require.NoError(t, StoreCert(ctx, s, "b", &CertEntry{Role: "new"}))
	c.keepDecoded(it, &CertEntry{Role: "old"})
	got, err := LoadCertShared(ctx, s, "b")
	require.NoError(t, err)
	require.Equal(t, "new", got.Role)

	// Without a cache: a plain decode each time.
	plain := &logical.InmemStorage{}
	require.NoError(t, StoreCert(ctx, plain, "p", &CertEntry{Role: "x"}))
	p1, err := LoadCertShared(ctx, plain, "p")
	require.NoError(t, err)
	p2, err := LoadCertShared(ctx, plain, "p")
	require.NoError(t, err)
	require.Equal(t, "x", p1.Role)
	require.NotSame(t, p1, p2)
}
