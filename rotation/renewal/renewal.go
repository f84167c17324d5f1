// Package renewal is Signet's renewal policy: the one place that says at
// which fraction of a credential's lifetime it is renewed, replaced or
// rotated. Every loop that renews something (the agent, the server's
// scheduler, the CA lifecycle, the Vault broker and client) asks a Policy
// instead of spelling its own fraction.
//
// The fractions of Default, and why:
//
//	what                               when                  why
//	SVID, agent on its own (Unpushed)  1/2 of the lifetime   the server may be down: leave half the life to retry
//	SVID, push stream live (Pushed)    85% of the lifetime   the server schedules it; the agent only steps in late
//	SVID, server schedule (Jitter)     uniform in 50%..80%   spread a fleet issued together, before 85%
//	CA prepare (CAPrepare)             1/2 of the lifetime   as SPIRE: the next authority is in the bundle early
//	CA activate (CAActivate)           1/6 of it remaining   as SPIRE: the bundle with the next one has spread
//	Vault renewable lease or token     2/3 of the TTL        leaves 1/3 of the TTL to retry a failed renewal
//	Vault non-renewable (re-read)      85% of the TTL        a new read before the old value expires
//
// Lifetimes are measured from issuance to expiry (for X.509-SVIDs the
// caller removes the issuer's backdating first). Fractions other than the
// jitter window are applied in integer arithmetic on time.Duration
// (life*Num/Den), so results are exact to the nanosecond.
package renewal

import (
	"encoding/binary"
	"io"
	"time"
)

// Fraction is Num/Den of a duration.
type Fraction struct{ Num, Den int64 }

// Of returns d*Num/Den, rounded towards zero.
func (f Fraction) Of(d time.Duration) time.Duration {
	return d * time.Duration(f.Num) / time.Duration(f.Den)
}

// Float returns the fraction as a float64.
func (f Fraction) Float() float64 { return float64(f.Num) / float64(f.Den) }

// Policy holds the renewal fractions. The zero value is not usable; start
// from Default.
type Policy struct {
	// Unpushed: an agent that hears nothing from a server renews its
	// SVIDs at this fraction of their lifetime.
	Unpushed Fraction
	// Pushed: while a push stream is live the server schedules renewals
	// and the agent renews on its own only at this fraction.
	Pushed Fraction
	// JitterMin and JitterMax bound the server's jittered renewal time.
	JitterMin, JitterMax Fraction
	// CAPrepare: the next authority is prepared once this fraction of
	// the active one's lifetime has passed.
	CAPrepare Fraction
	// CAActivate: the prepared authority is activated once only this
	// fraction of the active one's lifetime remains.
	CAActivate Fraction
	// LeaseRenew: renewable Vault leases and tokens are renewed at this
	// fraction of their TTL.
	LeaseRenew Fraction
	// LeaseReread: non-renewable (or capped) Vault leases are replaced by
	// a new read, and tokens by a new login, at this fraction of the TTL.
	LeaseReread Fraction
}

// Default returns Signet's renewal policy (see the package doc).
func Default() Policy {
	return Policy{
		Unpushed:    Fraction{1, 2},
		Pushed:      Fraction{85, 100},
		JitterMin:   Fraction{1, 2},
		JitterMax:   Fraction{4, 5},
		CAPrepare:   Fraction{1, 2},
		CAActivate:  Fraction{1, 6},
		LeaseRenew:  Fraction{2, 3},
		LeaseReread: Fraction{85, 100},
	}
}

// RenewAt returns when a credential valid from start to notAfter is
// renewed by its holder on its own: at Unpushed of its lifetime.
func (p Policy) RenewAt(start, notAfter time.Time) time.Time {
	return start.Add(p.Unpushed.Of(notAfter.Sub(start)))
}

// PushedRenewAt returns when the holder renews on its own while the server
// pushes renewals: at Pushed of the lifetime.
func (p Policy) PushedRenewAt(start, notAfter time.Time) time.Time {
	return start.Add(p.Pushed.Of(notAfter.Sub(start)))
}

// Jittered returns a renewal time drawn uniformly between JitterMin and
// JitterMax of the lifetime [issuedAt, notAfter], reading 8 bytes from
// rnd, so that a fleet of credentials issued together does not renew
// together.
//
// If notAfter is not after issuedAt it returns issuedAt (renew now). If
// rnd fails it returns the earliest time of the window, which is safe:
// renewing early never lets a credential expire.
func (p Policy) Jittered(issuedAt, notAfter time.Time, rnd io.Reader) time.Time {
	life := notAfter.Sub(issuedAt)
	if life <= 0 {
		return issuedAt
	}
	lo := time.Duration(float64(life) * p.JitterMin.Float())
	hi := time.Duration(float64(life) * p.JitterMax.Float())
	var b [8]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return issuedAt.Add(lo)
	}
	// 53 random bits give a uniform float64 in [0, 1).
	u := float64(binary.BigEndian.Uint64(b[:])>>11) / (1 << 53)
	off := lo + time.Duration(u*float64(hi-lo))
	off = min(max(off, lo), hi)
	return issuedAt.Add(off)
}

// CAPrepareAt returns when the next authority is prepared for an active
// one valid from notBefore to notAfter.
func (p Policy) CAPrepareAt(notBefore, notAfter time.Time) time.Time {
	return notBefore.Add(p.CAPrepare.Of(notAfter.Sub(notBefore)))
}

// CAActivateAt returns when the prepared authority replaces an active one
// valid from notBefore to notAfter.
func (p Policy) CAActivateAt(notBefore, notAfter time.Time) time.Time {
	return notAfter.Add(-p.CAActivate.Of(notAfter.Sub(notBefore)))
}

// LeaseRenewAt returns when a Vault lease (or token) obtained at issued
// with the given TTL is next acted on, and whether that action is a
// renewal (renewable) or a new read or login (not renewable).
func (p Policy) LeaseRenewAt(issued time.Time, ttl time.Duration, renewable bool) (time.Time, bool) {
	if renewable {
		return issued.Add(p.LeaseRenew.Of(ttl)), true
	}
	return issued.Add(p.LeaseReread.Of(ttl)), false
}
