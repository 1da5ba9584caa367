package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/zmws/zmws/protocol"
)

// recordV1 is the version byte of the job record layout described in doc.go.
// A new layout takes the next value; decoders keep reading the old ones.
const recordV1 = 1

// serviceV1 is the version byte of a service record: version, then the
// FirstSeen time. serviceV2 adds a byte of service flags after it; a
// service with no flag set is written as serviceV1, so a journal of
// services never paused reads as before.
const (
	serviceV1 = 1
	serviceV2 = 2
)

// Service flags.
const (
	svcPaused   = 1 << 0
	svcDraining = 1 << 1
)

// countsV1 is the version byte of a service's counters: version, then
// uvarints Completed and Failed.
const countsV1 = 1

// scheduleV1 is the version byte of a schedule's last tick: version, the
// LastTick time, then the LastJob string.
const scheduleV1 = 1

// Record flags.
const (
	flagSync      = 1 << 0
	flagTruncated = 1 << 1
	flagExitCode  = 1 << 2 // an ExitCode varint follows the flags
	flagOwner     = 1 << 3 // an Owner string follows the output
	flagPriority  = 1 << 4 // a Priority varint follows (the Owner, or) the output
	flagsKnown    = flagSync | flagTruncated | flagExitCode | flagOwner | flagPriority
)

// appendRecord appends j's encoding (layout version 1) to dst.
func appendRecord(dst []byte, j *JobRecord) []byte {
	dst = append(dst, recordV1)
	// State, Key and Finished come first: the index maintenance in Commit
	// and Prune reads them without decoding the rest.
	dst = appendString(dst, j.State)
	dst = appendString(dst, j.Key)
	dst = appendTime(dst, j.Finished)
	dst = appendString(dst, j.ID)
	dst = appendString(dst, j.Service)
	var flags byte
	if j.Sync {
		flags |= flagSync
	}
	if j.Truncated {
		flags |= flagTruncated
	}
	if j.ExitCode != nil {
		flags |= flagExitCode
	}
	if j.Owner != "" {
		flags |= flagOwner
	}
	if j.Priority != 0 {
		flags |= flagPriority
	}
	dst = append(dst, flags)
	if j.ExitCode != nil {
		dst = binary.AppendVarint(dst, int64(*j.ExitCode))
	}
	dst = binary.AppendVarint(dst, int64(j.Attempts))
	dst = binary.AppendVarint(dst, int64(j.Retries))
	dst = binary.AppendVarint(dst, int64(j.TTR))
	dst = appendTime(dst, j.Created)
	dst = appendTime(dst, j.Started)
	dst = appendTime(dst, j.NotBefore)
	dst = appendString(dst, j.Worker)
	dst = appendString(dst, j.Code)
	dst = appendString(dst, j.Error)
	if j.Params == nil {
		dst = binary.AppendUvarint(dst, 0)
	} else {
		dst = binary.AppendUvarint(dst, uint64(len(j.Params))+1)
		// Sorted, so one record always encodes to the same bytes.
		var arr [8]string
		keys := arr[:0]
		for k := range j.Params {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			dst = appendString(dst, k)
			dst = appendString(dst, j.Params[k])
		}
	}
	if j.Input == nil {
		dst = binary.AppendUvarint(dst, 0)
	} else {
		dst = binary.AppendUvarint(dst, uint64(len(j.Input))+1)
		for _, f := range j.Input {
			dst = appendBytes(dst, f)
		}
	}
	dst = appendBytes(dst, j.Output)
	if j.Owner != "" {
		dst = appendString(dst, j.Owner)
	}
	if j.Priority != 0 {
		dst = binary.AppendVarint(dst, int64(j.Priority))
	}
	return dst
}

// appendString appends a uvarint length and s.
func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// appendBytes appends uvarint len(b)+1 and b, or 0 for a nil b.
func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendUvarint(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(b))+1)
	return append(dst, b...)
}

// appendTime appends t as varint Unix seconds and uvarint nanoseconds. The
// zero Time is the seconds of time.Time{}.Unix(), so it round-trips.
func appendTime(dst []byte, t time.Time) []byte {
	dst = binary.AppendVarint(dst, t.Unix())
	return binary.AppendUvarint(dst, uint64(t.Nanosecond()))
}

