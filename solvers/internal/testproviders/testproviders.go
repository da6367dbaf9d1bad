// Package testproviders lets a test binary declare DNS providers that exist
// only in that binary (the fakes in solvers/provider's export_test.go), so
// that the parent side accepts their names and credential names. Production
// code never sets it. This package must not import anything of the plugin.
package testproviders

// Env maps a test-only provider name to the credential names it accepts. It
// is nil in every real build; a test binary sets it in an init function,
// before any goroutine reads it, and never changes it afterwards.
var Env map[string][]string
