// Command vault-plugin-secrets-letsencrypt is the Vault plugin binary. Run by Vault, it serves the
// secrets engine; run with the argument "dns-solver" by the plugin itself, it serves one isolated
// DNS-01 provider process.
package main

import (
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/plugin"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/backend"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers/provider"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == solvers.ChildCommand {
		provider.Serve()
		return
	}
	meta := &api.PluginAPIClientMeta{}
	flags := meta.FlagSet()
	if err := flags.Parse(os.Args[1:]); err != nil {
		fatal(err)
	}
	// lego's logger is process-wide; its protocol messages go to Vault's log at debug level
	// (go-plugin forwards the plugin's JSON stderr).
	acme.SetLogger(logger())
	err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: backend.Factory,
		TLSProviderFunc:    api.VaultPluginTLSProvider(meta.GetTLSConfig()),
	})
	if err != nil {
		fatal(err)
	}
}

// logger is the process's own logger, in the JSON form go-plugin forwards to Vault's log.
func logger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "vault-plugin-secrets-letsencrypt", JSONFormat: true, Level: hclog.Debug})
}

func fatal(err error) {
	logger().Error("plugin shutting down", "error", err)
	os.Exit(1)
}