// errTruncated and its siblings say what is wrong with a record; the caller
// wraps them with ErrCorrupt, the file and the job.
var (
	errTruncated = errors.New("record truncated")
	errTrailing  = errors.New("trailing bytes after record")
)

// decoder reads a record. The first error sticks; later reads return zero
// values.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = fmt.Errorf("byte %d: %w", d.off, err)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if d.off >= len(d.b) {
		d.fail(errTruncated)
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		if n == 0 {
			d.fail(errTruncated)
		} else {
			d.fail(errors.New("uvarint overflows 64 bits"))
		}
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		if n == 0 {
			d.fail(errTruncated)
		} else {
			d.fail(errors.New("varint overflows 64 bits"))
		}
		return 0
	}
	d.off += n
	return v
}

// int reads a varint that must fit an int.
func (d *decoder) int() int {
	v := d.varint()
	if int64(int(v)) != v {
		d.fail(fmt.Errorf("%d overflows int", v))
		return 0
	}
	return int(v)
}

// take returns the next n bytes, aliasing the input.
func (d *decoder) take(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail(errTruncated)
		return nil
	}
	b := d.b[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return b
}

// rawString returns a string field's bytes, aliasing the input.
func (d *decoder) rawString() []byte { return d.take(d.uvarint()) }

func (d *decoder) string() string { return string(d.rawString()) }

// bytes returns a copy of a bytes field: nil stays nil, empty stays empty.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n == 0 {
		return nil
	}
	b := d.take(n - 1)
	if d.err != nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

// count reads the count+1 of a list or map whose elements take at least
// minSize bytes each; nilList reports a nil list.
func (d *decoder) count(minSize int) (n int, nilList bool) {
	c := d.uvarint()
	if c == 0 {
		return 0, d.err == nil
	}
	if c-1 > uint64(len(d.b)-d.off)/uint64(minSize) {
		d.fail(fmt.Errorf("count %d exceeds the record", c-1))
		return 0, false
	}
	return int(c - 1), false
}

