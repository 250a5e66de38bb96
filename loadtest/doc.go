// Package loadtest is redbandit's load driver, in the spirit of
// redis-benchmark and memtier_benchmark: it sends recommendation requests to
// Redis from a number of clients, checks every answer, and reports the
// throughput, the errors by kind and the latency percentiles from a
// log-linear (HDR-style) histogram.
//
// Targets:
//
//	redis        EVALSHA_RO of lua/recommend.lua (what store.Recommend sends)
//	fcall        FCALL_RO rb_recommend (store.RecommendFCall)
//	client-side  the baseline: fetch θ and A⁻¹ of every scored arm in one
//	             pipelined round trip and score in Go
//	ping         PING, the round-trip floor
//	http         the sidecar's POST /v1/recommend (at Config.SidecarURL)
//	http-ping    the sidecar's GET /healthz, the floor of an HTTP round trip
//
// Clients (Config.Client): ClientGo sends through rueidis (one connection
// per client) and Go's net/http client; ClientLean writes RESP or HTTP/1.1
// by hand and reads the reply on the client's goroutine over one
// connection, as redis-benchmark and wrk do, so that the latency measured
// is the server's and the network's rather than a client library's. The
// client-side target always uses rueidis.
//
// Every target reports Redis's own time per request (INFO commandstats).
// The http target also reports the sidecar's, from its GET /metrics before
// and after: its handler's time per request and the part of it spent in
// its Redis call, so that what the sidecar adds splits into its own work,
// its Redis round trip and the HTTP hop.
//
// Run either tests an existing model (Config.Model) or, with
// Config.Products > 0, creates a synthetic model of that size under a unique
// name (the reference shop's layout with its one-hot groups when the
// dimension is 15) and deletes it afterwards unless Config.Keep is set.
//
// Closed loop (the default), each client sends its next request (or batch of
// Config.Pipeline requests) when the previous answer arrives and the latency
// is measured from the send. Open loop (Config.Rate > 0), request start
// times are scheduled at the given total rate and latency is measured from
// the scheduled time, so a server that stalls is charged for the requests
// that queued behind the stall (no coordinated omission).
package loadtest
