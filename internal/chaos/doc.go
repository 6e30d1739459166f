// Package chaos holds the fault suite: the real stale-exporter binary, two
// replicas, a PostgreSQL cluster of its own and the real Docker engine behind
// a front that cuts connections, while REST, bulk and webhook cleanups run.
// After each fault it checks that container, row, job and event log agree.
package chaos
