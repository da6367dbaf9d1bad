# consul-template: the certificate letsencrypt/certs/web/www (with its chain) and its key for nginx,
# and an nginx reload once both are written, after every renewal. The token comes from VAULT_TOKEN
# (or vault_agent_token_file); it needs read on the certificate. (e2e/nginx_reload_test.go runs this
# file.)
vault {
  address = "http://127.0.0.1:8200"
}

template {
  contents    = "{{ with secret \"letsencrypt/certs/web/www\" }}{{ .Data.certificate }}\n{{ range .Data.ca_chain }}{{ . }}\n{{ end }}{{ end }}"
  destination = "/etc/nginx/tls/www.pem"
  command     = ["nginx", "-s", "reload"]
}

template {
  contents    = "{{ with secret \"letsencrypt/certs/web/www\" }}{{ .Data.private_key }}{{ end }}"
  destination = "/etc/nginx/tls/www.key"
  perms       = "0600"
  command     = ["nginx", "-s", "reload"]
}
