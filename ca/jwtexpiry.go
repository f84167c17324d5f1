package ca

import "time"

// JWTKeyNotAfter returns the expiry of the active JWT signing key (zero if
// none is active): no JWT-SVID it signs may outlive it.
func (m *Manager) JWTKeyNotAfter() time.Time {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, s := range m.jwt {
		if s.Status == StatusActive {
			return s.NotAfter
		}
	}
	return time.Time{}
}
