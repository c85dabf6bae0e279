// Package logstreampb is the generated code of the logstream.v1 gRPC API
// (logstream.proto): the filtered, resumable stream of log entries, with
// control messages for dropped entries and the end of the history.
// Regenerate with ../../generate.sh.
package logstreampb
