package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"
)

// A real Vault HA cluster for the HA test: n servers of the environment's vault binary with
// integrated storage (raft), each on free loopback ports without TLS, sharing the environment's
// plugin directory (so its plugin binary and sha256 apply) or one of the test's own
// (startVaultCluster: the docs test's operator guide and the upgrade test register plugins there). Node 1 is initialised with one unseal
// key, the others join it with `vault operator raft join` and are unsealed. Everything is stopped
// in t.Cleanup; each server's pid is also written to STATE_DIR/<id>-nodeN.pid, so that
// scripts/env-down.sh (and its watchdog) stops them should the test process die.

type haNode struct {
	Name        string
	Addr        string // http://127.0.0.1:port
	ClusterAddr string // https://127.0.0.1:port
	Dir         string
	Log         string
	pidFile     string
	cmd         *exec.Cmd
	exited      chan struct{}
}

type haCluster struct {
	ID        string
	Dir       string
	PluginDir string // plugin_directory of every node
	Nodes     []*haNode
	RootToken string
	UnsealKey string
}

// startHACluster starts, initialises, unseals and joins an n-node raft cluster with the
// environment's plugin directory, and waits until every node is a voter.
func startHACluster(t *testing.T, n int) *haCluster {
	t.Helper()
	return startVaultCluster(t, n, filepath.Join(env.StateDir, "plugins"))
}

