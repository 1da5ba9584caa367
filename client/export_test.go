package client

import "time"

// SetTimeout changes c's per-attempt timeout between requests, so a test can
// time out one request and give the next one time.
func (c *Client) SetTimeout(d time.Duration) {
	c.mu.Lock()
	c.cfg.Timeout = d
	c.mu.Unlock()
}
