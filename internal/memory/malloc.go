package memory

/*
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

static int zmws_mmap_threshold(int n) {
#ifdef __GLIBC__
	return mallopt(M_MMAP_THRESHOLD, n);
#else
	return 0;
#endif
}

static int zmws_malloc_trim(void) {
#ifdef __GLIBC__
	return malloc_trim(0);
#else
	return 0;
#endif
}

// zmws_malloc_in_use is the bytes malloc has handed out and not had back
// (in its arenas and mmap'd), or -1 when the C library cannot say.
static long long zmws_malloc_in_use(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
	struct mallinfo2 m = mallinfo2();
	return (long long)(m.uordblks + m.hblkhd);
#else
	return -1;
#endif
}
*/
import "C"

// mmapThreshold sets glibc's M_MMAP_THRESHOLD; false when the C library
// has no such setting.
func mmapThreshold(n int) bool { return C.zmws_mmap_threshold(C.int(n)) == 1 }

// mallocTrim calls glibc's malloc_trim(0): the free pages of every arena go
// back to the system.
func mallocTrim() { C.zmws_malloc_trim() }

// mallocInUse is the bytes C code (libzmq) holds from malloc, and whether
// the C library can say (glibc 2.33 and later).
func mallocInUse() (int64, bool) {
	n := int64(C.zmws_malloc_in_use())
	return n, n >= 0
}
