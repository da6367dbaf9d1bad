package solvers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers/internal/wire"
)

// Solver presents and removes DNS-01 records for one configuration. All
// methods are safe for concurrent use; Present for all names of one order may
// run at once.
type Solver interface {
	// Present creates the TXT record for domain's DNS-01 challenge. domain may
	// be "*.example.test": the provider is given the identifier without "*.",
	// as lego's own solver does.
	Present(ctx context.Context, domain, token, keyAuth string) error
	// CleanUp removes the record created by Present.
	CleanUp(ctx context.Context, domain, token, keyAuth string) error
	// WaitPropagation blocks until every configured resolver (or, with none
	// configured, every authoritative nameserver of the zone, found through
	// the system resolver) answers the TXT record _acme-challenge.<domain>.
	// (following CNAMEs) with the value for keyAuth, or until the propagation
	// timeout or ctx ends; the error then names the domain and the
	// nameservers that did not see the record yet.
	WaitPropagation(ctx context.Context, domain, keyAuth string) error
}

// Factory opens solvers. Implementations must be safe for concurrent use.
type Factory interface {
	// Check builds the provider from cfg in a fresh child and reports
	// configuration errors (unknown provider, missing credentials) as
	// *ConfigError. No error text contains a credential value.
	Check(ctx context.Context, cfg DNSConfig) error
	// Solver returns a solver for the config stored under key. It reuses a
	// running child while cfg is unchanged and restarts it when cfg changed.
	Solver(ctx context.Context, key string, cfg DNSConfig) (Solver, error)
	// Evict stops the child for key (config deleted or changed).
	Evict(key string)
	// Close stops every child. Called when the backend is cleaned up.
	Close()
}

const (
	// DefaultIdleTimeout is how long a child may be unused before it stops.
	DefaultIdleTimeout = 10 * time.Minute
	// defaultStartTimeout bounds starting and configuring a child.
	defaultStartTimeout = 30 * time.Second
	// maxCallTime bounds one Present/CleanUp when ctx has no deadline.
	maxCallTime = 5 * time.Minute
)

// ErrFactoryClosed is returned after Close.
var ErrFactoryClosed = errors.New("dns solver factory is closed")

// ProcessFactory is the Factory that runs each DNS configuration's lego
// provider in a child process of the plugin binary. It is safe for concurrent
// use. The zero value is not usable; call NewProcessFactory.
type ProcessFactory struct {
	executable   string
	logger       hclog.Logger
	idleTimeout  time.Duration
	startTimeout time.Duration

	// Propagation settings; replaced only by tests.
	systemResolvers func() ([]string, error)
	authPort        string

	mu          sync.Mutex
	children    map[string]*child
	closed      bool
	janitorOnce sync.Once
	stopJanitor chan struct{}
	bg          sync.WaitGroup // janitor and background stops
}

var _ Factory = (*ProcessFactory)(nil)

// Option adjusts a ProcessFactory.
type Option func(*ProcessFactory)

// WithIdleTimeout sets how long an unused child keeps running (default
// DefaultIdleTimeout).
func WithIdleTimeout(d time.Duration) Option {
	return func(f *ProcessFactory) {
		if d > 0 {
			f.idleTimeout = d
		}
	}
}

// WithStartTimeout sets how long starting and configuring a child may take
// (default 30s).
func WithStartTimeout(d time.Duration) Option {
	return func(f *ProcessFactory) {
		if d > 0 {
			f.startTimeout = d
		}
	}
}

// NewProcessFactory returns a factory that starts children by running
// executable (the plugin's own os.Executable()) with the argument
// ChildCommand. Children unused for the idle timeout (10 minutes unless
// WithIdleTimeout) are stopped. logger may be nil.
func NewProcessFactory(executable string, logger hclog.Logger, opts ...Option) *ProcessFactory {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	f := &ProcessFactory{
		executable:      executable,
		logger:          logger,
		idleTimeout:     DefaultIdleTimeout,
		startTimeout:    defaultStartTimeout,
		systemResolvers: resolvConfResolvers,
		authPort:        "53",
		children:        map[string]*child{},
		stopJanitor:     make(chan struct{}),
	}
	for _, o := range opts {
		o(f)
	}
	return f
}

