package backend

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// countingSystem counts the replication-state lookups: over gRPC each is a round trip into Vault.
type countingSystem struct {
	logical.SystemView
	replication atomic.Int64
}

func (s *countingSystem) ReplicationState() consts.ReplicationState {
	s.replication.Add(1)
	return s.SystemView.ReplicationState()
}

// A plain read of certs/<name> is answered by the path's own handler without the framework's
// per-request replication-state lookup, with the same answer the framework gives; anything else
// (parameters, other paths, other operations) still goes through the framework.
func TestCertReadSkipsFrameworkRoundTrip(t *testing.T) {
	ca := newFakeCA(t)
	conf := logical.TestBackendConfig()
	sys := &countingSystem{SystemView: conf.System}
	conf.System, conf.StorageView, conf.Logger = sys, &logical.InmemStorage{}, hclog.NewNullLogger()
	lb, err := New(context.Background(), conf, Options{Dial: ca.dial, Solvers: &fakeSolvers{}})
	require.NoError(t, err)
	b := lb.(*backend)
	t.Cleanup(func() { b.Cleanup(context.Background()) })
	s := b.storage
	setup(t, b, s)
	resp := request(t, b, s, logical.CreateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com"})
	require.False(t, resp.IsError(), resp.Error())

	before := sys.replication.Load()
	direct := request(t, b, s, logical.ReadOperation, "certs/web", nil)
	require.Equal(t, before, sys.replication.Load(), "a plain certificate read asked Vault for the replication state")
	framed, err := b.Backend.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "certs/web", Storage: s})
	require.NoError(t, err)
	require.Greater(t, sys.replication.Load(), before, "the framework's own path no longer asks: this test measures nothing")
	for _, d := range []map[string]any{direct.Data, framed.Data} {
		delete(d, "ttl") // time-dependent
		delete(d, "rotation_period")
	}
	require.Equal(t, framed.Data, direct.Data)
	require.Contains(t, direct.Data["private_key"], "PRIVATE KEY")

	// A missing certificate: no answer (404), as through the framework.
	missing := request(t, b, s, logical.ReadOperation, "certs/web-none", nil)
	require.Nil(t, missing)
	// A name the handler refuses is refused the same way.
	bad := request(t, b, s, logical.ReadOperation, "certs/web/../x", nil)
	require.True(t, bad.IsError())

	// Reads with parameters, lists and writes take the framework's way (and its warnings).
	n := sys.replication.Load()
	warned := request(t, b, s, logical.ReadOperation, "certs/web", map[string]any{"bogus": "1"})
	require.Greater(t, sys.replication.Load(), n)
	require.NotEmpty(t, warned.Warnings)
	n = sys.replication.Load()
	request(t, b, s, logical.ListOperation, "certs/", nil)
	require.Greater(t, sys.replication.Load(), n)
}

// While a new specification (other names, another key type) is being issued, a read serves the
// current certificate and describes that certificate and its key, not the ones requested.
func TestReadDuringReissueDescribesTheServedCertificate(t *testing.T) {
	b, s, ca := getTestBackend(t)
	setup(t, b, s)
	request(t, b, s, logical.UpdateOperation, "roles/web", map[string]any{"allowed_key_types": "*"})
	resp := request(t, b, s, logical.CreateOperation, "certs/web", map[string]any{"role": "web", "domains": "old.example.com"})
	require.Equal(t, storage.StatusValid, resp.Data["status"], resp.Error())
	served := request(t, b, s, logical.ReadOperation, "certs/web", nil)
	require.Equal(t, "ec", served.Data["private_key_type"])

	ca.fail = &acme.Error{Kind: acme.ErrRejected, ProblemType: "urn:ietf:params:acme:error:rejectedIdentifier", Detail: "no"}
	resp = request(t, b, s, logical.UpdateOperation, "certs/web", map[string]any{"role": "web", "domains": "new.example.com", "key_type": "rsa2048", "wait": "0s"})
	require.False(t, resp.IsError(), resp.Error())
	require.Eventually(t, func() bool {
		c, err := storage.LoadCert(context.Background(), s, "web")
		return err == nil && c.Attempts > 0
	}, 5*time.Second, 10*time.Millisecond, "the re-issue never failed")

	read := request(t, b, s, logical.ReadOperation, "certs/web", nil)
	require.Equal(t, served.Data["certificate"], read.Data["certificate"], "the current certificate is served meanwhile")
	require.Equal(t, served.Data["private_key"], read.Data["private_key"])
	require.Equal(t, "ec", read.Data["private_key_type"], "private_key_type is the served key's")
	require.Equal(t, served.Data["key_type"], read.Data["key_type"])
	require.Equal(t, []string{"old.example.com"}, read.Data["domains"], "domains are the served certificate's")
	require.NotEqual(t, storage.StatusValid, read.Data["status"])
}
