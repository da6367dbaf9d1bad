//go:build ignore

// gen_provider_env writes provider_env.go, the environment variables each lego
// DNS provider documents, from the lego module in the module cache (the
// version go.mod requires). Run it after a lego upgrade:
//
//	go generate ./solvers/
//
// TestProviderEnvIsGenerated fails until it has been run.
package main

import (
	"fmt"
	"os"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers/internal/legoenv"
)

func main() {
	if _, err := os.Stat("gen_provider_env.go"); err != nil {
		fmt.Fprintln(os.Stderr, "gen_provider_env: run it in the solvers directory: go generate ./solvers/")
		os.Exit(1)
	}
	dir, version, err := legoenv.Locate()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen_provider_env:", err)
		os.Exit(1)
	}
	src, err := legoenv.Generate(dir, version)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen_provider_env:", err)
		os.Exit(1)
	}
	if err := os.WriteFile("provider_env.go", src, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gen_provider_env:", err)
		os.Exit(1)
	}
}
