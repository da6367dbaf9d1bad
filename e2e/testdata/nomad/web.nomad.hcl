# A Nomad job whose task gets its TLS certificate from the letsencrypt engine. Nomad's template
# block is consul-template embedded: it re-reads certs/<name> when the read's ttl ends (the next
# planned renewal), re-renders the files and sends the task SIGHUP (nginx reloads on it).
# e2e/nomad_template_test.go renders these template blocks with the real consul-template.
job "web" {
  datacenters = ["dc1"]
  type        = "service"

  group "web" {
    network {
      port "https" {
        static = 443
      }
    }

    task "nginx" {
      driver = "docker"

      config {
        image = "nginx:1.27"
        ports = ["https"]
      }

      # A Vault token for the task whose policy reads letsencrypt/certs/web/* (see
      # e2e/testdata/agent/policy.hcl); with workload identities, the Vault role that grants it.
      vault {
        role = "web-certs"
      }

      template {
        data          = <<EOH
{{ with secret "letsencrypt/certs/web/www" }}{{ .Data.certificate }}
{{ range .Data.ca_chain }}{{ . }}
{{ end }}{{ end }}
EOH
        destination   = "secrets/cert.pem"
        change_mode   = "signal"
        change_signal = "SIGHUP"
      }

      template {
        data          = <<EOH
{{ with secret "letsencrypt/certs/web/www" }}{{ .Data.private_key }}{{ end }}
EOH
        destination   = "secrets/key.pem"
        perms         = "600"
        change_mode   = "signal"
        change_signal = "SIGHUP"
      }

      template {
        data          = <<EOH
{{ with secret "letsencrypt/certs/web/www" }}{{ range .Data.ca_chain }}{{ . }}
{{ end }}{{ end }}
EOH
        destination   = "secrets/chain.pem"
        change_mode   = "signal"
        change_signal = "SIGHUP"
      }
    }
  }
}
