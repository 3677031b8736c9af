package rocketmq

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// The log is one JSON record per line, appended. A send is synced to disk before the producer hears
// OK (unless fsync is turned off); acknowledgements and delivery attempts are written without a sync:
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
	mu    sync.Mutex
	f     *os.File
	w     *bufio.Writer
	fsync bool
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

func (s *store) append(sync bool, recs ...record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var buf []byte
	for _, r := range recs {
		data, err := json.Marshal(r)
		if err != nil {
			return err
		}
		buf = append(append(buf, data...), '\n')
	}
	st, err := s.f.Stat()
	if err != nil {
		return err
	}
	if _, err := s.w.Write(buf); err == nil {
		err = s.w.Flush()
	}
	if err != nil {
		// Cut a partial write off so the log stays readable, and start a fresh writer: bufio keeps
		// failing after its first error.
		_ = s.f.Truncate(st.Size())
		s.w = bufio.NewWriterSize(s.f, 64<<10)
		return err
	}
	if sync && s.fsync {
		return s.f.Sync()
	}
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
