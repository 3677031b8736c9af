package timer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/fault"
	"github.com/benefit-issuance/benefits/shared/ledger"
	"github.com/benefit-issuance/benefits/shared/mqhandler"
)

// The grant backstop. The timer owns a consumer group of its own on the grants topic, apart from the
// ledger trigger's, so it sees every grant ever published whatever the ledger's retries are doing. A
// session receives from it, writes what MySQL lacks with the ledger's own idempotent batch insert and
// acknowledges. The periodic job keeps the group near empty; the cache rebuild drains it to empty
// first, and then every grant a user was told about is in MySQL (those the claim function could not
// publish it wrote there itself): the rebuild is exact, with no quiet period to fake.
//
// One session at a time holds the MySQL advisory lock. A session that dies may leave messages
// invisible for up to its hold; each records when it starts (with that hold) and when it finishes
// holding nothing, and a drain that finds one unfinished waits out its hold before it trusts "empty".

// GrantDelivery is one message received from the backstop's group.
type GrantDelivery struct {
	ID   string
	Body []byte
	Ack  func(context.Context) error
}

// GrantSource is the backstop's consumer group on the grants topic.
type GrantSource interface {
	// Receive returns up to max messages, each invisible to the group for invisible unless
	// acknowledged; none and no error when nothing is visible.
	Receive(ctx context.Context, max int, invisible time.Duration) ([]GrantDelivery, error)
}

// BackstopStore is the MySQL side of the backstop: the ledger's writes and the session bookkeeping.
type BackstopStore interface {
	ledger.Store
	LockBackstop(ctx context.Context, wait time.Duration) (domain.Lock, error)
	StartBackstopRun(ctx context.Context, kind string, hold time.Duration) (int64, error)
	HoldBackstopRun(ctx context.Context, id int64, hold time.Duration) error
	FinishBackstopRun(ctx context.Context, id int64) error
	BackstopHeld(ctx context.Context) (time.Duration, error)
	MayHaveGranted(ctx context.Context) (bool, error)
}

// backstopSlack covers what a receive's hold must add to the invisible time: a message's invisible time
// starts when the broker pops it, which can be as late as the receive's deadline. The official Go
// client gives a receive its await duration (2 s, shared/wiring) plus its request timeout (3 s,
// client_options.go) and the proxy never long-polls past the deadline; the rest is clock and network
// slack. (It was 30 s, for the proxy's longest long poll; after a dead session every cache rebuild
// waited that out, 45 s in all, in most schedules of the fault suite that lost Redis.)
const backstopSlack = 10 * time.Second

type session struct {
	kind       string
	lockWait   time.Duration // how long to wait for another session to finish
	budget     time.Duration // no receive starts after this
	emptyAfter time.Duration // "empty" counts as drained only once this much has passed
	// emptyReceives is how many receives in a row must be empty (one per broker serving the topic).
	emptyReceives int
}

type sessionResult struct {
	received, inserted, duplicates, poison int
	drained                                bool // an empty receive was seen, after emptyAfter
	note                                   string
}

