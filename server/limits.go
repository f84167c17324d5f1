package server

import "github.com/signet-id/signet/server/limits"

// limitsConfig is the configured agent-listener limits, with the methods
// open to peers without a client certificate taken from the access policy:
// such peers' calls to other methods are refused before their message is
// read.
func (s *Server) limitsConfig() limits.Config {
	c := s.cfg.Limits
	if c.Clock == nil {
		c.Clock = s.cfg.Clock
	}
	c.OpenMethod = func(method string) bool { return policy[method] == accessAny }
	return c
}
