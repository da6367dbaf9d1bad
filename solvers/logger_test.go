package solvers

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
)

func TestRedactingLogger(t *testing.T) {
	var buf bytes.Buffer
	base := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Trace})
	l := &redactingLogger{Logger: base, r: newRedactor(map[string]string{"K": "topsecret"})}
	l.Named("child").With("arg", "with topsecret").Info("msg topsecret", "error", errors.New("e topsecret"), "list", []string{"topsecret"})
	l.Debug("x", "n", 3)
	l.StandardLogger(nil).Print("std topsecret")
	out := buf.String()
	assert.NotContains(t, out, "topsecret")
	assert.Contains(t, out, "[redacted]")
	assert.Contains(t, out, "child")
}