// child is one running (or starting) dns-solver process.
type child struct {
	hash     [32]byte
	provider string
	redact   *redactor

	ready    chan struct{} // closed once start finished; fields below are then fixed
	startErr error
	client   *plugin.Client
	rpc      *wire.RPCClient
	tmpDir   string

	broken   atomic.Bool
	stopOnce sync.Once

	// guarded by ProcessFactory.mu
	inflight int
	lastUsed time.Time
}

func (c *child) started() bool {
	select {
	case <-c.ready:
		return true
	default:
		return false
	}
}

// dead reports whether a started child can no longer serve calls.
func (c *child) dead() bool {
	if !c.started() {
		return false
	}
	return c.startErr != nil || c.broken.Load() || c.client.Exited()
}

// stop kills the process (after its start finished) and removes its
// private directory. Idempotent.
func (c *child) stop() {
	<-c.ready
	c.stopOnce.Do(func() {
		if c.client != nil {
			c.client.Kill()
		}
		if c.tmpDir != "" {
			_ = os.RemoveAll(c.tmpDir)
		}
	})
}

func (f *ProcessFactory) newChild(cc *checkedConfig) *child {
	return &child{
		hash:     cc.hash,
		provider: cc.Provider,
		redact:   newRedactor(cc.Credentials),
		ready:    make(chan struct{}),
		lastUsed: time.Now(),
	}
}

// launch starts and configures c; it always closes c.ready.
func (f *ProcessFactory) launch(c *child, cc *checkedConfig, purpose string) {
	defer close(c.ready)
	started := time.Now()
	err := f.start(c, cc)
	if err != nil {
		c.startErr = err
		if c.client != nil {
			c.client.Kill()
		}
		if c.tmpDir != "" {
			_ = os.RemoveAll(c.tmpDir)
		}
		if IsConfigError(err) {
			f.logger.Debug("dns provider configuration rejected", "provider", cc.Provider, "purpose", purpose)
		} else {
			f.logger.Warn("dns solver child failed to start", "provider", cc.Provider, "purpose", purpose, "error", err.Error())
		}
		return
	}
	f.logger.Debug("dns solver child ready", "provider", cc.Provider, "purpose", purpose, "pid", c.client.ID(), "elapsed", time.Since(started).Round(time.Millisecond).String())
}

func (f *ProcessFactory) start(c *child, cc *checkedConfig) error {
	if f.executable == "" {
		return errors.New("dns solver: plugin executable path is not set")
	}
	tmpDir, err := os.MkdirTemp("", "dns-solver-")
	if err != nil {
		return fmt.Errorf("dns solver: creating private directory: %w", err)
	}
	c.tmpDir = tmpDir

	cmd := exec.Command(f.executable, wire.ChildCommand)
	cmd.Env = childEnv(cc, tmpDir)
	cmd.Dir = tmpDir
	setProcAttr(cmd)

	logger := &redactingLogger{Logger: f.logger.Named("dns_solver").With("provider", cc.Provider), r: c.redact}
	c.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  wire.Handshake,
		Plugins:          plugin.PluginSet{wire.PluginName: &wire.Plugin{}},
		Cmd:              cmd,
		SkipHostEnv:      true,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolNetRPC},
		AutoMTLS:         true,
		Logger:           logger,
		StartTimeout:     f.startTimeout,
	})
	proto, err := c.client.Client()
	if err != nil {
		return fmt.Errorf("dns solver: starting child for provider %q: %s", cc.Provider, c.redact.String(err.Error()))
	}
	raw, err := proto.Dispense(wire.PluginName)
	if err != nil {
		return fmt.Errorf("dns solver: connecting to child for provider %q: %s", cc.Provider, c.redact.String(err.Error()))
	}
	rc, ok := raw.(*wire.RPCClient)
	if !ok {
		return fmt.Errorf("dns solver: unexpected plugin type %T", raw)
	}
	c.rpc = rc

	ctx, cancel := context.WithTimeout(context.Background(), f.startTimeout)
	defer cancel()
	keys := make([]string, 0, len(cc.Credentials))
	for k := range cc.Credentials {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	res, err := c.call(ctx, wire.MethodConfigure, wire.ConfigureArgs{
		Provider: cc.Provider, Resolvers: cc.resolvers, CredentialKeys: keys, Zones: cc.zones,
	})
	if err != nil {
		return fmt.Errorf("dns solver: configuring provider %q: %w", cc.Provider, err)
	}
	if res.Err != "" {
		msg := c.redact.String(res.Err)
		if res.ConfigErr {
			return &ConfigError{msg: withAliasHint(msg)}
		}
		return fmt.Errorf("dns solver: configuring provider %q: %s", cc.Provider, msg)
	}
	return nil
}

