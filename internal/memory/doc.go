// Package memory gives zmwsd's memory back to the operating system once a
// burst is over, and reads how much of it is resident.
//
// Two allocators hold zmwsd's memory: libzmq's (glibc malloc, in C) holds
// every frame a peer sent until zmwsd reads it, and every frame of a
// multipart message until its last frame comes; the Go heap holds what
// zmwsd read. Neither returns freed memory to the system on its own soon
// enough: glibc raises its mmap threshold after the first big frame is
// freed, so later big frames come from its heap and stay there when freed,
// and small freed frames stay in its arenas; the Go runtime collects
// garbage only when allocation asks for it (or every two minutes) and gives
// freed pages back slowly. Setup fixes the first; a Trimmer the others
// (with malloc_trim and debug.FreeOSMemory, when its looks say a burst is
// over). zmwsd does both (--mem-trim); scripts/hostile-multipart measures
// them (docs/SECURITY.md).
//
//	memory.Setup()
//	go (&memory.Trimmer{Every: 5 * time.Second, Logger: log}).Run(ctx)
package memory
