// Package journald follows the systemd journal and publishes each entry as
// a bus.Entry, committing its cursor only after the bus acknowledged.
//
// TODO: full package documentation.
package journald