// call runs one RPC. Transport failures mark the child broken. Errors are
// redacted; a ctx error is returned as is (it carries no child text).
func (c *child) call(ctx context.Context, method string, args any) (wire.Result, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, maxCallTime)
		defer cancel()
	}
	var res wire.Result
	call := c.rpc.Go(method, args, &res)
	select {
	case <-call.Done:
		if call.Error != nil {
			c.broken.Store(true)
			return wire.Result{}, fmt.Errorf("dns solver child for provider %q failed: %s", c.provider, c.redact.String(call.Error.Error()))
		}
		return res, nil
	case <-ctx.Done():
		// res may still be written by the RPC client; it is not read again.
		return wire.Result{}, ctx.Err()
	}
}

// acquire returns a started child for key and cfg with one in-flight
// reservation, starting one when needed. With replace, a child for another
// config under key is stopped; without, it is an error (the caller holds a
// solver for a config that has since changed).
func (f *ProcessFactory) acquire(ctx context.Context, key string, cc *checkedConfig, replace bool) (*child, error) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil, ErrFactoryClosed
	}
	var old *child
	c := f.children[key]
	if c != nil && !sameHash(c.hash, cc.hash) && !replace {
		f.mu.Unlock()
		return nil, fmt.Errorf("DNS configuration %q changed since this solver was opened; open a new solver", key)
	}
	if c != nil && (!sameHash(c.hash, cc.hash) || c.dead()) {
		delete(f.children, key)
		old, c = c, nil
		f.bg.Add(1) // under mu, so never after Close's Wait
	}
	if c == nil {
		c = f.newChild(cc)
		f.children[key] = c
		go func() {
			f.launch(c, cc, "solver")
			if c.startErr != nil {
				f.forget(key, c)
			}
		}()
		f.janitorOnce.Do(func() {
			f.bg.Add(1)
			go f.janitor()
		})
	}
	c.inflight++
	f.mu.Unlock()

	if old != nil {
		f.logger.Debug("restarting dns solver child", "dns_config", key, "provider", cc.Provider)
		go func() {
			defer f.bg.Done()
			old.stop()
		}()
	}

	select {
	case <-c.ready:
	case <-ctx.Done():
		f.release(c)
		return nil, ctx.Err()
	}
	if c.startErr != nil {
		f.release(c)
		return nil, c.startErr
	}
	return c, nil
}

func (f *ProcessFactory) release(c *child) {
	f.mu.Lock()
	c.inflight--
	c.lastUsed = time.Now()
	f.mu.Unlock()
}

// forget removes c from the map if it is still registered under key.
func (f *ProcessFactory) forget(key string, c *child) {
	f.mu.Lock()
	if f.children[key] == c {
		delete(f.children, key)
	}
	f.mu.Unlock()
}

// janitor stops idle children until Close.
func (f *ProcessFactory) janitor() {
	defer f.bg.Done()
	every := min(max(f.idleTimeout/4, 10*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-f.stopJanitor:
			return
		case <-t.C:
		}
		var idle []*child
		f.mu.Lock()
		for key, c := range f.children {
			if !c.started() || c.inflight > 0 {
				continue
			}
			if c.dead() || time.Since(c.lastUsed) >= f.idleTimeout {
				delete(f.children, key)
				idle = append(idle, c)
			}
		}
		f.mu.Unlock()
		for _, c := range idle {
			f.logger.Debug("stopping idle dns solver child", "provider", c.provider)
			c.stop()
		}
	}
}

