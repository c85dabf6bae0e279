// Package journald follows the systemd journal and publishes each entry as
// a bus.Entry, committing its position (a journald cursor, in a file) only
// after the bus acknowledged every entry up to it. A crash or kill -9 then
// restart loses nothing; what is sent twice carries the same ID
// (boot ID, sequence-number ID and sequence number, see Entry IDs in
// docs/journald.md) and the stream's duplicate window drops it.
//
// # Reading
//
// The journal is read through libsystemd's sd-journal API by
// internal/sdj, a small cgo binding that loads libsystemd.so.0 with dlopen
// and reads a batch of entries per call, copying only the fields the
// source uses. go-systemd's sdjournal package, which the source was first
// meant to use, costs a mutex, a map lookup and a C string per field and a
// map per entry (GetEntry): in BenchmarkJournal, GetEntry alone read about
// 116,000 entries/s where journalctl -o export wrote 144,000/s and this
// reader, building entries, managed about 300,000/s (a shared 2-core
// machine: see docs/journald.md) — too slow for the source to keep up
// with journalctl once publishing is added. Without cgo (CGO_ENABLED=0) the
// package builds and the source reports once that it is unavailable.
//
// The known traps of sd-journal are handled here:
//   - After SeekCursor the first Next lands on the cursor's own entry when
//     it still exists: TestCursor tells, and that entry is skipped; when it
//     does not, the entry Next lands on is read (not skipped).
//   - SeekTail then Next returns old entries (one per file): the start
//     "tail" is SeekTail then Previous, which lands on the last entry; an
//     empty journal starts at its head instead, so nothing written later
//     is skipped.
//   - Waiting holds the journal: the source waits in poll(2) on the
//     journal's inotify descriptor and a wake-up pipe, with no lock held,
//     so that cancellation is immediate and an idle source uses no CPU.
//   - sd_journal objects are not thread-safe: every call happens on one
//     goroutine locked to its OS thread (runtime.LockOSThread).
//
// # Concurrency
//
// Run uses three goroutines. One, locked to its OS thread, owns the
// journal: it reads batches of records into a ring of C buffers
// (pipelineBuffers × batchEntries entries ahead at most, sdj.Ring). While
// the journal has entries and a buffer is free it stays inside one cgo
// call (sdj.Journal.Pump), handing each filled buffer over by its index on
// a pipe and taking freed ones back the same way, so once the runtime's
// sysmon has taken its P (a goroutine in a cgo call keeps it until then)
// it holds none of the Go scheduler's Ps: publishing and the embedded
// server keep every P, and the reader gets the CPU time they leave. Its
// thread runs reader_nice nice levels below the daemon (logstreamd's
// default 10 when the bus publishes to JetStream, 0 in core-NATS mode;
// Config.SetReaderNiceDefault): reading takes
// the CPU that publishing and the embedded server's storing leave, and
// the journal holds what is not read yet. In core-NATS mode reading is
// most of the work and sets the rate, so it keeps the daemon's priority.
// When the source stops, the thread's priority is restored before it runs
// other goroutines; where that is not permitted (it needs CAP_SYS_NICE),
// the thread ends with the goroutine.
// The calling goroutine decodes each batch into entries and publishes
// them; Publish blocks when the bus's in-flight window is full, the ring
// runs dry, and reading stops — the source blocks when the publisher
// blocks. After each batch it offers the cursor of the last entry it
// published to the committer, the third goroutine, which calls the sink's
// Flush (it returns once everything published before the call is
// acknowledged) and then writes the cursor file atomically (temporary
// file, fsync, rename, fsync of the directory) — at most once per
// commit_interval, or after commit_entries entries, and never when nothing
// changed. At shutdown the committer flushes once more, with its own
// deadline, and saves the last position if that succeeds. Run returns
// after all three have finished.
//
// # Mapping
//
// See Service and Level for the derivation of service and level. Host is
// _HOSTNAME (else the local host name), PID is _PID (else SYSLOG_PID),
// Facility is SYSLOG_FACILITY, Time is _SOURCE_REALTIME_TIMESTAMP (else
// the entry's __REALTIME_TIMESTAMP), Received is when the source read it.
// The configured fields are copied into Entry.Fields under their journald
// names. A MESSAGE that is not valid UTF-8 is escaped reversibly (see
// Escape) and marked with the field "message_escaped"; one longer than
// max_field_bytes is cut at a character boundary and marked
// "message_truncated". Other copied fields longer than max_field_bytes are
// dropped and counted; field values that are not valid UTF-8 are escaped
// the same way.
//
// # Tests
//
// The tests run a private systemd-journald (package journaldtest) in a
// journald namespace of their own, as root: /lib/systemd/systemd-journald
// with the namespace name as argument creates its sockets in
// /run/systemd/journal.<ns>/ and its files in
// /var/log/journal/<machine-id>.<ns>/, and the source reads that directory
// (path) or the namespace (namespace). Entries are written over the native
// protocol from the test process, by go-systemd's journal package, logger
// --journald and systemd-cat; the last three only know the default socket
// path, so they run in a private mount namespace (unshare -m) where the
// namespace's socket directory is bind-mounted over /run/systemd/journal.
// Entries of a unit come from a writer that moves itself into that unit's
// cgroup first. Each test tags its entries with a unique TEST_ID.
package journald
