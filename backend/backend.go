// Package backend is the plugin's Vault lifecycle: the Factory, the backend struct, Initialize /
// Invalidate / Clean / Periodic / WALRollback, the issuance orchestrator with its bounded worker
// pool, the renewal scheduler, the mount's locks and the caches of ACME clients. It implements
// paths.Engine for the HTTP API.
//
// It may import paths, storage, acme and solvers, but not lego: the CA is reached through acme,
// DNS providers through solvers. Nothing in this plugin imports backend except cmd.
package backend

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-uuid"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/errutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/paths"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// Version is the plugin's semantic version, reported to Vault as RunningVersion. Release builds
// set it with -ldflags "-X .../backend.Version=v1.2.3".
var Version = "v0.0.0-dev"

// DefaultWorkers bounds how many certificates are issued at once per mount.
const DefaultWorkers = 8

const backendHelp = `The Let's Encrypt secrets engine obtains and renews publicly trusted TLS certificates through
ACME (Let's Encrypt or any RFC 8555 CA) inside Vault. ACME accounts, DNS provider credentials and
certificate keys stay behind Vault's barrier. Configure accounts/, config/dns/ and roles/, then write
and read certs/<name>.`

// ACMEClient is the part of *acme.Client the backend uses; tests substitute a fake.
type ACMEClient interface {
	Register(ctx context.Context, reg acme.Registration) (url, status string, err error)
	UpdateContact(ctx context.Context, contact []string) error
	Obtain(ctx context.Context, req acme.OrderRequest, policy acme.PollPolicy) (*acme.Certificate, error)
	SupportsRenewalInfo() bool
	RenewalInfo(ctx context.Context, leaf *x509.Certificate) (*acme.RenewalWindow, error)
	Revoke(ctx context.Context, der []byte, reason uint) error
	// Account lifecycle (backend/accounts.go).
	LookupAccount(ctx context.Context) (acme.AccountInfo, error)
	RolloverKey(ctx context.Context, newKey crypto.Signer) error
	Deactivate(ctx context.Context) error
	Close()
}

// Dialer connects to a CA as an account.
type Dialer func(acct acme.Account, opts acme.Options) (ACMEClient, error)

// Options configure a backend; zero values select the real implementations.
type Options struct {
	// Dial connects to CAs (default: acme.Dial).
	Dial Dialer
	// Solvers builds DNS-01 solvers (default: child processes of this plugin's executable).
	Solvers solvers.Factory
	// Workers bounds concurrent issuance (default DefaultWorkers).
	Workers int
	// Poll is the ACME polling policy (default acme.DefaultPollPolicy).
	Poll acme.PollPolicy
	// FirstSweepJitter bounds the random delay of the scheduler's first sweep after Initialize
	// (default 10s).
	FirstSweepJitter time.Duration
	// CacheBytes bounds the in-memory certificate cache (default storage.DefaultCacheBytes).
	CacheBytes int
}

type backend struct {
	*framework.Backend

	logger  hclog.Logger
	dial    Dialer
	solvers solvers.Factory
	poll    acme.PollPolicy
	storage logical.Storage
	// cache keeps certificate entries in memory (reads without a storage round trip); every
	// storage the mount uses (b.storage, each request's) is wrapped by it.
	cache *storage.Cache
	// locks guard read-modify-write of this mount's entries; the API takes the same ones.
	locks *storage.Locks

	// ctx is the context of background work: created with the backend, cancelled by Clean.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	clientsMu sync.Mutex
	clients   map[string]*cachedClient

	userAgentOnce sync.Once
	userAgent     string

	jobsMu       sync.Mutex
	jobs         map[string]*job
	lastDispatch map[string]time.Time
	workers      *fairSlots
	budget       *orderBudget
	// waiting says, for a certificate whose job waits (for a worker, for the order budget), why.
	waiting sync.Map // name -> string

	sched *schedule
	// counters are the metrics counters of this backend on this node (metrics.go).
	counters counters
	// firstSweepJitter bounds the random delay of the first sweep (Options.FirstSweepJitter).
	firstSweepJitter time.Duration
	// dispatch starts the job of a due certificate (startJob; benchmarks count instead).
	dispatch func(name string)
	// instance identifies this backend object; WAL entries written by another instance (a
	// previous plugin process) are rolled back at once.
	instance string
}