func (d *decoder) time() time.Time {
	sec := d.varint()
	nsec := d.uvarint()
	if nsec >= uint64(time.Second) {
		d.fail(fmt.Errorf("nanoseconds %d out of range", nsec))
	}
	if d.err != nil {
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

// state interns a state name, so decoding it does not allocate.
func state(b []byte) string {
	switch string(b) {
	case protocol.JobQueued:
		return protocol.JobQueued
	case protocol.JobActive:
		return protocol.JobActive
	case protocol.JobComplete:
		return protocol.JobComplete
	case protocol.JobFailed:
		return protocol.JobFailed
	case protocol.JobScheduled:
		return protocol.JobScheduled
	}
	return string(b)
}

// version reads and checks the version byte.
func (d *decoder) version() {
	if v := d.byte(); d.err == nil && v != recordV1 {
		d.fail(fmt.Errorf("unknown record version %d", v))
	}
}

// decodeRecord decodes a whole record. The result shares no memory with b.
func decodeRecord(b []byte) (JobRecord, error) { return decodeRecordOf(b, true) }

// decodeRecordOf is decodeRecord; without output it leaves Output nil and
// skips the output's bytes without copying them (the pages of failed jobs,
// failed.go, which never show it).
func decodeRecordOf(b []byte, output bool) (JobRecord, error) {
	d := decoder{b: b}
	var j JobRecord
	d.version()
	j.State = state(d.rawString())
	j.Key = d.string()
	j.Finished = d.time()
	j.ID = d.string()
	j.Service = d.string()
	flags := d.byte()
	if flags&^flagsKnown != 0 {
		d.fail(fmt.Errorf("unknown flags %#x", flags))
	}
	j.Sync = flags&flagSync != 0
	j.Truncated = flags&flagTruncated != 0
	if flags&flagExitCode != 0 {
		c := d.int()
		j.ExitCode = &c
	}
	j.Attempts = d.int()
	j.Retries = d.int()
	j.TTR = time.Duration(d.varint())
	j.Created = d.time()
	j.Started = d.time()
	j.NotBefore = d.time()
	j.Worker = d.string()
	j.Code = d.string()
	j.Error = d.string()
	if n, isNil := d.count(2); !isNil && d.err == nil {
		j.Params = make(map[string]string, n)
		for range n {
			k := d.string()
			j.Params[k] = d.string()
		}
	}
	if n, isNil := d.count(1); !isNil && d.err == nil {
		j.Input = make([][]byte, n)
		for i := range n {
			j.Input[i] = d.bytes()
		}
	}
	if output {
		j.Output = d.bytes()
	} else if n := d.uvarint(); n > 0 {
		d.take(n - 1)
	}
	if flags&flagOwner != 0 {
		j.Owner = d.string()
	}
	if flags&flagPriority != 0 {
		if j.Priority = d.int(); j.Priority == 0 && d.err == nil {
			d.fail(errors.New("priority flag with priority 0"))
		}
	}
	if d.err == nil && d.off != len(d.b) {
		d.fail(errTrailing)
	}
	if d.err != nil {
		return JobRecord{}, d.err
	}
	return j, nil
}

// indexFields are the fields of a stored record that the indexes follow.
// key aliases the record's bytes.
type indexFields struct {
	state    string
	key      []byte
	finished time.Time
}

// decodeIndexFields reads the leading fields of a record without decoding
// the rest.
func decodeIndexFields(b []byte) (indexFields, error) {
	d := decoder{b: b}
	d.version()
	f := indexFields{state: state(d.rawString())}
	f.key = d.rawString()
	f.finished = d.time()
	return f, d.err
}

// appendService appends s's encoding: the version byte and FirstSeen, and
// in serviceV2 the flags.
func appendService(dst []byte, s ServiceRecord) []byte {
	var flags byte
	if s.Paused {
		flags |= svcPaused
	}
	if s.Draining {
		flags |= svcDraining
	}
	if flags == 0 {
		return appendTime(append(dst, serviceV1), s.FirstSeen)
	}
	return append(appendTime(append(dst, serviceV2), s.FirstSeen), flags)
}

// appendCounts appends c's encoding: the version byte, Completed, Failed.
func appendCounts(dst []byte, c ServiceCounts) []byte {
	dst = binary.AppendUvarint(append(dst, countsV1), c.Completed)
	return binary.AppendUvarint(dst, c.Failed)
}

// decodeCounts decodes the counters of the service named name from b.
func decodeCounts(name string, b []byte) (ServiceCounts, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != countsV1 {
		d.fail(fmt.Errorf("unknown counters record version %d", v))
	}
	c := ServiceCounts{Name: name, Completed: d.uvarint()}
	c.Failed = d.uvarint()
	if d.err == nil && d.off != len(d.b) {
		d.fail(errTrailing)
	}
	return c, d.err
}

// decodeService decodes the service named name from b.
func decodeService(name string, b []byte) (ServiceRecord, error) {
	d := decoder{b: b}
	v := d.byte()
	if d.err == nil && v != serviceV1 && v != serviceV2 {
		d.fail(fmt.Errorf("unknown service record version %d", v))
	}
	s := ServiceRecord{Name: name, FirstSeen: d.time()}
	if v == serviceV2 {
		flags := d.byte()
		if d.err == nil && flags&^(svcPaused|svcDraining) != 0 {
			d.fail(fmt.Errorf("unknown service flags %#x", flags))
		}
		s.Paused, s.Draining = flags&svcPaused != 0, flags&svcDraining != 0
	}
	if d.err == nil && d.off != len(d.b) {
		d.fail(errTrailing)
	}
	return s, d.err
}

// appendSchedule appends r's encoding: the version byte, LastTick, LastJob.
func appendSchedule(dst []byte, r ScheduleRecord) []byte {
	return appendString(appendTime(append(dst, scheduleV1), r.LastTick), r.LastJob)
}

// decodeSchedule decodes the last tick of the schedule named name from b.
func decodeSchedule(name string, b []byte) (ScheduleRecord, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != scheduleV1 {
		d.fail(fmt.Errorf("unknown schedule record version %d", v))
	}
	r := ScheduleRecord{Name: name, LastTick: d.time()}
	r.LastJob = d.string()
	if d.err == nil && d.off != len(d.b) {
		d.fail(errTrailing)
	}
	return r, d.err
}
