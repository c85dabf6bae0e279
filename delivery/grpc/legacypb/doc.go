// Package legacypb is the generated code of the unversioned LogService
// (logservice.proto, kept exactly as its clients have it: no package, so
// the method is /LogService/StreamLogs). logstreamd serves it beside
// logstream.v1 for old clients. Regenerate with ../generate.sh.
package legacypb