// Factory is the plugin's logical.Factory.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	return New(ctx, conf, Options{})
}

// New builds and sets up a backend with opts.
func New(ctx context.Context, conf *logical.BackendConfig, opts Options) (logical.Backend, error) {
	logger := conf.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	cache := storage.NewCache(storage.CertPrefix, opts.CacheBytes)
	b := &backend{
		logger:       logger,
		dial:         opts.Dial,
		solvers:      opts.Solvers,
		poll:         opts.Poll,
		cache:        cache,
		storage:      cache.Wrap(conf.StorageView),
		locks:        storage.NewLocks(),
		clients:      map[string]*cachedClient{},
		jobs:         map[string]*job{},
		lastDispatch: map[string]time.Time{},
		sched:        newSchedule(),
	}
	id, err := uuid.GenerateUUID()
	if err != nil {
		return nil, err
	}
	b.instance = id
	b.dispatch = func(name string) { b.startJob(name) }
	if b.dial == nil {
		b.dial = func(a acme.Account, o acme.Options) (ACMEClient, error) { return acme.Dial(a, o) }
	}
	if b.solvers == nil {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("locate the plugin executable for DNS solver processes: %w", err)
		}
		b.solvers = solvers.NewProcessFactory(exe, logger.Named("dns"))
	}
	if b.poll.Initial <= 0 {
		b.poll = acme.DefaultPollPolicy
	}
	b.firstSweepJitter = opts.FirstSweepJitter
	if b.firstSweepJitter <= 0 {
		b.firstSweepJitter = defaultFirstSweepJitter
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = DefaultWorkers
	}
	b.workers = newFairSlots(workers)
	b.budget = newOrderBudget()
	b.ctx, b.cancel = context.WithCancel(context.Background())

	b.Backend = &framework.Backend{
		Help:        strings.TrimSpace(backendHelp),
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			SealWrapStorage: storage.SealWrapPrefixes(),
			// The HTTP-01 answers, for the reverse proxy in front of Vault; nothing else.
			Unauthenticated: []string{paths.ChallengePathPrefix + "*"},
			LocalStorage:    []string{framework.WALPrefix},
		},
		Paths:             paths.Paths(b),
		InitializeFunc:    b.initialize,
		PeriodicFunc:      b.periodic,
		WALRollback:       b.walRollback,
		WALRollbackMinAge: walRollbackMinAge,
		Invalidate:        b.invalidate,
		Clean:             b.clean,
		RunningVersion:    Version,
	}
	if err := b.Setup(ctx, conf); err != nil {
		b.cancel()
		return nil, err
	}
	return b, nil
}

// initialize rebuilds the renewal schedule from storage and starts the scheduler. Vault calls it
// when the mount is set up or Vault is unsealed, on every node: the scheduler runs everywhere but
// dispatches work only where storage is writable (dispatchDue checks WriteSafeReplicationState).
func (b *backend) initialize(ctx context.Context, req *logical.InitializationRequest) error {
	b.loadBudget(ctx)
	start := time.Now()
	if err := b.loadSchedule(ctx, b.cache.Wrap(req.Storage)); err != nil {
		return fmt.Errorf("load the renewal schedule: %w", err)
	}
	b.sched.mu.Lock()
	loaded := len(b.sched.items)
	b.sched.mu.Unlock()
	// How long a mount start takes with this many certificates (make bench reads this line too).
	b.logger.Named("schedule").Info("renewal schedule loaded", "certificates", loaded,
		"duration", time.Since(start).Round(time.Millisecond).String())
	b.wg.Add(1)
	go b.runScheduler()
	return nil
}

