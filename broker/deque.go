package broker

// deque is a FIFO of jobs that can also take a job back at its head (a
// requeued job keeps its place in line). It is a ring buffer that grows by
// doubling; it never shrinks below its high-water mark until emptied.
type deque struct {
	buf  []*job
	head int
	n    int
}

func (d *deque) Len() int { return d.n }

func (d *deque) grow() {
	size := len(d.buf) * 2
	if size == 0 {
		size = 8
	}
	nb := make([]*job, size)
	for i := 0; i < d.n; i++ {
		nb[i] = d.buf[(d.head+i)%len(d.buf)]
	}
	d.buf, d.head = nb, 0
}

// PushBack appends j at the tail.
func (d *deque) PushBack(j *job) {
	if d.n == len(d.buf) {
		d.grow()
	}
	d.buf[(d.head+d.n)%len(d.buf)] = j
	d.n++
}

// PushFront puts j at the head.
func (d *deque) PushFront(j *job) {
	if d.n == len(d.buf) {
		d.grow()
	}
	d.head = (d.head - 1 + len(d.buf)) % len(d.buf)
	d.buf[d.head] = j
	d.n++
}

// PopFront removes and returns the head, or nil.
func (d *deque) PopFront() *job {
	if d.n == 0 {
		return nil
	}
	j := d.buf[d.head]
	d.buf[d.head] = nil
	d.head = (d.head + 1) % len(d.buf)
	d.n--
	if d.n == 0 {
		d.head = 0
		if len(d.buf) > 1024 {
			d.buf = nil // release a large, now empty, buffer
		}
	}
	return j
}

// At returns the i-th job from the head.
func (d *deque) At(i int) *job { return d.buf[(d.head+i)%len(d.buf)] }

// Remove deletes j wherever it is and reports whether it was there. O(n):
// for rare operations (a cancel, a refused commit).
func (d *deque) Remove(j *job) bool {
	for i := 0; i < d.n; i++ {
		if d.At(i) != j {
			continue
		}
		for k := i; k < d.n-1; k++ {
			d.buf[(d.head+k)%len(d.buf)] = d.buf[(d.head+k+1)%len(d.buf)]
		}
		d.buf[(d.head+d.n-1)%len(d.buf)] = nil
		d.n--
		return true
	}
	return false
}
