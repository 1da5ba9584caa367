package server

// EventsSent is how many events s has published since it started.
func EventsSent(s *Server) uint64 { return s.eventsSent.Load() }