// invalidate drops cached state when another node changed storage (performance standbys).
func (b *backend) invalidate(_ context.Context, key string) {
	b.cache.Invalidate(key)
	switch {
	case strings.HasPrefix(key, storage.AccountPrefix):
		b.AccountChanged(strings.TrimPrefix(key, storage.AccountPrefix))
	case strings.HasPrefix(key, storage.DNSConfigPrefix):
		b.DNSConfigChanged(strings.TrimPrefix(key, storage.DNSConfigPrefix))
	case strings.HasPrefix(key, storage.CertPrefix):
		b.refresh(b.ctx, strings.TrimPrefix(key, storage.CertPrefix))
	}
}

// clean stops background work, the DNS solver processes and the ACME clients. Workers get a
// bounded time to notice the cancellation.
func (b *backend) clean(_ context.Context) {
	b.cancel()
	b.cache.Purge()
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		b.logger.Warn("issuance workers still running at cleanup")
	}
	b.solvers.Close()
	b.clientsMu.Lock()
	for name, c := range b.clients {
		c.client.Close()
		delete(b.clients, name)
	}
	b.clientsMu.Unlock()
}

// HandleRequest screens sensitive fields before the framework parses the request, so that Vault's
// own parse errors never quote a credential or key (paths.ScreenSensitiveInput), and shortens
// whatever input an error quotes back (paths.ClipResponse). Reads of certs/<name> skip the
// framework's per-request work (paths.ReadCertDirect): they are the hot path of every template.
func (b *backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	req.Storage = b.cache.Wrap(req.Storage)
	if err := paths.RefuseChallengeHelp(req); err != nil {
		return nil, err
	}
	route := b.Route(req.Path)
	if req.Operation != logical.HelpOperation {
		if resp := paths.ScreenSensitiveInput(route, req.Data); resp != nil {
			return resp, nil
		}
	}
	if resp, handled, err := paths.ReadCertDirect(ctx, route, req); handled {
		return paths.ClipResponse(resp, err)
	}
	return paths.ClipResponse(b.Backend.HandleRequest(ctx, req))
}

// HandleExistenceCheck does for the existence check what HandleRequest does for the request:
// Vault calls it first on every create or update, and the framework's field parsing there would
// otherwise quote a malformed secret or a huge value back in its 400.
func (b *backend) HandleExistenceCheck(ctx context.Context, req *logical.Request) (checkFound bool, exists bool, err error) {
	if resp := paths.ScreenSensitiveInput(b.Route(req.Path), req.Data); resp != nil {
		return true, false, errutil.UserError{Err: resp.Error().Error()}
	}
	req.Storage = b.cache.Wrap(req.Storage)
	checkFound, exists, err = b.Backend.HandleExistenceCheck(ctx, req)
	_, err = paths.ClipResponse(nil, err)
	return checkFound, exists, err
}

// WriteSafe reports whether this node may write storage and talk to CAs.
func (b *backend) WriteSafe() bool { return b.WriteSafeReplicationState() }

// Locks returns the mount's entry locks.
func (b *backend) Locks() *storage.Locks { return b.locks }

// certEvent publishes an event about the named certificate on Vault's event bus; a Vault without
// events is fine. Its path and data_path are the certificate's own path (certs/<name>; Vault
// prepends the mount), so Vault delivers it only to subscribers whose policy may read that path.
func (b *backend) certEvent(ctx context.Context, eventType, name string, modified bool, metadata ...string) {
	p := storage.CertPrefix + name
	md := append([]string{
		logical.EventMetadataPath, p, logical.EventMetadataDataPath, p,
		logical.EventMetadataModified, strconv.FormatBool(modified), "cert", name,
	}, metadata...)
	if err := logical.SendEvent(ctx, b, eventType, md...); err != nil && !errors.Is(err, framework.ErrNoEvents) {
		b.logger.Debug("sending an event failed", "event", eventType, "error", err)
	}
}
