package gatehouse

import "time"

// RecheckTunnels checks every open WebSocket's and stream's session now, as the timers
// do at each expiry: tests that move Config.Now forward call it instead of waiting.
func (g *Gateway) RecheckTunnels() { g.recheckTunnels() }

// SetRefreshLockWait bounds how long a refresh waits for its session's lease (default:
// the whole refresh timeout, 20 s), so that a test sees the wait run out quickly. Call it
// before the first request.
func (g *Gateway) SetRefreshLockWait(d time.Duration) { g.lockWait = d }
