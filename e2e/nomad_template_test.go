package e2e

// Nomad's template block is consul-template embedded in the Nomad client. Nomad itself is not run:
// from v1.7 it is under a licence that is not open source (the project does not use it), and the
// module proxy does not serve the releases before it. Instead the template blocks of the job file
// the README shows (e2e/testdata/nomad/web.nomad.hcl) are taken out of it and rendered by the real
// consul-template against the real plugin, as Nomad's client would.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/stretchr/testify/require"
)

// nomadTemplate is the part of a Nomad template block the test uses.
type nomadTemplate struct {
	Data         string `hcl:"data"`
	Destination  string `hcl:"destination"`
	Perms        string `hcl:"perms"`
	ChangeMode   string `hcl:"change_mode"`
	ChangeSignal string `hcl:"change_signal"`
}

// nomadTemplates parses a Nomad job file (HCL) and returns its template blocks, at any depth.
func nomadTemplates(t testing.TB, src string) []nomadTemplate {
	t.Helper()
	f, err := hcl.Parse(src)
	require.NoError(t, err, "parse the Nomad job file")
	var out []nomadTemplate
	var walk func(list *ast.ObjectList)
	walk = func(list *ast.ObjectList) {
		for _, item := range list.Items {
			if len(item.Keys) > 0 && item.Keys[0].Token.Text == "template" {
				var tpl nomadTemplate
				require.NoError(t, hcl.DecodeObject(&tpl, item.Val), "decode a template block")
				out = append(out, tpl)
				continue
			}
			if obj, ok := item.Val.(*ast.ObjectType); ok {
				walk(obj.List)
			}
		}
	}
	root, ok := f.Node.(*ast.ObjectList)
	require.True(t, ok, "the job file's root is not a list of blocks")
	walk(root)
	return out
}

// TestNomadTemplateRendersCertificate takes the template blocks out of the README's Nomad job file
// and renders them with the real consul-template against certs/<name> of a 180-second
// certificate: the certificate, key and chain files must be right (the key matches, the chain
// signed the certificate, perms as the job says), and follow the plugin's next renewal within 10 s
// of the API serving it. Every block asks Nomad to send the task SIGHUP on change.
func TestNomadTemplateRendersCertificate(t *testing.T) {
	t.Parallel()
	devPluginMu.RLock() // the plugin's timers must stay alive throughout (see faults_test.go)
	defer devPluginMu.RUnlock()

	c := env.RootClient(t)
	_, name, _, _, first, life := issueSoakCert(t, c, "nomad")
	firstSerial := first.Leaf.SerialNumber.Text(16)

	tpls := nomadTemplates(t, testdataWith(t, "nomad/web.nomad.hcl", "letsencrypt/certs/web/www", Mount+"/certs/"+name))
	require.Len(t, tpls, 3, "the job file's template blocks: certificate, key, chain")
	dir := t.TempDir()
	taskDir := filepath.Join(dir, "task") // Nomad's task directory: destinations are relative to it
	files := renderedFiles{}
	var cfg strings.Builder
	// The task's Vault token: Nomad renews it itself, so the embedded consul-template does not.
	fmt.Fprintf(&cfg, "vault {\n  address = %q\n  renew_token = false\n}\n", env.VaultAddr)
	for i, tpl := range tpls {
		require.Equalf(t, "signal", tpl.ChangeMode, "template %s: change_mode", tpl.Destination)
		require.Equalf(t, "SIGHUP", tpl.ChangeSignal, "template %s: change_signal", tpl.Destination)
		require.Containsf(t, tpl.Data, `{{ with secret "`+Mount+"/certs/"+name+`" }}`, "template %s reads the certificate", tpl.Destination)
		require.Falsef(t, filepath.IsAbs(tpl.Destination) || strings.Contains(tpl.Destination, ".."), "template %s: a destination inside the task directory", tpl.Destination)
		src := filepath.Join(dir, fmt.Sprintf("template-%d.ctmpl", i))
		require.NoError(t, os.WriteFile(src, []byte(tpl.Data), 0o600))
		dest := filepath.Join(taskDir, tpl.Destination)
		fmt.Fprintf(&cfg, "template {\n  source = %q\n  destination = %q\n", src, dest)
		if tpl.Perms != "" {
			fmt.Fprintf(&cfg, "  perms = %q\n", tpl.Perms)
		}
		cfg.WriteString("}\n")
		switch filepath.Base(tpl.Destination) {
		case "cert.pem":
			files.Cert = dest
		case "key.pem":
			files.Key = dest
			require.Equal(t, "600", tpl.Perms, "the key's template sets perms")
		case "chain.pem":
			files.Chain = dest
		}
	}
	require.NotEmpty(t, files.Cert, "a template renders secrets/cert.pem")
	require.NotEmpty(t, files.Key, "a template renders secrets/key.pem")
	require.NotEmpty(t, files.Chain, "a template renders secrets/chain.pem")
	cfgPath := filepath.Join(dir, "consul-template.hcl")
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg.String()), 0o600))
	ctLog := filepath.Join(dir, "consul-template.log")
	exited := runConsulTemplate(t, consulTemplateBin(t), cfgPath, dir, ctLog, "VAULT_TOKEN="+readToken(t, c, name))

	probe, torn := files.follow(t, exited, "consul-template (the job's templates)", ctLog, firstSerial)
	key, err := os.ReadFile(files.Key)
	require.NoError(t, err)
	require.Equal(t, strings.TrimSpace(fmt.Sprint(first.Data["private_key"])), strings.TrimSpace(string(key)), "secrets/key.pem holds the key as read")
	st, err := os.Stat(files.Key)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "secrets/key.pem perms")
	chain, err := os.ReadFile(files.Chain)
	require.NoError(t, err)
	certs, err := ParseCertsPEM(string(chain))
	require.NoError(t, err)
	require.Len(t, certs, len(first.CAChain), "secrets/chain.pem holds the ca_chain")

	rep := followRenewals(t, c, name, firstSerial, 1, 100*time.Millisecond, consumerBound, time.Now().Add(life), probe)
	t.Logf("Nomad's templates: the renewal reached the files %v after the API served it; %d looks between two writes", rep.Delays(), torn.Load())
}

// TestReadmeShowsConsumerConfigs: the README shows each configuration the consumer tests run
// (e2e/testdata/{agent,consul-template,nginx,nomad}) exactly as the tests read it, so that the two
// cannot drift apart.
func TestReadmeShowsConsumerConfigs(t *testing.T) {
	t.Parallel()
	readme := readText(t, filepath.Join(RepoRoot(), "README.md"))
	var shown int
	for _, sub := range []string{"agent", "consul-template", "nginx", "nomad"} {
		entries, err := os.ReadDir(filepath.Join(RepoRoot(), "e2e", "testdata", sub))
		require.NoError(t, err)
		for _, e := range entries {
			body := readText(t, filepath.Join(RepoRoot(), "e2e", "testdata", sub, e.Name()))
			require.Containsf(t, readme, strings.TrimSpace(body), "README.md does not show e2e/testdata/%s/%s as it is: copy the file into its section", sub, e.Name())
			shown++
		}
	}
	require.GreaterOrEqual(t, shown, 5, "the consumer tests' configuration files")
}
