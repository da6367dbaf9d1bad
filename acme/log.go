package acme

import (
	"log"
	"sync"
	"sync/atomic"

	legolog "github.com/go-acme/lego/v4/log"
	"github.com/hashicorp/go-hclog"
)

// SetLogger sends the log output of lego (the ACME library under this package, and the DNS
// providers the solvers use) to l.Named("lego"). Every line is logged at Debug level with lego's
// "[INFO]"/"[WARN]" prefix removed (hclog StandardLoggerOptions with InferLevels and ForceLevel
// Debug; ForceLevel decides the level). A nil l discards lego's output.
//
// It is process-wide because lego's logger is a package-level variable
// (github.com/go-acme/lego/v4/log.Logger) shared by every client of every mount in the process;
// this is acceptable because lego logs only protocol events (retries, URLs, domains), never keys or
// credentials. Call it from main before serving: the first call installs an adapter in lego's
// variable, which must not race with lego using it. Later calls only switch the adapter's target
// atomically, so they are safe at any time; the last call wins.
func SetLogger(l hclog.Logger) {
	if l == nil {
		l = hclog.NewNullLogger()
	}
	std := l.Named("lego").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true, ForceLevel: hclog.Debug})
	legoLog.target.Store(std)
	legoLogInstall.Do(func() { legolog.Logger = &legoLog })
}

var (
	legoLog        legoLogger
	legoLogInstall sync.Once
)

// legoLogger is the legolog.StdLogger installed in lego; it forwards to the logger of the last
// SetLogger call.
type legoLogger struct {
	target atomic.Pointer[log.Logger]
}

func (a *legoLogger) Fatal(args ...any)                 { a.target.Load().Fatal(args...) }
func (a *legoLogger) Fatalln(args ...any)               { a.target.Load().Fatalln(args...) }
func (a *legoLogger) Fatalf(format string, args ...any) { a.target.Load().Fatalf(format, args...) }
func (a *legoLogger) Print(args ...any)                 { a.target.Load().Print(args...) }
func (a *legoLogger) Println(args ...any)               { a.target.Load().Println(args...) }
func (a *legoLogger) Printf(format string, args ...any) { a.target.Load().Printf(format, args...) }
