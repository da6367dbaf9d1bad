package acme

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"testing"

	legolog "github.com/go-acme/lego/v4/log"
	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of HTTP handlers and lego.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testLogger(out *syncBuffer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "plugin", Output: out, Level: hclog.Trace, DisableTime: true})
}

// TestSetLogger changes lego's process-wide logger, so it must not run in parallel with tests
// that check lego's output (none does).
func TestSetLogger(t *testing.T) {
	t.Cleanup(func() { SetLogger(nil) })

	first, second := &syncBuffer{}, &syncBuffer{}
	SetLogger(testLogger(first))
	legolog.Infof("[%s] acme: Trying to solve DNS-01", "example.com")
	legolog.Warnf("something odd")
	lines := strings.Split(strings.TrimSpace(first.String()), "\n")
	require.Len(t, lines, 2)
	assert.Equal(t, "[DEBUG] plugin.lego: [example.com] acme: Trying to solve DNS-01", lines[0])
	assert.Equal(t, "[DEBUG] plugin.lego: something odd", lines[1])

	// The last call wins.
	SetLogger(testLogger(second))
	legolog.Println("to the second logger")
	assert.NotContains(t, first.String(), "second logger")
	assert.Contains(t, second.String(), "[DEBUG] plugin.lego: to the second logger")

	// A logger that drops Debug drops lego's lines.
	quiet := &syncBuffer{}
	SetLogger(hclog.New(&hclog.LoggerOptions{Output: quiet, Level: hclog.Info}))
	legolog.Infof("hidden")
	assert.Empty(t, quiet.String())

	// nil discards.
	SetLogger(nil)
	legolog.Infof("nowhere")
	assert.NotContains(t, second.String(), "nowhere")
}

// TestSetLoggerReceivesLegoOutput drives lego into logging by itself: a badNonce answer makes its
// request layer log "retry due to: …" and try again.
func TestSetLoggerReceivesLegoOutput(t *testing.T) {
	t.Cleanup(func() { SetLogger(nil) })
	out := &syncBuffer{}
	SetLogger(testLogger(out))

	ca := newFakeCA(t)
	c := ca.dial(t, "")
	ca.setFail("/new-account", fakeFailure{status: http.StatusBadRequest, problem: problemNS + "badNonce", times: 1})
	_, _, err := c.Register(t.Context(), Registration{TermsOfServiceAgreed: true})
	require.NoError(t, err, "lego retries a bad nonce")
	assert.Equal(t, 2, ca.count("POST /new-account"))
	assert.Contains(t, out.String(), "[DEBUG] plugin.lego: retry due to: ")
	assert.Contains(t, out.String(), "badNonce")
}
