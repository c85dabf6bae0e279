//go:build race

package grpc_test

// raceEnabled: the race detector slows this package's hot path (JSON
// decoding above all) about tenfold; load tests scale down.
const raceEnabled = true
