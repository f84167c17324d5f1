// Package privdir keeps Signet's local state safe from other local users:
// it checks that data and socket directories (and every directory above
// them) belong to the running user or root and are not writable by
// others, creates them with tight modes, reads state files only when they
// are private regular files owned by the running user, writes files
// atomically through O_NOFOLLOW temporary files, locks a data directory
// against a second process, and refuses to replace a Unix socket that a
// live process answers on. It also holds the default filesystem layout.
package privdir
