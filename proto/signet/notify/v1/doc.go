// Package notifyv1 is the generated Go code of signet.notify.v1, the push
// channel from the server to its agents (see notify.proto).
package notifyv1
