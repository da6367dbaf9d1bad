# letsencrypt-metrics: what Prometheus's token may do, and nothing else.
path "letsencrypt/metrics" {
  capabilities = ["read"]
}
