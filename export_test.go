package gatehouse

// RecheckTunnels checks every open WebSocket's and stream's session now, as the timers
// do at each expiry: tests that move Config.Now forward call it instead of waiting.
func (g *Gateway) RecheckTunnels() { g.recheckTunnels() }
