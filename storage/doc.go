// Package storage is the plugin's persisted model: the storage key prefixes, the entry types
// stored under them, their load/store/delete functions, and the per-mount locks that guard
// read-modify-write of an entry.
//
// Both the HTTP API (paths) and the Vault lifecycle (backend) build on it. It is a leaf: it imports
// no other package of this plugin and no lego package, so entries hold only our own types and a
// move to another ACME library touches acme and solvers alone.
package storage
