# Vault Agent: log in with AppRole and keep the certificate letsencrypt/certs/web/www, its key and
# its chain in files, re-rendered after every renewal. (e2e/agent_test.go runs this file.)
vault {
  address = "http://127.0.0.1:8200"
}

auto_auth {
  method "approle" {
    mount_path = "auth/approle"
    config = {
      role_id_file_path                   = "/etc/vault-agent/role-id"
      secret_id_file_path                 = "/etc/vault-agent/secret-id"
      remove_secret_id_file_after_reading = false
    }
  }
}

# Reads of certs/<name> carry ttl (seconds until the next planned renewal) and rotation_period:
# the agent re-reads when the ttl ends, whatever this interval says (it governs static secrets
# without them, such as KV). The test sets it far above the certificate's life to prove that.
template_config {
  static_secret_render_interval = "1h"
}

template {
  contents    = "{{ with secret \"letsencrypt/certs/web/www\" }}{{ .Data.certificate }}{{ end }}"
  destination = "/etc/tls/www/cert.pem"
}

template {
  contents    = "{{ with secret \"letsencrypt/certs/web/www\" }}{{ .Data.private_key }}{{ end }}"
  destination = "/etc/tls/www/key.pem"
  perms       = "0600"
}

template {
  contents    = "{{ with secret \"letsencrypt/certs/web/www\" }}{{ range .Data.ca_chain }}{{ . }}\n{{ end }}{{ end }}"
  destination = "/etc/tls/www/chain.pem"
}

# Key, certificate and chain in one file (HAProxy, or anything that must never see a new
# certificate with the old key: one read, one file, written at once).
template {
  contents    = "{{ with secret \"letsencrypt/certs/web/www\" }}{{ .Data.private_key }}\n{{ .Data.certificate }}\n{{ range .Data.ca_chain }}{{ . }}\n{{ end }}{{ end }}"
  destination = "/etc/tls/www/bundle.pem"
  perms       = "0600"
}
