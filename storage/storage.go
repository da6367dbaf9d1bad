package storage

import (
	"context"
	"fmt"

	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// SealWrapPrefixes lists every prefix whose entries hold keys or credentials; the backend declares
// them in PathsSpecial.SealWrapStorage.
func SealWrapPrefixes() []string {
	return []string{AccountPrefix, DNSConfigPrefix, CertPrefix, OrderPrefix}
}

// load returns the JSON entry stored at prefix+name as a *T, or nil when there is none. what names
// the kind of entry in errors.
func load[T any](ctx context.Context, s logical.Storage, prefix, name, what string) (*T, error) {
	e, err := s.Get(ctx, prefix+name)
	if err != nil {
		return nil, fmt.Errorf("load %s %q: %w", what, name, err)
	}
	if e == nil {
		return nil, nil
	}
	var v T
	if err := e.DecodeJSON(&v); err != nil {
		return nil, fmt.Errorf("decode %s %q: %w", what, name, err)
	}
	return &v, nil
}

// store writes v as JSON at prefix+name.
func store(ctx context.Context, s logical.Storage, prefix, name, what string, v any) error {
	e, err := logical.StorageEntryJSON(prefix+name, v)
	if err == nil {
		err = s.Put(ctx, e)
	}
	if err != nil {
		return fmt.Errorf("store %s %q: %w", what, name, err)
	}
	return nil
}

// remove deletes prefix+name.
func remove(ctx context.Context, s logical.Storage, prefix, name, what string) error {
	if err := s.Delete(ctx, prefix+name); err != nil {
		return fmt.Errorf("delete %s %q: %w", what, name, err)
	}
	return nil
}

// Locks guard read-modify-write of the entries of one mount. Every writer of an entry (an API
// handler, an issuance worker) takes the entry's lock first. Each prefix has its own set, so a
// certificate's lock never waits for a role's. Lock order, where one holder takes two: a
// certificate's lock before its role's (a write that counts the role's certificates against
// max_certificates); a role's lock before the (shared) locks of the account and DNS configuration
// it names; nothing takes a certificate's lock while holding a role's. A mount has its own Locks: two mounts served by one plugin process never wait for each
// other.
type Locks struct {
	byPrefix map[string][]*locksutil.LockEntry
}

// NewLocks returns the locks of a new mount.
func NewLocks() *Locks {
	l := &Locks{byPrefix: map[string][]*locksutil.LockEntry{}}
	for _, p := range []string{AccountPrefix, DNSConfigPrefix, RolePrefix, CertPrefix} {
		l.byPrefix[p] = locksutil.CreateLocks()
	}
	return l
}

// For returns the lock of the entry named name under prefix (AccountPrefix, DNSConfigPrefix,
// RolePrefix or CertPrefix). It panics on any other prefix: that is a programming error.
func (l *Locks) For(prefix, name string) *locksutil.LockEntry {
	set, ok := l.byPrefix[prefix]
	if !ok {
		panic("storage: no locks for prefix " + prefix)
	}
	return locksutil.LockForKey(set, name)
}

// Cert returns the lock of the certificate named name. It also guards the certificate's order
// record (OrderPrefix).
func (l *Locks) Cert(name string) *locksutil.LockEntry { return l.For(CertPrefix, name) }