// backstop runs one session. Its run is recorded finished only when every message it received was
// acknowledged; on any failure it stays unfinished and the next drain waits out its hold.
func (j *Jobs) backstop(ctx context.Context, s session) (sessionResult, error) {
	var res sessionResult
	if j.src == nil {
		return res, fault.Permanent(errors.New("timer: no grant backstop consumer configured"))
	}
	lock, err := j.store.LockBackstop(ctx, s.lockWait)
	if err != nil {
		return res, err
	}
	if lock == nil {
		res.note = "another grant backstop session holds the lock; the next run continues"
		return res, nil
	}
	defer lock.Release()
	start := time.Now()
	if s.kind == domain.BackstopDrain {
		held, err := j.store.BackstopHeld(ctx)
		if err != nil {
			return res, err
		}
		if held > 0 {
			// The wait spends the session's budget, so a run stays inside the function's timeout.
			if held >= s.budget {
				res.note = fmt.Sprintf("a backstop session that did not finish may hold grants invisible for %s more; the next run continues", held.Round(time.Second))
				return res, nil
			}
			select {
			case <-ctx.Done():
				return res, fault.Retryable(ctx.Err())
			case <-time.After(held):
			}
		}
	}
	// Each receive is covered by a hold recorded before it starts; every message of the receives before
	// it has been acknowledged by then, so a session that dies hides grants for at most one receive's
	// hold, not for its whole budget.
	receiveHold := j.cfg.BackstopInvisible + backstopSlack
	id, err := j.store.StartBackstopRun(ctx, s.kind, receiveHold)
	if err != nil {
		return res, err
	}
	// Several receivers at once (Config.BackstopReceivers): each batch is a hold, a receive of at most
	// 32, a MySQL transaction and its acks, so one receiver drained about 700 grants a second, less
	// than a rush publishes. Each receiver records its hold before its receive, so the latest hold
	// still covers every receive in flight.
	book := ledger.New(j.store)
	var mu, holdMu sync.Mutex
	empties, stop := 0, false
	g, gctx := errgroup.WithContext(ctx)
	for w := 0; w < j.cfg.BackstopReceivers; w++ {
		g.Go(func() error {
			for first := w == 0; ; first = false {
				mu.Lock()
				done := stop || time.Since(start) >= s.budget
				mu.Unlock()
				if done {
					return nil
				}
				if !first {
					// One hold at a time: two at once could land out of order, the later write
					// holding less than the receive before it needs, or find nothing to change
					// within one microsecond and be taken for a finished run.
					holdMu.Lock()
					err := j.store.HoldBackstopRun(gctx, id, receiveHold)
					holdMu.Unlock()
					if err != nil {
						return err
					}
				}
				batch, err := j.src.Receive(gctx, j.cfg.BackstopBatch, j.cfg.BackstopInvisible)
				if err != nil {
					return fault.Retryable(fmt.Errorf("grant backstop receive: %w", err))
				}
				mu.Lock()
				if len(batch) == 0 {
					empties++
					if empties >= s.emptyReceives && time.Since(start) >= s.emptyAfter {
						// Drained once every receiver's batch in hand is written and acknowledged,
						// which g.Wait awaits.
						res.drained, stop = true, true
					}
					mu.Unlock()
					continue
				}
				empties = 0
				res.received += len(batch)
				mu.Unlock()
				msgs := make([]mqhandler.Message, len(batch))
				for i, d := range batch {
					msgs[i] = mqhandler.Message{ID: d.ID, Body: d.Body}
				}
				lr, err := book.Record(gctx, msgs)
				if err != nil {
					return fmt.Errorf("grant backstop write: %w", err)
				}
				mu.Lock()
				res.inserted += lr.Inserted
				res.duplicates += lr.Duplicates
				res.poison += lr.Poison
				mu.Unlock()
				if err := ackAll(gctx, batch); err != nil {
					return err
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		res.drained = false
		return res, err
	}
	return res, j.store.FinishBackstopRun(ctx, id)
}

// GrantBackstop is the periodic session: it writes to MySQL every grant its group delivers (those the
// ledger already wrote are no-ops) until the group is empty or its budget is spent.
func (j *Jobs) GrantBackstop(ctx context.Context) (Report, error) {
	var r Report
	s, err := j.backstop(ctx, session{kind: domain.BackstopSession, budget: j.cfg.BackstopBudget, emptyReceives: 1})
	r.Received, r.Inserted, r.Note = s.received, s.inserted, s.note
	return r, err
}

// ackConcurrency bounds the acknowledgements in flight at once. Each is a call to the broker of its
// own; one after another they were most of a rebuild's drain (7,638 grants took 19 s).
const ackConcurrency = 16

// ackAll acknowledges a batch whose grants are all in MySQL, several at a time. A failed ack is
// harmless (the grant comes back after its invisible time and is a duplicate then), but the session
// stays unfinished, as for any failure.
func ackAll(ctx context.Context, batch []GrantDelivery) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(ackConcurrency)
	for _, d := range batch {
		g.Go(func() error {
			if err := d.Ack(gctx); err != nil {
				return fault.Retryable(fmt.Errorf("grant backstop ack %s: %w", d.ID, err))
			}
			return nil
		})
	}
	return g.Wait()
}
