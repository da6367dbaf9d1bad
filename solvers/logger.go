package solvers

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"

	"github.com/hashicorp/go-hclog"
)

// redactingLogger is handed to go-plugin for one child: everything the child
// writes to stderr, and go-plugin's own messages about it, pass through the
// child's redactor before reaching the plugin's log. Safe for concurrent use.
type redactingLogger struct {
	hclog.Logger
	r *redactor
}

var _ hclog.Logger = (*redactingLogger)(nil)

func (l *redactingLogger) args(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case string:
			out[i] = l.r.String(v)
		case error:
			out[i] = errors.New(l.r.String(v.Error()))
		case []string:
			s := make([]string, len(v))
			for j := range v {
				s[j] = l.r.String(v[j])
			}
			out[i] = s
		case fmt.Stringer:
			out[i] = l.r.String(v.String())
		case []byte:
			out[i] = l.r.String(string(v))
		default:
			out[i] = a
		}
	}
	return out
}

func (l *redactingLogger) Log(level hclog.Level, msg string, args ...any) {
	l.Logger.Log(level, l.r.String(msg), l.args(args)...)
}
func (l *redactingLogger) Trace(msg string, args ...any) {
	l.Logger.Trace(l.r.String(msg), l.args(args)...)
}
func (l *redactingLogger) Debug(msg string, args ...any) {
	l.Logger.Debug(l.r.String(msg), l.args(args)...)
}
func (l *redactingLogger) Info(msg string, args ...any) {
	l.Logger.Info(l.r.String(msg), l.args(args)...)
}
func (l *redactingLogger) Warn(msg string, args ...any) {
	l.Logger.Warn(l.r.String(msg), l.args(args)...)
}
func (l *redactingLogger) Error(msg string, args ...any) {
	l.Logger.Error(l.r.String(msg), l.args(args)...)
}
func (l *redactingLogger) With(args ...any) hclog.Logger {
	return &redactingLogger{Logger: l.Logger.With(l.args(args)...), r: l.r}
}
func (l *redactingLogger) Named(name string) hclog.Logger {
	return &redactingLogger{Logger: l.Logger.Named(name), r: l.r}
}
func (l *redactingLogger) ResetNamed(name string) hclog.Logger {
	return &redactingLogger{Logger: l.Logger.ResetNamed(name), r: l.r}
}
func (l *redactingLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.StandardWriter(opts), "", 0)
}
func (l *redactingLogger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &lineWriter{l: l}
}

// lineWriter logs each written line at debug level, redacted.
type lineWriter struct{ l *redactingLogger }

func (w *lineWriter) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(bytes.NewReader(p))
	for sc.Scan() {
		w.l.Debug(sc.Text())
	}
	return len(p), nil
}
