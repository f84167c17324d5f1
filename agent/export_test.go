package agent

import "crypto/x509"

// AgentSVIDLeaf returns the leaf of the agent's own SVID, or nil before
// attestation (for tests in agent_test).
func (a *Agent) AgentSVIDLeaf() *x509.Certificate {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.agentSVID == nil {
		return nil
	}
	return a.agentSVID.Chain[0]
}

// HealthReason is why the health service reports NOT_SERVING, or "".
func (a *Agent) HealthReason() string {
	r, _ := a.health()
	return r
}
