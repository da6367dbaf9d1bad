# The AppRole's only right in the engine: read the certificates under certs/web/.
path "letsencrypt/certs/web/*" {
  capabilities = ["read"]
}