// Check implements Factory. It starts a fresh child for cfg, builds the
// provider and stops the child again. Safe for concurrent use.
func (f *ProcessFactory) Check(ctx context.Context, cfg DNSConfig) error {
	cc, err := checkConfig(cfg)
	if err != nil {
		return err
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return ErrFactoryClosed
	}
	f.bg.Add(1)
	f.mu.Unlock()
	c := f.newChild(cc)
	go func() {
		defer f.bg.Done()
		f.launch(c, cc, "check")
		c.stop()
	}()
	select {
	case <-c.ready:
		return c.startErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Solver implements Factory. The returned Solver keeps working across child
// restarts (idle stop, crash, Evict) by starting a child again when needed.
// Safe for concurrent use.
func (f *ProcessFactory) Solver(ctx context.Context, key string, cfg DNSConfig) (Solver, error) {
	cc, err := checkConfig(cfg)
	if err != nil {
		return nil, err
	}
	c, err := f.acquire(ctx, key, cc, true)
	if err != nil {
		return nil, err
	}
	f.release(c)
	return &processSolver{
		f:   f,
		key: key,
		cc:  cc,
		checker: &propagationChecker{
			resolvers:       cc.resolvers,
			systemResolvers: f.systemResolvers,
			authPort:        f.authPort,
			logger:          f.logger.Named("dns_propagation"),
		},
	}, nil
}

// Evict implements Factory: it stops the child for key, waiting for it to
// exit. Safe for concurrent use.
func (f *ProcessFactory) Evict(key string) {
	f.mu.Lock()
	c := f.children[key]
	delete(f.children, key)
	f.mu.Unlock()
	if c != nil {
		f.logger.Debug("evicting dns solver child", "dns_config", key, "provider", c.provider)
		c.stop()
	}
}

// Close implements Factory: it stops every child and waits for them to exit.
// Later calls to Check and Solver, and to existing solvers, fail with
// ErrFactoryClosed. Safe to call more than once.
func (f *ProcessFactory) Close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		f.bg.Wait()
		return
	}
	f.closed = true
	all := make([]*child, 0, len(f.children))
	for _, c := range f.children {
		all = append(all, c)
	}
	clear(f.children)
	close(f.stopJanitor)
	f.mu.Unlock()

	var wg sync.WaitGroup
	for _, c := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.stop()
		}()
	}
	wg.Wait()
	f.bg.Wait()
}

// processSolver is the Solver for one key and config.
type processSolver struct {
	f       *ProcessFactory
	key     string
	cc      *checkedConfig
	checker *propagationChecker
}

func (s *processSolver) Present(ctx context.Context, domain, token, keyAuth string) error {
	return s.do(ctx, wire.MethodPresent, "presenting", domain, token, keyAuth)
}

func (s *processSolver) CleanUp(ctx context.Context, domain, token, keyAuth string) error {
	return s.do(ctx, wire.MethodCleanUp, "cleaning up", domain, token, keyAuth)
}

func (s *processSolver) do(ctx context.Context, method, verb, domain, token, keyAuth string) error {
	d, err := checkDomain(domain)
	if err != nil {
		return err
	}
	if !wire.InZones(d, s.cc.zones) && (len(s.cc.delegated) == 0 || !wire.InZones(d, s.cc.delegated)) {
		if len(s.cc.delegated) > 0 {
			return configErrorf("%s is outside this DNS configuration's zones (%s) and delegated domains (%s)", d, strings.Join(s.cc.zones, ", "), strings.Join(s.cc.delegated, ", "))
		}
		return configErrorf("%s is outside this DNS configuration's zones (%s)", d, strings.Join(s.cc.zones, ", "))
	}
	if keyAuth == "" || strings.IndexByte(keyAuth, 0) >= 0 {
		return errors.New("dns solver: key authorization is empty or invalid")
	}
	c, err := s.f.acquire(ctx, s.key, s.cc, false)
	if err != nil {
		return err
	}
	defer s.f.release(c)
	res, err := c.call(ctx, method, wire.ChallengeArgs{Domain: d, Token: token, KeyAuth: keyAuth})
	if err != nil {
		return fmt.Errorf("%s DNS-01 record for %s: %w", verb, d, err)
	}
	if res.Err != "" {
		msg := c.redact.String(res.Err)
		if res.ConfigErr {
			return &ConfigError{msg: msg}
		}
		return fmt.Errorf("%s DNS-01 record for %s: %s", verb, d, msg)
	}
	return nil
}

func (s *processSolver) WaitPropagation(ctx context.Context, domain, keyAuth string) error {
	return s.checker.wait(ctx, domain, keyAuth, s.cc.PropagationTimeout, s.cc.PollingInterval)
}

// withAliasHint explains lego's rfc2136 names: since v4.35 lego reports missing settings under
// their DNSUPDATE_ names, while the RFC2136_ names users know are accepted as aliases.
func withAliasHint(msg string) string {
	if strings.Contains(msg, "DNSUPDATE_") {
		return msg + " (give it as " + strings.ReplaceAll(strings.TrimSpace(msg[strings.Index(msg, "DNSUPDATE_"):]), "DNSUPDATE_", "RFC2136_") + " or under its DNSUPDATE_ name)"
	}
	return msg
}
