package backend

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
)

// recordedEvents is an EventsSender that keeps what it is sent.
type recordedEvents struct {
	mu     sync.Mutex
	events []map[string]string
}

func (r *recordedEvents) SendEvent(_ context.Context, typ logical.EventType, ev *logical.EventData) error {
	md := map[string]string{"type": string(typ)}
	for k, v := range ev.GetMetadata().AsMap() {
		if s, ok := v.(string); ok {
			md[k] = s
		}
	}
	r.mu.Lock()
	r.events = append(r.events, md)
	r.mu.Unlock()
	return nil
}

// Events name the certificate's own path as path and data_path, so Vault delivers them only to
// subscribers whose policy may read certs/<name>; failures carry no error text.
func TestEventsCarryTheCertificatePath(t *testing.T) {
	ca := newFakeCA(t)
	s := &logical.InmemStorage{}
	rec := &recordedEvents{}
	conf := logical.TestBackendConfig()
	conf.StorageView = s
	conf.Logger = hclog.NewNullLogger()
	conf.EventsSender = rec
	raw, err := New(context.Background(), conf, Options{Dial: ca.dial, Solvers: &fakeSolvers{}})
	require.NoError(t, err)
	b := raw.(*backend)
	t.Cleanup(func() { b.Cleanup(context.Background()) })
	setup(t, b, b.storage)

	request(t, b, s, logical.CreateOperation, "certs/web/app", map[string]any{"role": "web", "domains": "www.example.com"})
	ca.fail = errors.Join(acme.ErrRejected, errors.New("urn:ietf:params:acme:error:rejectedIdentifier: secret-ish detail"))
	request(t, b, s, logical.CreateOperation, "certs/web/bad", map[string]any{"role": "web", "domains": "bad.example.com"})

	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Len(t, rec.events, 2)
	issued, failed := rec.events[0], rec.events[1]
	require.Equal(t, eventIssued, issued["type"])
	require.Equal(t, "certs/web/app", issued[logical.EventMetadataDataPath])
	require.Equal(t, "certs/web/app", issued[logical.EventMetadataPath])
	require.Equal(t, "true", issued[logical.EventMetadataModified])
	require.Equal(t, eventFailed, failed["type"])
	require.Equal(t, "certs/web/bad", failed[logical.EventMetadataDataPath])
	require.Equal(t, "false", failed[logical.EventMetadataModified])
	for _, ev := range rec.events {
		for k, v := range ev {
			require.NotContains(t, v, "secret-ish", "event field %s", k)
		}
	}
}
