package storage

import (
	"container/list"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/vault/sdk/logical"
)

// DefaultCacheBytes bounds the certificate cache of one mount: about 10,000 certificates with
// their chains and keys.
const DefaultCacheBytes = 64 << 20

// Cache keeps the entries under one prefix (certificates) in memory, so that reads do not each
// make a storage round trip back into Vault. It is exact: every write and delete made through a
// storage it wraps updates it, Invalidate (another node wrote) drops the key, and a read that
// missed fills it only when nothing was written meanwhile. Its size is bounded (least recently
// used entries go first). A Cache is safe for concurrent use.
type Cache struct {
	prefix   string
	maxBytes int

	mu    sync.Mutex
	epoch uint64 // bumped by every write, delete and invalidation
	bytes int
	order *list.List // front: most recently used; values are *cacheItem
	items map[string]*list.Element

	hits, misses atomic.Uint64
}

type cacheItem struct {
	key   string
	entry *logical.StorageEntry // nil: the key is known not to exist
	size  int
	// decoded is the entry decoded by LoadShared (nil until then); shared, never modified.
	decoded any
}

// NewCache returns a cache of the entries under prefix, bounded to maxBytes (DefaultCacheBytes
// when <= 0).
func NewCache(prefix string, maxBytes int) *Cache {
	if maxBytes <= 0 {
		maxBytes = DefaultCacheBytes
	}
	return &Cache{prefix: prefix, maxBytes: maxBytes, order: list.New(), items: map[string]*list.Element{}}
}

// Wrap returns s with reads of the cached prefix served from the cache and writes and deletes
// kept in it. Wrap every storage the mount writes certificates through with the same Cache.
func (c *Cache) Wrap(s logical.Storage) logical.Storage {
	if s == nil {
		return nil
	}
	if w, ok := s.(*cachedStorage); ok && w.c == c {
		return w
	}
	return &cachedStorage{Storage: s, c: c}
}

// Invalidate drops key: another node changed it.
func (c *Cache) Invalidate(key string) {
	if !strings.HasPrefix(key, c.prefix) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	c.drop(key)
}

// Purge drops everything (the mount is being torn down, or storage may have changed unseen).
func (c *Cache) Purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	c.items = map[string]*list.Element{}
	c.order.Init()
	c.bytes = 0
}

// Stats returns the cache's hits and misses so far, its entries and their bytes.
func (c *Cache) Stats() (hits, misses uint64, entries, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits.Load(), c.misses.Load(), len(c.items), c.bytes
}

func (c *Cache) get(key string) (*logical.StorageEntry, bool, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.order.MoveToFront(el)
		c.hits.Add(1)
		return copyEntry(el.Value.(*cacheItem).entry), true, 0
	}
	c.misses.Add(1)
	return nil, false, c.epoch
}

// shared returns the decoded value kept with key, the item it belongs to (for keepDecoded) and,
// when there is none yet, a copy of the entry to decode. found is false on a miss.
func (c *Cache) shared(key string) (decoded any, it *cacheItem, e *logical.StorageEntry, found bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, nil, nil, false
	}
	c.order.MoveToFront(el)
	c.hits.Add(1)
	it = el.Value.(*cacheItem)
	if it.decoded != nil {
		return it.decoded, it, nil, true
	}
	return nil, it, copyEntry(it.entry), true
}

// keepDecoded keeps v as the decoded form of it, if it is still the cached item of its key.
func (c *Cache) keepDecoded(it *cacheItem, v any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[it.key]; ok && el.Value.(*cacheItem) == it {
		it.decoded = v
	}
}

// fill stores what a read found, unless something was written since the read began (epoch).
func (c *Cache) fill(key string, e *logical.StorageEntry, epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch == epoch {
		c.put(key, e)
	}
}

// wrote records a write (e) or a delete (nil) of key made through the cache.
func (c *Cache) wrote(key string, e *logical.StorageEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	c.put(key, e)
}

// put caches e under key; callers hold mu.
func (c *Cache) put(key string, e *logical.StorageEntry) {
	c.drop(key)
	it := &cacheItem{key: key, entry: copyEntry(e), size: len(key) + 64}
	if e != nil {
		it.size += len(e.Value)
	}
	if it.size > c.maxBytes/4 {
		return // one huge entry must not empty the cache
	}
	c.items[key] = c.order.PushFront(it)
	c.bytes += it.size
	for c.bytes > c.maxBytes {
		last := c.order.Back()
		c.drop(last.Value.(*cacheItem).key)
	}
}

// drop forgets key; callers hold mu.
func (c *Cache) drop(key string) {
	if el, ok := c.items[key]; ok {
		c.bytes -= el.Value.(*cacheItem).size
		c.order.Remove(el)
		delete(c.items, key)
	}
}

func copyEntry(e *logical.StorageEntry) *logical.StorageEntry {
	if e == nil {
		return nil
	}
	cp := *e
	cp.Value = append([]byte(nil), e.Value...)
	return &cp
}

// cachedStorage is a logical.Storage whose reads of the cache's prefix come from the cache.
type cachedStorage struct {
	logical.Storage
	c *Cache
}

func (s *cachedStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if !strings.HasPrefix(key, s.c.prefix) {
		return s.Storage.Get(ctx, key)
	}
	e, ok, epoch := s.c.get(key) // on a miss, the epoch before reading storage
	if ok {
		return e, nil
	}
	e, err := s.Storage.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	s.c.fill(key, e, epoch)
	return e, nil
}

func (s *cachedStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	if !strings.HasPrefix(e.Key, s.c.prefix) {
		return s.Storage.Put(ctx, e)
	}
	err := s.Storage.Put(ctx, e)
	if err != nil {
		s.c.Invalidate(e.Key) // the write may or may not have happened
		return err
	}
	s.c.wrote(e.Key, e)
	return nil
}

func (s *cachedStorage) Delete(ctx context.Context, key string) error {
	if !strings.HasPrefix(key, s.c.prefix) {
		return s.Storage.Delete(ctx, key)
	}
	err := s.Storage.Delete(ctx, key)
	if err != nil {
		s.c.Invalidate(key)
		return err
	}
	s.c.wrote(key, nil)
	return nil
}

// LoadShared is load for callers that only read the value: through a cached storage, a cache hit
// returns the value decoded once and kept with the entry (until the entry changes) instead of
// decoding it again. The value is SHARED between callers: never modify it or anything it holds.
// Other storages decode as load does.
func LoadShared[T any](ctx context.Context, s logical.Storage, prefix, name, what string) (*T, error) {
	cs, ok := s.(*cachedStorage)
	if !ok || !strings.HasPrefix(prefix+name, cs.c.prefix) {
		return load[T](ctx, s, prefix, name, what)
	}
	v, it, e, found := cs.c.shared(prefix + name)
	switch {
	case !found:
		return load[T](ctx, s, prefix, name, what) // fills the cache
	case v != nil:
		return v.(*T), nil
	case e == nil:
		return nil, nil // known not to exist
	}
	var t T
	if err := e.DecodeJSON(&t); err != nil {
		return nil, fmt.Errorf("decode %s %q: %w", what, name, err)
	}
	cs.c.keepDecoded(it, &t)
	return &t, nil
}