// startVaultCluster is startHACluster with pluginDir as every node's plugin_directory (nothing is
// registered or mounted: the docs test's operator guide does that itself).
func startVaultCluster(t *testing.T, n int, pluginDir string) *haCluster {
	t.Helper()
	cl := &haCluster{ID: Unique("ha-cluster"), PluginDir: pluginDir}
	cl.Dir = filepath.Join(env.StateDir, cl.ID)
	require.NoError(t, os.MkdirAll(cl.Dir, 0o700))
	t.Cleanup(func() { cl.stop(t) })

	for i := 1; i <= n; i++ {
		node := &haNode{Name: fmt.Sprintf("node%d", i), Dir: filepath.Join(cl.Dir, fmt.Sprintf("node%d", i))}
		require.NoError(t, os.MkdirAll(filepath.Join(node.Dir, "raft"), 0o700))
		api, cluster := freeTCPPort(t), freeTCPPort(t)
		node.Addr, node.ClusterAddr = fmt.Sprintf("http://127.0.0.1:%d", api), fmt.Sprintf("https://127.0.0.1:%d", cluster)
		cfg := fmt.Sprintf(`ui = false
disable_mlock = true
api_addr = %q
cluster_addr = %q
plugin_directory = %q
log_level = "info"
storage "raft" {
  path = %q
  node_id = %q
  performance_multiplier = 1
}
listener "tcp" {
  address = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable = true
}
`, node.Addr, node.ClusterAddr, cl.PluginDir, filepath.Join(node.Dir, "raft"), node.Name, api, cluster)
		cfgFile := filepath.Join(node.Dir, "vault.hcl")
		require.NoError(t, os.WriteFile(cfgFile, []byte(cfg), 0o600))
		node.Log = filepath.Join(node.Dir, "vault.log")
		logf, err := os.Create(node.Log)
		require.NoError(t, err)
		cmd := exec.Command(env.VaultBin, "server", "-config="+cfgFile)
		cmd.Env = cleanVaultEnv(node.Dir)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		require.NoError(t, cmd.Start(), "start %s", node.Name)
		_ = logf.Close()
		node.cmd, node.exited = cmd, make(chan struct{})
		go func() { _ = cmd.Wait(); close(node.exited) }()
		node.pidFile = filepath.Join(env.StateDir, fmt.Sprintf("%s-%s.pid", cl.ID, node.Name))
		require.NoError(t, os.WriteFile(node.pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600))
		cl.Nodes = append(cl.Nodes, node)
		t.Logf("HA %s: vault server pid %d at %s (cluster %s), log %s", node.Name, cmd.Process.Pid, node.Addr, node.ClusterAddr, node.Log)
	}
	for _, node := range cl.Nodes {
		cl.waitFor(t, node, 60*time.Second, "listening", func() bool {
			r, err := node.do(context.Background(), "", http.MethodGet, "sys/health", nil)
			return err == nil && r.Status > 0
		})
	}

	// Initialise and unseal node 1; it becomes active.
	out := cl.cli(t, cl.Nodes[0], "operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json")
	var init struct {
		Keys      []string `json:"unseal_keys_b64"`
		RootToken string   `json:"root_token"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &init), "vault operator init output")
	require.Len(t, init.Keys, 1)
	cl.UnsealKey, cl.RootToken = init.Keys[0], init.RootToken
	cl.cli(t, cl.Nodes[0], "operator", "unseal", cl.UnsealKey)
	cl.waitFor(t, cl.Nodes[0], 60*time.Second, "active", func() bool { return cl.isActive(cl.Nodes[0]) })

	// The others join node 1 and are unsealed.
	for _, node := range cl.Nodes[1:] {
		cl.cli(t, node, "operator", "raft", "join", cl.Nodes[0].Addr)
		cl.cli(t, node, "operator", "unseal", cl.UnsealKey)
		cl.waitFor(t, node, 60*time.Second, "unsealed standby", func() bool {
			r, err := node.do(context.Background(), "", http.MethodGet, "sys/seal-status", nil)
			return err == nil && r.Status == http.StatusOK && r.Body != nil && !jsonBool(r.Body, "sealed")
		})
	}
	// Wait until raft has every node as a voter (autopilot promotes joined nodes after they are
	// stable), so that a step-down can elect another leader.
	cl.waitFor(t, cl.Nodes[0], 90*time.Second, "all raft peers voters", func() bool {
		voters, _ := cl.raftPeers(t)
		return voters == len(cl.Nodes)
	})
	_, desc := cl.raftPeers(t)
	t.Logf("HA cluster %s up: raft peers %s", cl.ID, desc)
	return cl
}

// cleanVaultEnv is this process's environment without VAULT_* variables and with HOME=home.
func cleanVaultEnv(home string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VAULT_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, "HOME="+home)
}

// freeTCPPort returns a loopback port that was free a moment ago.
func freeTCPPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func jsonBool(body []byte, key string) bool {
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	b, _ := m[key].(bool)
	return b
}

// nodeEnv is the environment seen through node: the harness helpers (Client, CLI, SetupIssuer)
// then talk to that node.
func (cl *haCluster) nodeEnv(node *haNode) *Env {
	e := *env
	e.VaultAddr, e.VaultToken = node.Addr, cl.RootToken
	return &e
}

// client is a root API client of node.
func (cl *haCluster) client(t testing.TB, node *haNode) *vaultapi.Client {
	t.Helper()
	return cl.nodeEnv(node).RootClient(t)
}

// do sends one request to node with token (empty: none).
func (n *haNode) do(ctx context.Context, token, method, path string, data map[string]any) (*Resp, error) {
	cfg := vaultapi.DefaultConfig()
	cfg.Address, cfg.MaxRetries, cfg.Timeout = n.Addr, 0, 30*time.Second
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.ClearToken()
	if token != "" {
		c.SetToken(token)
	}
	return Do(ctx, c, method, path, data)
}

// cli runs the vault CLI against node with the root token (once known) and requires success.
func (cl *haCluster) cli(t testing.TB, node *haNode, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, _, err := cl.nodeEnv(node).CLI(ctx, cl.RootToken, args...)
	require.NoError(t, err, "%s: vault %v (log %s)", node.Name, args, node.Log)
	return out
}

// waitFor polls cond every 250 ms until it holds; it fails when node exits or timeout passes.
func (cl *haCluster) waitFor(t testing.TB, node *haNode, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		select {
		case <-node.exited:
			require.FailNowf(t, "vault exited", "%s exited while waiting for %s; see %s", node.Name, what, node.Log)
		default:
		}
		require.Truef(t, time.Now().Before(deadline), "%s: not %s within %s; see %s", node.Name, what, timeout, node.Log)
		time.Sleep(250 * time.Millisecond)
	}
}

// leader is sys/leader as seen by node.
type leaderInfo struct {
	HAEnabled     bool   `json:"ha_enabled"`
	IsSelf        bool   `json:"is_self"`
	LeaderAddress string `json:"leader_address"`
}

func (n *haNode) leader() (leaderInfo, error) {
	var li leaderInfo
	r, err := n.do(context.Background(), "", http.MethodGet, "sys/leader", nil)
	if err != nil {
		return li, err
	}
	if r.Status != http.StatusOK {
		return li, fmt.Errorf("sys/leader on %s: %s", n.Name, r)
	}
	err = json.Unmarshal(r.Body, &li)
	return li, err
}

func (cl *haCluster) isActive(n *haNode) bool {
	li, err := n.leader()
	return err == nil && li.IsSelf
}

// active returns the node that says it is active (sys/leader is_self), and checks that every
// other node names it as leader; nil while there is none or the nodes disagree.
func (cl *haCluster) active() *haNode {
	var act *haNode
	for _, n := range cl.Nodes {
		li, err := n.leader()
		if err != nil {
			return nil
		}
		if li.IsSelf {
			if act != nil {
				return nil
			}
			act = n
		}
	}
	if act == nil {
		return nil
	}
	for _, n := range cl.Nodes {
		if li, err := n.leader(); err != nil || li.LeaderAddress != act.Addr {
			return nil
		}
	}
	return act
}

// waitActive waits until the cluster agrees on an active node other than not (nil: any).
func (cl *haCluster) waitActive(t testing.TB, timeout time.Duration, not *haNode) *haNode {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if a := cl.active(); a != nil && a != not {
			return a
		}
		require.Truef(t, time.Now().Before(deadline), "no agreed active node (other than %v) within %s", not, timeout)
		time.Sleep(250 * time.Millisecond)
	}
}

// raftPeers counts the voters of the raft configuration and describes it.
func (cl *haCluster) raftPeers(t testing.TB) (int, string) {
	t.Helper()
	a := cl.active()
	if a == nil {
		return 0, "no active node"
	}
	r, err := a.do(context.Background(), cl.RootToken, http.MethodGet, "sys/storage/raft/configuration", nil)
	if err != nil || r.Status != http.StatusOK {
		return 0, fmt.Sprint(err, r)
	}
	cfg, _ := r.Data["config"].(map[string]any)
	servers, _ := cfg["servers"].([]any)
	voters, desc := 0, ""
	for _, s := range servers {
		m, _ := s.(map[string]any)
		if v, _ := m["voter"].(bool); v {
			voters++
		}
		desc += fmt.Sprintf("[%v leader=%v voter=%v] ", m["node_id"], m["leader"], m["voter"])
	}
	return voters, desc
}

// stop terminates every server (SIGTERM, then SIGKILL after 15 s) and removes the pid files. Vault
// stops its plugin processes on the way down; any left over (a SIGKILLed server) are killed too.
func (cl *haCluster) stop(t testing.TB) {
	for _, n := range cl.Nodes {
		if n.cmd == nil || n.cmd.Process == nil {
			continue
		}
		pid := n.cmd.Process.Pid
		plugins := pluginPIDs(pid, cl.PluginDir)
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.exited:
		case <-time.After(15 * time.Second):
			_ = n.cmd.Process.Kill()
			<-n.exited
			t.Logf("HA %s (pid %d) killed after SIGTERM timed out", n.Name, pid)
		}
		for _, p := range plugins {
			if syscall.Kill(p, 0) == nil && !isZombie(p) {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
		_ = os.Remove(n.pidFile)
	}
}
