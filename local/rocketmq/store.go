package rocketmq

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// The log is one JSON record per line, appended. A send is synced to disk before the producer hears
// OK and before any consumer can receive it (unless fsync is turned off), with the sends that arrive
// during one fsync sharing the next; acknowledgements and delivery attempts are written without a sync:
// losing one after a crash only means a message is delivered once more, which at-least-once allows.
type opKind string

const (
	opSend    opKind = "send"
	opDone    opKind = "done"
	opTx      opKind = "tx"
	opAttempt opKind = "attempt"
)

type record struct {
	Op      opKind         `json:"op"`
	Msg     *storedMessage `json:"m,omitempty"`
	Group   string         `json:"g,omitempty"`
	Topic   string         `json:"t,omitempty"`
	Offset  int64          `json:"o,omitempty"`
	Tx      txState        `json:"tx,omitempty"`
	Attempt int32          `json:"n,omitempty"`
}

type store struct {
	mu      sync.Mutex
	f       *os.File
	w       *bufio.Writer
	fsync   bool
	written int64 // appends handed to the OS, guarded by mu

	// Group commit, as Apache RocketMQ's GroupCommitService: one fsync at a time makes every append
	// written before it durable, so the sends that queued behind it share the next one.
	syncMu sync.Mutex
	synced atomic.Int64
	syncs  atomic.Int64 // fsyncs run, for tests and benchmarks
}

func openStore(dir string, fsync bool, replay func(record) error) (*store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "broker.log")
	if err := replayFile(path, replay); err != nil {
		return nil, err
	}
	if err := endWithNewline(path); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &store{f: f, w: bufio.NewWriterSize(f, 64<<10), fsync: fsync}, nil
}

// endWithNewline keeps a complete record that a crash left without its newline from swallowing the
// next append.
func endWithNewline(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return err
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, st.Size()-1); err != nil {
		return err
	}
	if last[0] != '\n' {
		_, err = f.WriteAt([]byte{'\n'}, st.Size())
	}
	return err
}

func replayFile(path string, replay func(record) error) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	// A record holds at most a 4 MiB body (base64 in JSON) and 16 KiB of properties.
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			// A torn last line is what a crash mid-append leaves; it was never acknowledged.
			if !sc.Scan() {
				return truncateTail(path, line)
			}
			return fmt.Errorf("%s line %d: %v", path, line, err)
		}
		if err := replay(r); err != nil {
			return fmt.Errorf("%s line %d: %v", path, line, err)
		}
	}
	return sc.Err()
}

// truncateTail drops a torn final line so that later appends start on a fresh line.
func truncateTail(path string, keepLines int) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	n, lines := 0, 0
	for i, c := range data {
		if c == '\n' {
			lines++
			if lines == keepLines-1 {
				n = i + 1
				break
			}
		}
	}
	return os.Truncate(path, int64(n))
}

// append writes records; with sync they are on disk before it returns.
func (s *store) append(sync bool, recs ...record) error {
	seq, err := s.write(recs...)
	if err != nil || !sync {
		return err
	}
	return s.syncTo(seq)
}

// write hands records to the OS (not to the disk) and returns the sequence number that syncTo takes.
func (s *store) write(recs ...record) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var buf []byte
	for _, r := range recs {
		data, err := json.Marshal(r)
		if err != nil {
			return 0, err
		}
		buf = append(append(buf, data...), '\n')
	}
	st, err := s.f.Stat()
	if err != nil {
		return 0, err
	}
	if _, err := s.w.Write(buf); err == nil {
		err = s.w.Flush()
	}
	if err != nil {
		// Cut a partial write off so the log stays readable, and start a fresh writer: bufio keeps
		// failing after its first error.
		_ = s.f.Truncate(st.Size())
		s.w = bufio.NewWriterSize(s.f, 64<<10)
		return 0, err
	}
	s.written++
	return s.written, nil
}

// syncTo returns once the append numbered seq is on disk. A caller that finds an fsync running waits
// for it, then runs one more for itself and everyone who queued meanwhile.
func (s *store) syncTo(seq int64) error {
	if !s.fsync || s.synced.Load() >= seq {
		return nil
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.synced.Load() >= seq {
		return nil
	}
	s.mu.Lock()
	upTo := s.written
	s.mu.Unlock()
	s.syncs.Add(1)
	if err := s.f.Sync(); err != nil {
		return err
	}
	s.synced.Store(upTo)
	return nil
}

func (s *store) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.w.Flush(); err != nil {
		s.f.Close()
		return err
	}
	return s.f.Close()
}

// replay rebuilds state from one log record. In-flight deliveries are not logged, so every message
// that was not acknowledged comes back visible after a restart.
func (b *Broker) replay(r record) error {
	switch r.Op {
	case opSend:
		if r.Msg == nil {
			return fmt.Errorf("send record without a message")
		}
		t, ok := b.topics[r.Msg.Topic]
		if !ok {
			t = newTopic(r.Msg.Topic, 0)
			b.topics[r.Msg.Topic] = t
		}
		b.appendLocked(t, r.Msg, b.now())
	case opDone:
		c := b.cursorLocked(r.Group, r.Topic)
		c.markDone(r.Offset)
		if t, ok := b.topics[r.Topic]; ok {
			c.advance(int64(len(t.msgs)))
		}
	case opAttempt:
		c := b.cursorLocked(r.Group, r.Topic)
		d := c.st[r.Offset]
		if d == nil {
			d = &delivery{}
			c.st[r.Offset] = d
		}
		if !d.done && r.Attempt > d.attempt {
			d.attempt = r.Attempt
		}
	case opTx:
		t, ok := b.topics[r.Topic]
		if !ok || r.Offset < 0 || r.Offset >= int64(len(t.msgs)) {
			return fmt.Errorf("transaction record for unknown message %s/%d", r.Topic, r.Offset)
		}
		m := t.msgs[r.Offset]
		m.Tx = r.Tx
		delete(t.halfs, m.Offset)
	default:
		return fmt.Errorf("unknown record %q", r.Op)
	}
	return nil
}
